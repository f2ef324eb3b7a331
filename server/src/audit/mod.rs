//! The audit trail: append-only, hash-chained events written in the same transaction as the
//! change they record (see `store`), and the verifier behind `countersign audit verify`.
//!
//! This module owns what an event says and how the chain is checked; it never writes events
//! itself — a change and its event are one store operation. The changing transaction writes its
//! event sealed but unchained (`audit_pending`); [`chainer`] links pending events onto the chain
//! in batches, so appends never wait on each other, and [`flush`] chains everything committed
//! so far before the trail is read or verified.

pub mod chain;
pub mod chainer;

use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::unix_micros;
use crate::store::{AuditStore, StoreError};
use chain::{AuditSealer, ChainBreak, ChainVerifier, Checkpoint, CheckpointBreak};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The operator, through the `countersign` command line.
    Cli,
    /// An application, through its API key.
    App { id: crate::ids::AppId, name: String },
    /// A phone, through its device key.
    Device { id: crate::ids::DeviceId },
    /// The server itself (expiry, workers).
    System,
    /// An OpenID Connect client, through its client authentication.
    OidcClient { id: crate::oidc::clients::ClientId },
    /// An admin, through an admin session.
    Admin { id: crate::ids::AdminId },
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::App { id, .. } => write!(f, "app:{id}"),
            Actor::Device { id } => write!(f, "device:{id}"),
            Actor::System => f.write_str("system"),
            Actor::OidcClient { id } => write!(f, "oidc_client:{id}"),
            Actor::Admin { id } => write!(f, "admin:{id}"),
        }
    }
}

/// What an event or an alert is about: one spelling per kind (`user:<id>`, `challenge:<id>`, …),
/// which SIEM rules and the timeline query match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(crate::ids::UserId),
    App(crate::ids::AppId),
    Challenge(crate::ids::ChallengeId),
    Device(crate::ids::DeviceId),
    /// A client network (`203.0.113.0/24`): push spray.
    Network(String),
    /// Requests naming device ids the server does not know, taken together.
    UnknownDevices,
    /// An OpenID Connect signing key, by its `kid`.
    SigningKey(String),
    /// A registered OIDC client.
    OidcClient(crate::oidc::clients::ClientId),
    /// Token requests naming client ids the server does not know, taken together.
    UnknownOidcClients,
    /// A configured Keycloak realm, by its issuer.
    KeycloakRealm(String),
    /// Channel requests whose token names no configured realm, taken together.
    UnknownKeycloakRealms,
    Admin(crate::ids::AdminId),
    /// A four-eyes request of the admin plane.
    AdminRequest(crate::ids::AdminRequestId),
    /// Admin sign-ins that named no admin (an unknown passkey), taken together.
    UnknownAdmins,
    /// The admin plane's bootstrap (`countersign admin bootstrap` tokens), before any admin.
    AdminBootstrap,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(id) => write!(f, "user:{id}"),
            Subject::App(id) => write!(f, "app:{id}"),
            Subject::Challenge(id) => write!(f, "challenge:{id}"),
            Subject::Device(id) => write!(f, "device:{id}"),
            Subject::Network(network) => write!(f, "network:{network}"),
            Subject::UnknownDevices => f.write_str("devices:unknown"),
            Subject::SigningKey(kid) => write!(f, "signing_key:{kid}"),
            Subject::OidcClient(id) => write!(f, "oidc_client:{id}"),
            Subject::UnknownOidcClients => f.write_str("oidc_clients:unknown"),
            Subject::KeycloakRealm(issuer) => write!(f, "keycloak_realm:{issuer}"),
            Subject::UnknownKeycloakRealms => f.write_str("keycloak_realms:unknown"),
            Subject::Admin(id) => write!(f, "admin:{id}"),
            Subject::AdminRequest(id) => write!(f, "admin_request:{id}"),
            Subject::UnknownAdmins => f.write_str("admins:unknown"),
            Subject::AdminBootstrap => f.write_str("admins:bootstrap"),
        }
    }
}

