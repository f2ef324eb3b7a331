//! Answering a delegation request: verify the token, read the body, take the number from the
//! binding message, spend the `jti` and check the subject's pin, create the challenge through
//! the challenge machinery (push budget, ladder, silent mode, spray detection, audit), and
//! record what became of the request together with its audit event.

use std::sync::Arc;

use serde_json::{Value, json};

use super::config::Realm;
use super::model::{self, BindingMessageError, BodyError, ChannelRequest};
use super::verify::{ChannelToken, Realms, TokenError};
use crate::api_keys::Scopes;
use crate::api_keys::service::{AuthenticatedApp, keyless_app};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::callbacks::CallbackSecret;
use crate::challenges::service::{ChallengeContext, ChallengeError, ChallengeService, PromptOptions};
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::ids::ChallengeId;
use crate::secrets::MasterKey;
use crate::store::{
    Admission, CallbackJob, CallbackKind, KeycloakRequestRecord, RequestOutcome, Store, StoreError,
    UserRecord,
};

/// Why a delegation request is refused. Every refusal is audited (`keycloak.request_refused`).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the bearer token is refused: {0}")]
    Token(#[from] TokenError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    BindingMessage(#[from] BindingMessageError),
    #[error("this token was used before")]
    Replayed,
    #[error("the realm's user is bound to another Countersign user than login_hint names")]
    SubjectPinned,
    #[error("internal failure")]
    Internal(#[from] InternalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChannelError {
    /// A stable name for the audit trail.
    fn reason(&self) -> &'static str {
        match self {
            ChannelError::Token(error) => error.reason(),
            ChannelError::Body(_) => "invalid_body",
            ChannelError::BindingMessage(error) => error.reason(),
            ChannelError::Replayed => "jti_replayed",
            ChannelError::SubjectPinned => "subject_pinned_to_other_user",
            ChannelError::Internal(_) | ChannelError::Store(_) => "internal",
        }
    }
}

/// Keycloak's CIBA HTTP authentication channel.
#[derive(Debug)]
pub struct KeycloakChannel {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    challenges: Arc<ChallengeService>,
    master: Arc<MasterKey>,
    realms: Realms,
}

/// A verified request, on its way to a prompt.
struct Admitted<'a> {
    realm: &'a Realm,
    /// The token as Keycloak sent it: the outcome callback presents it back.
    bearer: &'a str,
    token: ChannelToken,
    request: ChannelRequest,
    user: Option<UserRecord>,
}

