//! Passkey registration and management: begin a ceremony (the trust rule decides who may),
//! verify the browser's credential against the stored ceremony, and keep each credential id
//! bound to one user forever.
//!
//! Every check that needs no state runs before any state changes; the ceremony is used by a
//! compare-and-set delete in the transaction that stores the passkey, so it completes once.

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::register::UserHandle64;

use super::ceremony::{self, CeremonyError, Descriptor, ResidentKey, UserEntity, infallible};
use super::model::{
    self, ENROLLMENT_LINK_TTL, MAX_CLIENT_DATA_LEN, REGISTRATION_TTL, Rejection, WebauthnSettings,
};
use crate::api_keys::service::AuthenticatedApp;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::Clock;
use crate::devices::model::SECOND_DEVICE_APPROVAL_WINDOW;
use crate::fault::InternalError;
use crate::ids::{AppId, ChallengeId, PasskeyId, RegistrationId, UserId};
use crate::store::{
    ApprovalProof, Conflict, DeviceRecord, EnrollmentLink, PasskeyRecord, RegistrationCeremony,
    RegistrationProof, Store, StoreError, UserRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("no such user")]
    UserNotFound,
    #[error(
        "adding a passkey to a user who has a factor needs proof from the user: \"approval\": the id \
         of a challenge of this user, created by this app, approved within the last 5 minutes and not \
         redeemed (the registration consumes it)"
    )]
    SecondFactorProofRequired,
    #[error(
        "the approval is not an approved, unredeemed challenge of this user, created by this app and \
         decided within the last 5 minutes"
    )]
    ApprovalInvalid,
    #[error("no such registration for this user")]
    RegistrationNotFound,
    #[error("the registration ceremony has expired; begin a new one")]
    RegistrationExpired,
    #[error("the credential is not a WebAuthn registration response (credential.toJSON()): {0}")]
    ResponseInvalid(String),
    #[error("clientDataJSON is longer than {MAX_CLIENT_DATA_LEN} bytes")]
    ClientDataTooLarge,
    #[error("the credential does not verify ({}): {message}", rejection.as_str())]
    Rejected { rejection: Rejection, message: String },
    #[error("this authenticator model (AAGUID) is not allowed to register")]
    AuthenticatorNotAllowed,
    #[error("the credential is already bound to a user")]
    FactorAlreadyBound,
    #[error("this passkey link is not valid: ask for a new one")]
    EnrollmentLinkInvalid,
    #[error("this passkey link has expired: ask for a new one")]
    EnrollmentLinkExpired,
    #[error("this passkey link has been used already: ask for a new one")]
    EnrollmentLinkUsed,
    #[error("this sign-in link is not valid: start the sign-in again")]
    SignInPageInvalid,
    #[error("no such passkey for this user")]
    PasskeyNotFound,
    #[error("the user has no passkey that can answer a challenge")]
    NoPasskey,
    #[error("no such passkey challenge")]
    ChallengeNotFound,
    #[error("the challenge is {0}, not pending")]
    ChallengeNotPending(ChallengeState),
    #[error("the challenge has expired")]
    ChallengeExpired,
    #[error("the credential is not an active passkey of this challenge's user")]
    UnknownCredential,
    #[error("the signature counter did not rise: the sign-in is refused")]
    CounterNotIncreasing,
    #[error("internal failure")]
    Internal(#[from] InternalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CeremonyError> for PasskeyError {
    fn from(error: CeremonyError) -> Self {
        match error {
            CeremonyError::ResponseInvalid(message) => PasskeyError::ResponseInvalid(message),
            CeremonyError::ClientDataTooLarge => PasskeyError::ClientDataTooLarge,
            CeremonyError::Rejected { rejection, message } => PasskeyError::Rejected { rejection, message },
            CeremonyError::CounterNotIncreasing => PasskeyError::CounterNotIncreasing,
            CeremonyError::AuthenticatorNotAllowed { .. } => PasskeyError::AuthenticatorNotAllowed,
            CeremonyError::Internal(e) => PasskeyError::Internal(e),
        }
    }
}

/// What the app sends to begin a registration.
#[derive(Debug, Clone, Default)]
pub struct RegistrationRequest {
    /// Proof for a user who already has a factor (the second-device rule).
    pub approval: Option<ChallengeId>,
    pub name: Option<String>,
}