/// What happened; the stable dotted names are what SIEM rules match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AppCreated,
    AppRevoked,
    UserCreated,
    UserDeleted,
    /// A user's passkey policy changed.
    UserPolicyChanged,
    EnrollmentCreated,
    DeviceEnrolled,
    /// A key or push token bound to another user was offered again (factor sharing).
    FactorBindingRefused,
    /// A known device's request was refused: bad signature, replay, or revoked.
    DeviceRequestRefused,
    DeviceRevoked,
    DeviceUnenrolled,
    PushTokenUpdated,
    /// A challenge entered this state (created = pending).
    Challenge(crate::challenges::model::ChallengeState),
    /// An app tried to redeem a challenge that is not redeemable (e.g. a second time).
    ChallengeRedeemRefused,
    /// The push provider reported a device's token dead; it was disabled.
    PushTokenDisabled,
    /// A prompt was refused by the fatigue defence (budget, freeze, lock).
    PromptRefused,
    /// An admin or app lifted a user's push freeze or lock.
    PushUnfrozen,
    /// A correctly signed device answer reused an old counter: a second holder of the key.
    PossibleClone,
    /// An enrollment that would add a device was refused (no proof, or an unusable approval).
    EnrollmentRefused,
    /// A passkey registration ceremony began.
    PasskeyRegistrationStarted,
    PasskeyRegistered,
    /// A passkey registration was refused: no proof, an unusable approval, or a response that
    /// does not verify (wrong origin or RP, no user verification, a disallowed authenticator).
    PasskeyRegistrationRefused,
    PasskeyRenamed,
    PasskeyRevoked,
    /// An assertion for a passkey sign-in was refused (it counts against the sign-in's budget).
    PasskeyAssertionRefused,
    /// An OIDC signing key was created: published at once, signing from its `activates_at`.
    SigningKeyCreated,
    /// An OIDC signing key was revoked: out of the JWKS at once, never signs again.
    SigningKeyRevoked,
    OidcClientCreated,
    OidcClientRevoked,
    /// An OIDC client's authentication was refused: unknown or revoked client, wrong secret,
    /// a bad or replayed assertion, the wrong method (a flood of these is a signal).
    OidcClientAuthRefused,
    /// A client pushed an authorization request (PAR), naming the user to prompt.
    OidcRequestPushed,
    /// An OIDC sign-in began: its challenge was created for the user the client named.
    OidcSignInStarted,
    /// The user of an OIDC sign-in chose a passkey instead of the push: the push was cancelled
    /// and the sign-in moved to a passkey sign-in.
    OidcSignInSwitched,
    /// An OIDC sign-in ended: a code was issued, or the client is told `access_denied`.
    OidcSignInFinished,
    /// A code was exchanged for tokens.
    OidcTokensIssued,
    /// A code was refused at the token endpoint (another client's, wrong PKCE verifier or
    /// redirect URI, expired); a second use of a redeemed code also revokes what it issued.
    OidcCodeRefused,
    /// An upstream issuer's `id_token_hint` was refused (does not verify, unknown issuer for
    /// the client, too old, used before): nobody was prompted.
    OidcHintRefused,
    /// A client's signed request object was refused (does not verify, replayed): nobody was
    /// prompted.
    OidcRequestObjectRefused,
    /// A CIBA client asked to authenticate a user in the back channel (whether or not a
    /// prompt could be sent: the answer was the same).
    OidcCibaRequested,
    /// A CIBA request's tokens were refused or issued at the token endpoint's CIBA grant.
    OidcCibaRefused,
    /// A callback owed on a decided challenge (CIBA ping, Keycloak outcome) was delivered.
    CallbackDelivered,
    /// A callback was given up: refused by its receiver, or the request was over.
    CallbackFailed,
    /// A Keycloak realm's CIBA request prompted the user it names (`POST /keycloak/ciba`).
    KeycloakRequestAccepted,
    /// A Keycloak channel request prompted nobody: a bad or replayed token, a bad body or
    /// binding message, a subject pinned to another user (all answered with an error), or an
    /// unknown user, no device, push refused (answered 201, the callback says `CANCELLED`).
    KeycloakRequestRefused,
    /// A one-time bootstrap token was made (`countersign admin bootstrap`).
    AdminBootstrapTokenCreated,
    /// A bootstrap token was spent: an admin registered their first passkey.
    AdminBootstrapped,
    /// A bootstrap token was refused: unknown, used, expired, or the plane already has its admins.
    AdminBootstrapRefused,
    /// An approved request created an invited admin and their one-time invitation.
    AdminInvited,
    AdminSignedIn,
    /// An admin sign-in assertion was refused (unknown, revoked or cloned passkey, inactive admin).
    AdminSignInRefused,
    AdminSignedOut,
    AdminSessionRevoked,
    /// An admin proved a passkey again for one sensitive action.
    AdminSteppedUp,
    AdminPasskeyRegistered,
    AdminPasskeyRevoked,
    /// A four-eyes request waits for a second admin.
    AdminRequestSubmitted,
    AdminRequestApproved,
    AdminRequestRejected,
    AdminRequestCancelled,
    /// Nobody decided a request within its 24 hours.
    AdminRequestExpired,
    /// An approved request's change was made.
    AdminRequestApplied,
    /// An approved request's change could not be made (e.g. it would now leave fewer than two
    /// admins): the request is pending again.
    AdminRequestApplyRefused,
    AdminRoleChanged,
    /// An admin's removal was scheduled: their sessions end now, the removal takes effect after the delay.
    AdminRemovalScheduled,
    AdminRemovalCancelled,
    /// Every session of an admin was ended by an admin.
    AdminSessionsEnded,
    /// An invited admin was removed before redeeming the invitation: it can never be used.
    AdminInvitationWithdrawn,
    FatiguePolicyChanged,
    /// An app asked to lift a freeze only an admin may lift (a "not me" quarantine, a hard lock).
    UnfreezeRefused,
    /// A help-desk agent sent a caller a number-matching push to verify them.
    CallerVerificationStarted,
    HelpdeskEnrollmentLinkIssued,
    /// Every factor of a user was removed (devices, passkeys, open enrollments and links).
    UserFactorsReset,
    /// An admin had the audit chain verified; details say what was found.
    AuditVerified,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::AppCreated => "app.created",
            Action::AppRevoked => "app.revoked",
            Action::UserCreated => "user.created",
            Action::UserDeleted => "user.deleted",
            Action::UserPolicyChanged => "user.policy_changed",
            Action::EnrollmentCreated => "enrollment.created",
            Action::DeviceEnrolled => "device.enrolled",
            Action::FactorBindingRefused => "device.factor_refused",
            Action::DeviceRequestRefused => "device.request_refused",
            Action::DeviceRevoked => "device.revoked",
            Action::DeviceUnenrolled => "device.unenrolled",
            Action::PushTokenUpdated => "device.push_token_updated",
            Action::PushTokenDisabled => "device.push_token_disabled",
            Action::PromptRefused => "fatigue.prompt_refused",
            Action::PushUnfrozen => "fatigue.unfrozen",
            Action::PossibleClone => "device.possible_clone",
            Action::EnrollmentRefused => "enrollment.refused",
            Action::PasskeyRegistrationStarted => "passkey.registration_started",
            Action::PasskeyRegistered => "passkey.registered",
            Action::PasskeyRegistrationRefused => "passkey.registration_refused",
            Action::PasskeyRenamed => "passkey.renamed",
            Action::PasskeyRevoked => "passkey.revoked",
            Action::PasskeyAssertionRefused => "passkey.assertion_refused",
            Action::ChallengeRedeemRefused => "challenge.redeem_refused",
            Action::SigningKeyCreated => "signing_key.created",
            Action::SigningKeyRevoked => "signing_key.revoked",
            Action::OidcClientCreated => "oidc_client.created",
            Action::OidcClientRevoked => "oidc_client.revoked",
            Action::OidcClientAuthRefused => "oidc_client.auth_refused",
            Action::OidcRequestPushed => "oidc.request_pushed",
            Action::OidcSignInStarted => "oidc.sign_in_started",
            Action::OidcSignInSwitched => "oidc.sign_in_switched",
            Action::OidcSignInFinished => "oidc.sign_in_finished",
            Action::OidcTokensIssued => "oidc.tokens_issued",
            Action::OidcCodeRefused => "oidc.code_refused",
            Action::OidcHintRefused => "oidc.hint_refused",
            Action::OidcRequestObjectRefused => "oidc.request_object_refused",
            Action::OidcCibaRequested => "oidc.ciba_requested",
            Action::OidcCibaRefused => "oidc.ciba_refused",
            Action::CallbackDelivered => "callback.delivered",
            Action::CallbackFailed => "callback.failed",
            Action::KeycloakRequestAccepted => "keycloak.request_accepted",
            Action::KeycloakRequestRefused => "keycloak.request_refused",
            Action::AdminBootstrapTokenCreated => "admin.bootstrap_token_created",
            Action::AdminBootstrapped => "admin.bootstrapped",
            Action::AdminBootstrapRefused => "admin.bootstrap_refused",
            Action::AdminInvited => "admin.invited",
            Action::AdminSignedIn => "admin.signed_in",
            Action::AdminSignInRefused => "admin.sign_in_refused",
            Action::AdminSignedOut => "admin.signed_out",
            Action::AdminSessionRevoked => "admin.session_revoked",
            Action::AdminSteppedUp => "admin.stepped_up",
            Action::AdminPasskeyRegistered => "admin.passkey_registered",
            Action::AdminPasskeyRevoked => "admin.passkey_revoked",
            Action::AdminRequestSubmitted => "admin.request_submitted",
            Action::AdminRequestApproved => "admin.request_approved",
            Action::AdminRequestRejected => "admin.request_rejected",
            Action::AdminRequestCancelled => "admin.request_cancelled",
            Action::AdminRequestExpired => "admin.request_expired",
            Action::AdminRequestApplied => "admin.request_applied",
            Action::AdminRequestApplyRefused => "admin.request_apply_refused",
            Action::AdminRoleChanged => "admin.role_changed",
            Action::AdminRemovalScheduled => "admin.removal_scheduled",
            Action::AdminRemovalCancelled => "admin.removal_cancelled",
            Action::AdminInvitationWithdrawn => "admin.invitation_withdrawn",
            Action::AdminSessionsEnded => "admin.sessions_ended",
            Action::FatiguePolicyChanged => "fatigue.policy_changed",
            Action::UnfreezeRefused => "fatigue.unfreeze_refused",
            Action::CallerVerificationStarted => "helpdesk.caller_verification_started",
            Action::HelpdeskEnrollmentLinkIssued => "helpdesk.enrollment_link_issued",
            Action::UserFactorsReset => "user.factors_reset",
            Action::AuditVerified => "audit.verified",
            Action::Challenge(state) => {
                use crate::challenges::model::ChallengeState::*;
                match state {
                    Pending => "challenge.created",
                    Approved => "challenge.approved",
                    Denied => "challenge.denied",
                    DeniedWrongNumber => "challenge.denied_wrong_number",
                    Reported => "challenge.reported",
                    Expired => "challenge.expired",
                    Cancelled => "challenge.cancelled",
                    Redeemed => "challenge.redeemed",
                }
            }
        }
    }
}