impl KeycloakChannel {
    /// Whether any realm is configured: without one the channel is not served at all.
    pub fn serves_realms(&self) -> bool {
        !self.realms.is_empty()
    }

    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        challenges: Arc<ChallengeService>,
        master: Arc<MasterKey>,
        realms: Realms,
    ) -> Self {
        Self { store, clock, challenges, master, realms }
    }

    /// `POST /keycloak/ciba`: `Ok` means answer 201 — a user was prompted, or nobody was
    /// (unknown user, no device, push refused: the same answer, and the callback says
    /// `CANCELLED` when an unanswered prompt would have expired).
    pub async fn accept(&self, bearer: Option<&str>, body: &[u8]) -> Result<(), ChannelError> {
        let now = self.clock.now();
        let verified = match bearer {
            None => Err(TokenError::Missing),
            Some(bearer) => self.realms.verify(bearer, now).await.map(|token| (bearer, token)),
        };
        let (bearer, token) = match verified {
            Ok(verified) => verified,
            Err(error) => {
                let subject = bearer
                    .and_then(|b| self.realms.claimed(b))
                    .map_or(Subject::UnknownKeycloakRealms, |r| Subject::KeycloakRealm(r.issuer.clone()));
                return Err(self.refuse(Actor::System, subject, json!({}), error.into()).await);
            }
        };
        let realm =
            self.realms.get(token.realm).ok_or_else(|| InternalError::new("a verified realm is gone"))?;
        let app = self.realm_app(realm).await?;
        let token_details = json!({
            "realm": realm.issuer, "jti": token.jti, "sub": token.subject, "azp": token.client,
        });
        let subject = Subject::KeycloakRealm(realm.issuer.clone());
        let checked = model::parse_request(body).map_err(ChannelError::from).and_then(|request| {
            let number =
                model::number(request.binding_message.as_deref(), self.challenges.settings().number_digits)?;
            Ok((request, number))
        });
        let (request, number) = match checked {
            Ok(checked) => checked,
            Err(error) => return Err(self.refuse(app.actor(), subject, token_details, error).await),
        };
        let user = match crate::users::model::normalize_username(&request.login_hint) {
            Ok(username) => self.store.user_by_username(&username).await?,
            Err(_) => None,
        };
        let admitted = Admitted { realm, bearer, token, request, user };
        match self.store.admit_keycloak_request(&admitted.record(now)).await? {
            Admission::Admitted => {}
            Admission::Replayed => {
                return Err(self
                    .refuse(app.actor(), subject, admitted.details(), ChannelError::Replayed)
                    .await);
            }
            Admission::PinnedToOther => {
                let error = ChannelError::SubjectPinned;
                return Err(self.refuse(app.actor(), subject, admitted.details(), error).await);
            }
        }
        self.prompt(&app, admitted, number).await
    }

    /// Creates the challenge for an admitted request and records what became of it.
    async fn prompt(
        &self,
        app: &AuthenticatedApp,
        admitted: Admitted<'_>,
        number: String,
    ) -> Result<(), ChannelError> {
        let Admitted { realm, token, user, .. } = &admitted;
        let created = match user {
            None => Err(Refusal { reason: "unknown_user", answer: None }),
            Some(user) => {
                let context = ChallengeContext { app_name: Some(realm.name.clone()), ..Default::default() };
                let options = PromptOptions {
                    number: Some(number),
                    expires_at: Some(token.expires_at),
                    idempotency_key: None,
                    // Spray detection counts the users each client of a realm prompts: Keycloak
                    // does not say where the user is, its servers sit behind any proxy, and one
                    // client's traffic must not silence the realm's others.
                    source: Some(format!("keycloak:{} {}", realm.issuer, token.client)),
                };
                match self.challenges.create_with(app, &user.username, context, options).await {
                    Ok(created) => Ok(created.record.id),
                    Err(error) => Err(refusal(error)?),
                }
            }
        };
        let mut details = admitted.details();
        let (challenge, action, answer) = match created {
            Ok(id) => (Some(id), Action::KeycloakRequestAccepted, None),
            Err(Refusal { reason, answer }) => {
                details["reason"] = json!(reason);
                (None, Action::KeycloakRequestRefused, answer)
            }
        };
        details["challenge_id"] = json!(challenge);
        let subject =
            user.as_ref().map_or(Subject::KeycloakRealm(realm.issuer.clone()), |u| Subject::User(u.id));
        let now = self.clock.now();
        let event = AuditEvent::new(now, app.actor(), action, subject).with_details(details);
        // Keycloak stores the request only after a 201: a refused one is owed no callback.
        let callback = match answer {
            Some(_) => None,
            None => Some(self.callback(&admitted, challenge, now)?),
        };
        let finished = self
            .store
            .finish_keycloak_request(&realm.issuer, &token.jti, challenge, callback.as_ref(), event)
            .await;
        if let Err(error) = finished {
            // Nobody would learn what this prompt decides: take it back from the phone.
            if let Some(id) = challenge
                && let Err(cancel) = self.challenges.cancel(app, id).await
            {
                tracing::error!(error = %cancel, "a Keycloak prompt whose request was not recorded could not be cancelled");
            }
            return Err(error.into());
        }
        answer.map_or(Ok(()), Err)
    }

    /// The outcome callback a 201 owes: to the realm's callback URL, with Keycloak's own token,
    /// due when the challenge is decided, never after `exp`. Without a challenge it says
    /// `CANCELLED` when an unanswered prompt would have expired, so Keycloak's client cannot
    /// tell "nobody to prompt" from "nobody answered" by the time it learns it.
    fn callback(
        &self,
        admitted: &Admitted<'_>,
        challenge: Option<ChallengeId>,
        now: time::OffsetDateTime,
    ) -> Result<CallbackJob, ChannelError> {
        let id = uuid::Uuid::new_v4();
        let secret = CallbackSecret { bearer: admitted.bearer.to_owned(), auth_req_id: None };
        Ok(CallbackJob {
            id,
            kind: CallbackKind::KeycloakOutcome,
            challenge_id: challenge,
            url: admitted.realm.callback_url.clone(),
            sealed: crate::callbacks::seal(&self.master, id, &secret)?,
            created_at: now,
            not_before: match challenge {
                Some(_) => now,
                None => (now + self.challenges.settings().ttl).min(admitted.token.expires_at),
            },
            expires_at: admitted.token.expires_at,
        })
    }

    /// Audits a refusal and hands the error back.
    async fn refuse(
        &self,
        actor: Actor,
        subject: Subject,
        mut details: Value,
        error: ChannelError,
    ) -> ChannelError {
        if matches!(error, ChannelError::Internal(_) | ChannelError::Store(_)) {
            return error;
        }
        details["reason"] = json!(error.reason());
        details["detail"] = json!(error.to_string());
        let event = AuditEvent::new(self.clock.now(), actor, Action::KeycloakRequestRefused, subject)
            .with_details(details);
        match self.store.record_audit(event).await {
            Ok(()) => error,
            Err(store) => store.into(),
        }
    }

    /// The app a realm acts as in the challenge machinery, made on its first request (an app
    /// row with no scopes and a key nobody was ever shown).
    async fn realm_app(&self, realm: &Realm) -> Result<AuthenticatedApp, ChannelError> {
        let id = match self.store.keycloak_realm_app(&realm.issuer).await? {
            Some(id) => id,
            None => {
                let details = json!({ "keycloak_realm": realm.issuer });
                let (app, event) = keyless_app(realm.app_name(), details, self.clock.now())
                    .map_err(|_| InternalError::new("the system random number generator failed"))?;
                self.store.create_keycloak_realm_app(&realm.issuer, app, event).await?
            }
        };
        Ok(AuthenticatedApp { id, name: realm.name.clone(), scopes: Scopes::default() })
    }
}

