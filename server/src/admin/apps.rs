//! Apps and OIDC clients as the admin plane manages them: the CLI's services, with the rules
//! that hold only here (a keyless app is not revoked by name; only active clients are revoked).

use crate::api_keys::Scopes;
use crate::api_keys::service::{self as api_keys, AppAdminError};
use crate::app::AppState;
use crate::audit::Actor;
use crate::oidc::client_admin::{self, ClientAdminError, CreatedClient, NewClient};
use crate::oidc::clients::{Client, ClientId, IdTokenAlg};
use crate::oidc::keys::{KeyError, SigningAlg};
use crate::store::AppRecord;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    App(#[from] AppAdminError),
    #[error(transparent)]
    Client(#[from] ClientAdminError),
    #[error("`{0}` holds no key: revoke the OIDC client or realm it stands for instead")]
    Keyless(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Creates an app; its key is in the return value only.
pub async fn create_app(
    state: &AppState,
    actor: Actor,
    name: &str,
    scopes: Scopes,
) -> Result<(AppRecord, secrecy::SecretString), ManageError> {
    Ok(api_keys::create_app(state.store.as_ref(), state.clock.as_ref(), actor, name, scopes).await?)
}

/// Checks an app can be revoked here: it exists, is active and holds a key.
pub async fn check_revocable_app(state: &AppState, name: &str) -> Result<(), ManageError> {
    let app = state.store.app_by_name(name).await.map_err(AppAdminError::Store)?;
    match app {
        Some(app) if app.revoked_at.is_none() && app.scopes.is_empty() => {
            Err(ManageError::Keyless(name.to_owned()))
        }
        Some(app) if app.revoked_at.is_none() => Ok(()),
        _ => Err(AppAdminError::NotFound(name.to_owned()).into()),
    }
}

/// Revokes an app's key (after [`check_revocable_app`]).
pub async fn revoke_app(state: &AppState, actor: Actor, name: &str) -> Result<AppRecord, ManageError> {
    check_revocable_app(state, name).await?;
    Ok(api_keys::revoke_app(state.store.as_ref(), state.clock.as_ref(), actor, name).await?)
}

/// Registers a client; an RS256 one gets its signing key published first, as the CLI does
/// (its RP fetches the JWKS before its first sign-in).
pub async fn create_client(
    state: &AppState,
    actor: Actor,
    new: NewClient,
) -> Result<CreatedClient, ManageError> {
    if new.id_token_alg == IdTokenAlg::Rs256 {
        state.signing_keys.ensure_signing_key(SigningAlg::Rs256, actor.clone()).await?;
    }
    Ok(client_admin::create_client(state.store.as_ref(), state.clock.as_ref(), actor, new).await?)
}

/// Checks a client can be revoked: it exists and is active.
pub async fn check_revocable_client(state: &AppState, id: &ClientId) -> Result<(), ManageError> {
    let active = client_admin::list_clients(state.store.as_ref())
        .await?
        .iter()
        .any(|c| &c.client_id == id && c.is_active());
    if active { Ok(()) } else { Err(ClientAdminError::NotFound(id.clone()).into()) }
}

/// Revokes a client at once.
pub async fn revoke_client(state: &AppState, actor: Actor, id: &ClientId) -> Result<Client, ManageError> {
    Ok(client_admin::revoke_client(state.store.as_ref(), state.clock.as_ref(), actor, id).await?)
}