/// One event to append. Details never carry secrets, numbers or tokens.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub action: Action,
    pub subject: Subject,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(occurred_at: OffsetDateTime, actor: Actor, action: Action, subject: Subject) -> Self {
        Self { occurred_at, actor, action, subject, details: Value::Null }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The event as stored and hashed; every engine stores exactly these strings.
    pub fn to_row(&self) -> EventRow {
        let mut details = self.details.clone();
        if let (Actor::App { name, .. }, Value::Object(map)) = (&self.actor, &mut details) {
            map.entry("app_name").or_insert_with(|| Value::String(name.clone()));
        }
        EventRow {
            occurred_at_micros: unix_micros(self.occurred_at),
            actor: self.actor.to_string(),
            action: self.action.as_str().to_owned(),
            subject: self.subject.to_string(),
            details: details.to_string(),
        }
    }
}

/// The stored text of an event, before it gets its sequence number and hashes.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub occurred_at_micros: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

impl EventRow {
    pub fn content(&self, seq: i64) -> chain::EventContent<'_> {
        chain::EventContent {
            event_id: None,
            seq,
            occurred_at_micros: self.occurred_at_micros,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            details: &self.details,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit chain broken at sequence number {seq}: {0}", seq = .0.seq())]
    Broken(ChainBreak),
    #[error("audit event {0} waiting to be chained fails its seal: it was forged or altered in the database")]
    PendingForged(i64),
    #[error(
        "audit event {pending} waiting to be chained is a copy of chained event {seq} (same event id): a captured event was inserted again"
    )]
    PendingReplayed { pending: i64, seq: i64 },
    #[error("audit checkpoint check failed: {0}")]
    Checkpoint(CheckpointBreak),
    #[error("could not read the audit trail")]
    Store(#[from] StoreError),
}