impl Admitted<'_> {
    fn record(&self, now: time::OffsetDateTime) -> KeycloakRequestRecord {
        KeycloakRequestRecord {
            realm_issuer: self.realm.issuer.clone(),
            jti: self.token.jti.clone(),
            subject: self.token.subject.clone(),
            client_id: self.token.client.clone(),
            user_id: self.user.as_ref().map(|u| u.id),
            challenge_id: None::<ChallengeId>,
            outcome: RequestOutcome::Admitted,
            created_at: now,
            expires_at: self.token.expires_at,
        }
    }

    /// What the audit trail says about the request (never the binding message: it is the number).
    fn details(&self) -> Value {
        json!({
            "realm": self.realm.issuer,
            "jti": self.token.jti,
            "sub": self.token.subject,
            "azp": self.token.client,
            "login_hint": self.request.login_hint,
            "scope": self.request.scope,
            "is_consent_required": self.request.is_consent_required,
            "acr_values": self.request.acr_values,
        })
    }
}

/// Why nobody was prompted: `answer` is `None` when Keycloak still gets 201 (and the callback
/// says `CANCELLED`), else the error it gets.
struct Refusal {
    reason: &'static str,
    answer: Option<ChannelError>,
}

/// What a refused prompt means here (the challenge machinery audited the refusal itself);
/// faults stay errors.
fn refusal(error: ChallengeError) -> Result<Refusal, ChannelError> {
    let cancelled = |reason| Ok(Refusal { reason, answer: None });
    match error {
        ChallengeError::NoDevice => cancelled("no_device"),
        ChallengeError::PushFrozen { .. } => cancelled("push_frozen"),
        ChallengeError::PushLocked => cancelled("push_locked"),
        ChallengeError::PasskeyRequired => cancelled("passkey_required"),
        ChallengeError::PushRateLimited { .. } => cancelled("push_rate_limited"),
        ChallengeError::SourceRateLimited { .. } => cancelled("source_rate_limited"),
        // Answered like the others: only a user with a device has recent numbers, so a 400
        // here would tell the client the user exists.
        ChallengeError::NumberRecentlyUsed => cancelled("number_recently_used"),
        // The token expired within the clock-skew leeway: nothing is left to prompt for.
        ChallengeError::InvalidInput(_) => {
            let expired = TokenError::Invalid(crate::oidc::jose::JwtError::Expired);
            Ok(Refusal { reason: "expired", answer: Some(expired.into()) })
        }
        other => Err(InternalError::caused_by("creating a push challenge", other).into()),
    }
}
