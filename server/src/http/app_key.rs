//! The app API key: `Authorization: Bearer csk_…`, checked and held to a scope by its type.
//!
//! A handler states the scope it needs in its signature — `app: AppKey<UsersWrite>` — and runs
//! only for a valid, unrevoked key that has it: 401 for a missing, malformed, unknown or
//! revoked key, then 403 `insufficient_scope`, before any other part of the request is read.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::codes::Code;
use super::error::ApiError;
use crate::api_keys::Scope;
use crate::api_keys::service::{self, AuthError, AuthenticatedApp};
use crate::app::AppState;

/// What a route asks of a key's scopes (the type parameter of [`AppKey`]).
pub trait ScopeRule: Send + Sync + 'static {
    fn check(app: &AuthenticatedApp) -> Result<(), AuthError>;
}

/// Type-level scope markers: `AppKey<ChallengesWrite>` needs `challenges:write`.
pub mod scope {
    use super::{AuthError, AuthenticatedApp, Scope, ScopeRule};

    macro_rules! one_scope {
        ($($marker:ident),* $(,)?) => {$(
            #[doc = concat!("Needs `Scope::", stringify!($marker), "`.")]
            #[derive(Debug)]
            pub struct $marker;

            impl ScopeRule for $marker {
                fn check(app: &AuthenticatedApp) -> Result<(), AuthError> {
                    app.require(Scope::$marker)
                }
            }
        )*};
    }

    one_scope!(UsersRead, UsersWrite, ChallengesRead, ChallengesWrite, FatigueRead, FatigueWrite);

    /// Any valid key, whatever its scopes (an app asking who it is).
    #[derive(Debug)]
    pub struct AnyScope;

    impl ScopeRule for AnyScope {
        fn check(_: &AuthenticatedApp) -> Result<(), AuthError> {
            Ok(())
        }
    }

    /// Reading a challenge: `challenges:read`, or `challenges:write` (the app that creates
    /// challenges may follow them with the same key).
    #[derive(Debug)]
    pub struct ChallengesReadOrWrite;

    impl ScopeRule for ChallengesReadOrWrite {
        fn check(app: &AuthenticatedApp) -> Result<(), AuthError> {
            app.require(Scope::ChallengesRead).or_else(|_| app.require(Scope::ChallengesWrite))
        }
    }
}

/// An authenticated app whose key has the scope `S` asks for. Derefs to the app.
#[derive(Debug)]
pub struct AppKey<S> {
    app: AuthenticatedApp,
    scope: PhantomData<fn() -> S>,
}

impl<S> Deref for AppKey<S> {
    type Target = AuthenticatedApp;

    fn deref(&self) -> &AuthenticatedApp {
        &self.app
    }
}

impl<S: ScopeRule> FromRequestParts<AppState> for AppKey<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| ApiError::from(AuthError::Malformed))?),
        };
        let app = service::authenticate(state.store.as_ref(), header).await?;
        S::check(&app)?;
        Ok(AppKey { app, scope: PhantomData })
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let message = error.to_string();
        let code = match error {
            AuthError::Missing => Code::MissingApiKey,
            AuthError::Malformed => Code::MalformedApiKey,
            AuthError::Invalid => Code::InvalidApiKey,
            AuthError::Revoked => Code::ApiKeyRevoked,
            AuthError::InsufficientScope(_) => Code::InsufficientScope,
            AuthError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::scope::{AnyScope, ChallengesReadOrWrite, UsersWrite};
    use super::*;
    use crate::ids::AppId;

    fn app(scopes: &str) -> AuthenticatedApp {
        AuthenticatedApp { id: AppId::random(), name: "a".into(), scopes: scopes.parse().unwrap() }
    }

    fn refused_for(result: Result<(), AuthError>) -> Option<Scope> {
        match result {
            Ok(()) => None,
            Err(AuthError::InsufficientScope(scope)) => Some(scope),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_scope_marker_admits_only_keys_with_its_scope() {
        assert_eq!(refused_for(UsersWrite::check(&app("users:write"))), None);
        assert_eq!(refused_for(UsersWrite::check(&app("users:read"))), Some(Scope::UsersWrite));
        assert_eq!(refused_for(AnyScope::check(&app(""))), None);
    }

    #[test]
    fn reading_a_challenge_takes_either_challenge_scope() {
        assert_eq!(refused_for(ChallengesReadOrWrite::check(&app("challenges:read"))), None);
        assert_eq!(refused_for(ChallengesReadOrWrite::check(&app("challenges:write"))), None);
        let refused = ChallengesReadOrWrite::check(&app("users:read challenges:read users:write"));
        assert_eq!(refused_for(refused), None);
        let refused = ChallengesReadOrWrite::check(&app("users:read"));
        assert_eq!(refused_for(refused), Some(Scope::ChallengesWrite), "the message names the broader scope");
    }
}