/// Events read per round trip while verifying.
const VERIFY_PAGE: u32 = 1_000;

/// Pending events chained per transaction.
pub const CHAIN_BATCH: u32 = 1_000;

/// Chains what is pending and exports the sealed head, to be kept outside the database.
pub async fn checkpoint(
    store: &dyn AuditStore,
    exported_at: OffsetDateTime,
) -> Result<Checkpoint, StoreError> {
    flush(store).await?;
    Ok(Checkpoint::from_head(&store.audit_head().await?, exported_at.unix_timestamp()))
}

/// Chains every audit event committed so far; returns how many were chained.
pub async fn flush(store: &dyn AuditStore) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let chained = store.chain_pending_audit(CHAIN_BATCH).await?;
        total += chained;
        if chained < u64::from(CHAIN_BATCH) {
            return Ok(total);
        }
    }
}

/// Chains what is pending (checking each pending seal), then walks the whole chain and checks it
/// against the sealed head. Returns the number of events.
///
/// The head is read first and the walk stops there, so events appended while verifying are not
/// mistaken for tampering; rows beyond the head are only reported if they are still beyond the
/// head when the walk ends.
pub async fn verify(store: &dyn AuditStore, sealer: &AuditSealer) -> Result<i64, VerifyError> {
    verify_against(store, sealer, None).await
}