/// A begun ceremony and the options for `PublicKeyCredential.parseCreationOptionsFromJSON()`.
#[derive(Debug)]
pub struct BegunRegistration {
    pub ceremony: RegistrationCeremony,
    pub options: serde_json::Value,
}

/// What passkey sign-ins share with push challenges: the TTL, and the long-poll waiters.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub ttl: time::Duration,
    pub waiters: Arc<crate::challenges::waiters::Waiters>,
}

/// Who begins a registration: an app (its REST calls and its enrollment links), a help-desk
/// agent (a link for a caller they verified), or the operator from the command line.
#[derive(Debug, Clone, Copy)]
pub(super) enum Issuer<'a> {
    App(&'a AuthenticatedApp),
    /// A help-desk agent, through the help desk's keyless app: the agent is the actor of every
    /// event, in the ceremony's own transaction.
    HelpDesk {
        app: &'a AuthenticatedApp,
        agent: crate::ids::AdminId,
    },
    /// `recovery`: may add a passkey to a user who has a factor, without their approval.
    Operator {
        recovery: bool,
    },
}

impl Issuer<'_> {
    fn actor(self) -> Actor {
        match self {
            Issuer::App(app) => app.actor(),
            Issuer::HelpDesk { agent, .. } => Actor::Admin { id: agent },
            Issuer::Operator { .. } => Actor::Cli,
        }
    }

    fn app_id(self) -> Option<AppId> {
        match self {
            Issuer::App(app) | Issuer::HelpDesk { app, .. } => Some(app.id),
            Issuer::Operator { .. } => None,
        }
    }

    fn app_name(self) -> Option<String> {
        match self {
            Issuer::App(app) | Issuer::HelpDesk { app, .. } => Some(app.name.clone()),
            Issuer::Operator { .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct PasskeyService {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: Arc<WebauthnSettings>,
    pub(super) sign_in: SignInSettings,
}

/// The name a passkey gets when the app gives none.
const DEFAULT_NAME: &str = "Passkey";

impl PasskeyService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Arc<WebauthnSettings>,
        sign_in: SignInSettings,
    ) -> Self {
        Self { store, clock, settings, sign_in }
    }

    pub fn settings(&self) -> &WebauthnSettings {
        &self.settings
    }

    pub(super) async fn user(&self, username: &str) -> Result<UserRecord, PasskeyError> {
        let username =
            crate::users::model::normalize_username(username).map_err(|_| PasskeyError::UserNotFound)?;
        self.store.user_by_username(&username).await?.ok_or(PasskeyError::UserNotFound)
    }

    /// `POST /v1/users/{u}/passkeys/registrations`. A user without any factor: the app vouches.
    /// A user with one: only with their approval, which this consumes (audited either way).
    pub async fn begin_registration(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        request: RegistrationRequest,
    ) -> Result<BegunRegistration, PasskeyError> {
        self.begin(Issuer::App(app), username, request, None).await
    }

    /// Begins a ceremony under the trust rule; with `link_code_hash`, for an enrollment link
    /// (stored with it, living as long as the link).
    pub(super) async fn begin(
        &self,
        issuer: Issuer<'_>,
        username: &str,
        request: RegistrationRequest,
        link_code_hash: Option<&[u8]>,
    ) -> Result<BegunRegistration, PasskeyError> {
        let name = match &request.name {
            Some(name) => model::clean_name(name).map_err(PasskeyError::InvalidInput)?,
            None => DEFAULT_NAME.to_owned(),
        };
        let user = self.user(username).await?;
        let passkeys = self.store.passkeys_for_user(user.id).await?;
        let has_device = self.store.devices_for_user(user.id).await?.iter().any(DeviceRecord::is_active);
        let has_factor = has_device || passkeys.iter().any(PasskeyRecord::is_active);
        let now = self.clock.now();
        let id = RegistrationId::random();
        let actor = issuer.actor();
        let proof = match (issuer, request.approval) {
            (Issuer::Operator { recovery: true }, None) => RegistrationProof::Operator,
            (Issuer::App(app) | Issuer::HelpDesk { app, .. }, Some(challenge)) => {
                let proof = ApprovalProof {
                    challenge,
                    app_id: app.id,
                    user: user.id,
                    window: SECOND_DEVICE_APPROVAL_WINDOW,
                };
                let redeemed = AuditEvent::new(now, actor.clone(), Action::Challenge(ChallengeState::Redeemed), Subject::Challenge(challenge))
                    .with_details(json!({ "challenge_id": challenge, "purpose": "passkey_registration", "registration_id": id }));
                RegistrationProof::Approval { proof, redeemed: Box::new(redeemed) }
            }
            (Issuer::Operator { .. }, Some(_)) => {
                return Err(PasskeyError::InvalidInput(
                    "the operator vouches; it presents no approval".into(),
                ));
            }
            (_, None) if has_factor => {
                self.audit_refused(actor, &user, "second_factor_proof_required", json!({})).await?;
                return Err(PasskeyError::SecondFactorProofRequired);
            }
            (_, None) => RegistrationProof::FirstFactor,
        };
        let handle = self.ensure_user_handle(user.id).await?;
        let (server_state, options) = self.creation_options(&user, &handle, &passkeys)?;
        let ceremony = RegistrationCeremony {
            id,
            user_id: user.id,
            app_id: issuer.app_id(),
            name,
            is_first_factor: matches!(proof, RegistrationProof::FirstFactor),
            server_state,
            created_at: now,
            expires_at: now + if link_code_hash.is_some() { ENROLLMENT_LINK_TTL } else { REGISTRATION_TTL },
        };
        let link = link_code_hash.map(|hash| EnrollmentLink {
            code_hash: hash.to_vec(),
            registration_id: id,
            user_id: user.id,
            username: user.username.clone(),
            app_id: issuer.app_id(),
            app_name: issuer.app_name(),
            options: options.to_string(),
            created_at: now,
            expires_at: ceremony.expires_at,
        });
        let event =
            AuditEvent::new(now, actor.clone(), Action::PasskeyRegistrationStarted, Subject::User(user.id))
                .with_details(json!({
                    "registration_id": id,
                    "username": user.username,
                    "first_factor": ceremony.is_first_factor,
                    "recovery": matches!(proof, RegistrationProof::Operator),
                    "approval": request.approval,
                    "enrollment_link": link.is_some(),
                }));
        match self.store.begin_registration(ceremony.clone(), proof, link.as_ref(), event).await {
            Ok(()) => Ok(BegunRegistration { ceremony, options }),
            Err(StoreError::NotFound) => {
                let details = json!({ "approval": request.approval });
                self.audit_refused(actor, &user, "approval_invalid", details).await?;
                Err(PasskeyError::ApprovalInvalid)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The user's WebAuthn handle, made on their first registration: random, shared by all their
    /// credentials, never their name.
    pub(super) async fn ensure_user_handle(&self, user: UserId) -> Result<UserHandle64, PasskeyError> {
        let candidate = infallible(UserHandle64::new().encode());
        decode_user_handle(self.store.ensure_user_handle(user, &candidate).await?)
    }

    /// The handle of a user who has a passkey (a sign-in reads it, never writes it).
    pub(super) async fn user_handle_of(&self, user: UserId) -> Result<UserHandle64, PasskeyError> {
        let stored = self.store.user_handle(user).await?;
        decode_user_handle(
            stored.ok_or_else(|| InternalError::new("a user with a passkey has no WebAuthn user handle"))?,
        )
    }

    /// Creation options (user verification required, resident key preferred, the user's
    /// passkeys excluded) and the encoded server state to keep.
    fn creation_options(
        &self,
        user: &UserRecord,
        handle: &UserHandle64,
        passkeys: &[PasskeyRecord],
    ) -> Result<(Vec<u8>, serde_json::Value), PasskeyError> {
        let exclude = passkeys.iter().filter_map(descriptor).collect();
        let entity = UserEntity {
            handle: handle.as_ref(),
            name: &user.username,
            display_name: user.display_name.as_deref(),
        };
        let begun = ceremony::creation_options(&self.settings, entity, exclude, ResidentKey::Preferred)?;
        Ok((begun.server_state, begun.options))
    }

    /// `POST /v1/users/{u}/passkeys/registrations/{id}` with `credential.toJSON()`.
    pub async fn complete_registration(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        id: RegistrationId,
        credential: &serde_json::Value,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let user = self.user(username).await?;
        let ceremony = self
            .store
            .registration(id)
            .await?
            .filter(|c| c.user_id == user.id && c.app_id == Some(app.id))
            .ok_or(PasskeyError::RegistrationNotFound)?;
        self.finish_registration(&app.actor(), &user, &ceremony, credential).await
    }

    /// Verifies the credential against the ceremony and stores the passkey; `actor` is who
    /// the audit trail names (the app, directly or through its enrollment link).
    pub(super) async fn finish_registration(
        &self,
        actor: &Actor,
        user: &UserRecord,
        ceremony: &RegistrationCeremony,
        credential: &serde_json::Value,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let id = ceremony.id;
        let now = self.clock.now();
        if ceremony.expires_at <= now {
            return Err(PasskeyError::RegistrationExpired);
        }
        let new = match ceremony::verify_registration(&self.settings, &ceremony.server_state, credential) {
            Ok(new) => new,
            Err(CeremonyError::Rejected { rejection, message }) => {
                let details =
                    json!({ "registration_id": id, "rejection": rejection.as_str(), "cause": message });
                self.audit_refused(actor.clone(), user, "credential_rejected", details).await?;
                return Err(PasskeyError::Rejected { rejection, message });
            }
            Err(CeremonyError::AuthenticatorNotAllowed { aaguid }) => {
                let details = json!({ "registration_id": id, "aaguid": aaguid_text(&aaguid) });
                self.audit_refused(actor.clone(), user, "authenticator_not_allowed", details).await?;
                return Err(PasskeyError::AuthenticatorNotAllowed);
            }
            Err(other) => return Err(other.into()),
        };
        let passkey = PasskeyRecord {
            id: PasskeyId::random(),
            user_id: user.id,
            credential_id: new.credential_id,
            name: ceremony.name.clone(),
            static_state: new.static_state,
            dynamic_state: new.dynamic_state,
            transports: new.transports,
            aaguid: new.aaguid,
            backup_eligible: new.backup_eligible,
            backed_up: new.backed_up,
            sign_count: new.sign_count,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        self.store_passkey(actor, user, ceremony, passkey).await
    }

    async fn store_passkey(
        &self,
        actor: &Actor,
        user: &UserRecord,
        ceremony: &RegistrationCeremony,
        passkey: PasskeyRecord,
    ) -> Result<PasskeyRecord, PasskeyError> {
        // The operator's word replaced the user's approval: the user's phones say so.
        let operator_issued = ceremony.app_id.is_none();
        let mut notice = json!({ "passkey_id": passkey.id, "name": passkey.name });
        if operator_issued {
            notice["operator_issued"] = json!(true);
        }
        let notice_details = notice.to_string();
        let event = AuditEvent::new(
            passkey.created_at,
            actor.clone(),
            Action::PasskeyRegistered,
            Subject::User(user.id),
        )
        .with_details(json!({
            "registration_id": ceremony.id,
            "passkey_id": passkey.id,
            "username": user.username,
            "name": passkey.name,
            "aaguid": aaguid_text(&passkey.aaguid),
            "backup_eligible": passkey.backup_eligible,
            "backed_up": passkey.backed_up,
            "first_factor": ceremony.is_first_factor,
            "operator_issued": operator_issued,
        }));
        let credential_id = passkey.credential_id.clone();
        match self
            .store
            .complete_registration(ceremony, passkey, ("passkey_added", notice_details), event)
            .await
        {
            Ok(stored) => Ok(stored),
            Err(StoreError::NotFound) => Err(PasskeyError::RegistrationNotFound),
            Err(StoreError::Conflict(Conflict::SecondDevice)) => {
                self.audit_refused(
                    actor.clone(),
                    user,
                    "second_factor_proof_required",
                    json!({ "registration_id": ceremony.id }),
                )
                .await?;
                Err(PasskeyError::SecondFactorProofRequired)
            }
            // The ceremony was still unused (its delete comes first), so this is another binding.
            Err(StoreError::Conflict(Conflict::PasskeyCredential)) => {
                match self.store.passkey_by_credential_id(&credential_id).await? {
                    Some(bound) => Err(self.binding_refused(actor, user, &bound, ceremony.id).await?),
                    None => Err(PasskeyError::FactorAlreadyBound),
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A credential offered for a second binding (factor sharing): audited naming both users.
    async fn binding_refused(
        &self,
        actor: &Actor,
        user: &UserRecord,
        bound: &PasskeyRecord,
        registration: RegistrationId,
    ) -> Result<PasskeyError, PasskeyError> {
        let event = AuditEvent::new(
            self.clock.now(),
            actor.clone(),
            Action::FactorBindingRefused,
            Subject::User(user.id),
        )
        .with_details(json!({
            "factor": "passkey",
            "registration_id": registration,
            "username": user.username,
            "user_id": user.id,
            "bound_to_user_id": bound.user_id,
            "bound_passkey_id": bound.id,
        }));
        self.store.record_audit(event).await?;
        Ok(PasskeyError::FactorAlreadyBound)
    }

    async fn audit_refused(
        &self,
        actor: Actor,
        user: &UserRecord,
        reason: &str,
        mut details: serde_json::Value,
    ) -> Result<(), PasskeyError> {
        if let Some(map) = details.as_object_mut() {
            map.insert("username".into(), json!(user.username));
            map.insert("reason".into(), json!(reason));
        }
        let event = AuditEvent::new(
            self.clock.now(),
            actor,
            Action::PasskeyRegistrationRefused,
            Subject::User(user.id),
        )
        .with_details(details);
        self.store.record_audit(event).await?;
        Ok(())
    }

    /// `GET /v1/users/{u}/passkeys`: revoked ones included.
    pub async fn list(&self, username: &str) -> Result<Vec<PasskeyRecord>, PasskeyError> {
        let user = self.user(username).await?;
        Ok(self.store.passkeys_for_user(user.id).await?)
    }

    /// `PATCH /v1/users/{u}/passkeys/{id}` (audited).
    pub async fn rename(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        id: PasskeyId,
        name: &str,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let name = model::clean_name(name).map_err(PasskeyError::InvalidInput)?;
        let user = self.user(username).await?;
        let event =
            AuditEvent::new(self.clock.now(), app.actor(), Action::PasskeyRenamed, Subject::User(user.id))
                .with_details(json!({ "passkey_id": id, "username": user.username, "name": name }));
        match self.store.rename_passkey(user.id, id, &name, event).await {
            Err(StoreError::NotFound) => Err(PasskeyError::PasskeyNotFound),
            other => Ok(other?),
        }
    }

    /// `DELETE /v1/users/{u}/passkeys/{id}`: revoked at once (audited); the credential id stays
    /// bound to the user.
    pub async fn revoke(
        &self,
        actor: Actor,
        username: &str,
        id: PasskeyId,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let user = self.user(username).await?;
        let now: OffsetDateTime = self.clock.now();
        let event = AuditEvent::new(now, actor, Action::PasskeyRevoked, Subject::User(user.id))
            .with_details(json!({ "passkey_id": id, "username": user.username }));
        match self.store.revoke_passkey(user.id, id, now, event).await {
            Err(StoreError::NotFound) => Err(PasskeyError::PasskeyNotFound),
            other => Ok(other?),
        }
    }
}

/// An active passkey as a descriptor for `excludeCredentials` / `allowCredentials`.
pub(super) fn descriptor(passkey: &PasskeyRecord) -> Option<Descriptor> {
    if !passkey.is_active() {
        return None;
    }
    ceremony::descriptor(&passkey.credential_id, passkey.transports)
}

/// An AAGUID as a UUID string (all zeros for attestation `none`).
fn aaguid_text(aaguid: &[u8]) -> String {
    uuid::Uuid::from_slice(aaguid).map(|u| u.to_string()).unwrap_or_else(|_| hex::encode(aaguid))
}

fn decode_user_handle(stored: Vec<u8>) -> Result<UserHandle64, PasskeyError> {
    let bytes: [u8; 64] =
        stored.try_into().map_err(|_| InternalError::new("a stored WebAuthn user handle is not 64 bytes"))?;
    Ok(infallible(UserHandle64::decode(bytes)))
}