/// [`verify`], and the chain must also pass through `checkpoint` (a head exported earlier): a
/// database rolled back to an older, self-consistent state fails here.
pub async fn verify_against(
    store: &dyn AuditStore,
    sealer: &AuditSealer,
    checkpoint: Option<&Checkpoint>,
) -> Result<i64, VerifyError> {
    let mut verifier = match checkpoint {
        Some(checkpoint) => {
            ChainVerifier::with_checkpoint(checkpoint, sealer).map_err(VerifyError::Checkpoint)?
        }
        None => ChainVerifier::default(),
    };
    flush(store).await.map_err(|error| match error {
        StoreError::PendingAuditInvalid(id) => VerifyError::PendingForged(id),
        StoreError::PendingAuditReplayed { pending, seq } => VerifyError::PendingReplayed { pending, seq },
        other => VerifyError::Store(other),
    })?;
    let head = store.audit_head().await?;
    let mut after = 0;
    loop {
        let page = store.audit_events(after, head.seq, VERIFY_PAGE).await?;
        for event in &page {
            verifier.check(event).map_err(VerifyError::Broken)?;
            if let Some(diverged) = verifier.diverges(event.seq, &event.hash) {
                return Err(VerifyError::Checkpoint(diverged));
            }
        }
        match page.last() {
            Some(last) if page.len() == VERIFY_PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    verifier.check_checkpoint().map_err(VerifyError::Checkpoint)?;
    let count = verifier.finish(&head, sealer).map_err(VerifyError::Broken)?;
    // Ids are hashed, so a copy cannot hide behind another id; the unique index may have been
    // dropped, so look for copies rather than trust it.
    if let Some((seq, first_seq)) = store.audit_duplicate_event(head.seq).await? {
        return Err(VerifyError::Broken(ChainBreak::DuplicateEvent { seq, first_seq }));
    }
    let max_seq = store.audit_max_seq().await?;
    if max_seq > head.seq {
        let current = store.audit_head().await?;
        if max_seq > current.seq {
            return Err(VerifyError::Broken(ChainBreak::BeyondHead { seq: current.seq + 1 }));
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChallengeId, UserId};

    /// Subjects are spelled one way per kind: the timeline and SIEM rules match on them.
    #[test]
    fn subjects_have_one_spelling_per_kind() {
        let user = UserId(uuid::Uuid::nil());
        assert_eq!(Subject::User(user).to_string(), "user:00000000-0000-0000-0000-000000000000");
        let challenge = ChallengeId(uuid::Uuid::nil());
        assert!(Subject::Challenge(challenge).to_string().starts_with("challenge:"));
        assert_eq!(Subject::Network("203.0.113.0/24".into()).to_string(), "network:203.0.113.0/24");
        assert_eq!(Subject::UnknownDevices.to_string(), "devices:unknown");
        let event = AuditEvent::new(
            time::OffsetDateTime::UNIX_EPOCH,
            Actor::System,
            Action::UserCreated,
            Subject::User(user),
        );
        assert_eq!(event.to_row().subject, Subject::User(user).to_string());
    }
}
