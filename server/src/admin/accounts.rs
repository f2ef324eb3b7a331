//! Admin accounts: the bootstrap token, invitations, admins' passkeys, and the passkey
//! ceremonies admins sign in and step up with (through the store-free `passkeys::ceremony`).
//!
//! Every ceremony is single use, expires after [`CEREMONY_TTL`], and is bound to what began it:
//! before a session, to a random login-ceremony cookie ([`LOGIN_COOKIE`], kept only as its
//! SHA-256), so an assertion answered in another browser finds no ceremony; with a session, to
//! the session. The state kept with it (webauthn_rp's server state and what the ceremony is
//! for) is sealed under the master key with the ceremony's id as context.
//!
//! Sign-in is discoverable: no name is typed, the authenticator names the credential and its
//! user handle, and both must be one admin's. Only `admin_passkeys` is consulted, so a user's
//! passkey never signs in here (and users' sign-in consults only `passkeys`).

use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::model::StepUpAction;
use super::model::{
    AdminStatus, CEREMONY_TTL, INVITATION_TTL, MIN_ACTIVE_ADMINS, NameRefused, Role, UNKNOWN_SIGN_IN_WINDOW,
    admin_name, bootstrap_ttl_allowed,
};
use super::sessions::{AdminPrincipal, random_secret, secret_hash};
use crate::alerts::AlertKind;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::ids::{AdminCeremonyId, AdminId, AdminPasskeyId};
use crate::passkeys::ceremony::{
    self, Assertion, CeremonyError, Descriptor, DiscoverableAssertion, NewCredential, ResidentKey,
    StoredCredential, UserEntity,
};
use crate::passkeys::model::WebauthnSettings;
use crate::secrets::MasterKey;
use crate::store::{
    AdminAssertionUpdate, AdminCeremonyRecord, AdminPasskeyRecord, AdminPasskeyRevoke, AdminRecord,
    BootstrapSpend, CeremonyKind, Conflict, InvitationRecord, InvitationRedeem, Store, StoreError,
};

/// The login-ceremony cookie: binds a sign-in, bootstrap or invitation ceremony to the browser
/// that began it.
pub const LOGIN_COOKIE: &str = "__Host-countersign-admin-login";

/// What a sealed ceremony state is authenticated with (plus the ceremony's id).
const SEAL_CONTEXT: &str = "countersign/v1/admin-ceremony:";

/// Why an account operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    InvalidName(#[from] NameRefused),
    #[error("the bootstrap token's lifetime must be between 1 minute and 24 hours")]
    InvalidTtl,
    #[error("no bootstrap token has this value")]
    BootstrapTokenInvalid,
    #[error("this bootstrap token has been used already")]
    BootstrapTokenUsed,
    #[error("this bootstrap token has expired: create a new one")]
    BootstrapTokenExpired,
    #[error(
        "the admin plane has its {MIN_ACTIVE_ADMINS} active admins: further admins are invited and approved by two"
    )]
    BootstrapClosed,
    #[error("no invitation has this value")]
    InvitationInvalid,
    #[error("this invitation has been used already")]
    InvitationUsed,
    #[error("this invitation has expired: ask for a new one")]
    InvitationExpired,
    #[error("an admin with this name exists already")]
    AdminExists,
    #[error("no such ceremony: it expired, was used, or was begun in another browser or session")]
    CeremonyInvalid,
    #[error("the passkey does not verify: {0}")]
    Ceremony(CeremonyError),
    #[error("this passkey cannot sign in to the admin plane")]
    UnknownCredential,
    #[error("the signature counter did not rise: the passkey may have been copied")]
    CounterNotIncreasing,
    #[error("this credential is already bound to a user or an admin")]
    FactorAlreadyBound,
    #[error("no such passkey of yours")]
    PasskeyNotFound,
    #[error("this is your last active passkey: add another before revoking it")]
    LastPasskey,
    #[error("internal failure")]
    Internal(#[from] InternalError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(Conflict::PasskeyCredential) => AccountError::FactorAlreadyBound,
            StoreError::Conflict(Conflict::AdminName) => AccountError::AdminExists,
            other => AccountError::Store(other),
        }
    }
}

impl From<CeremonyError> for AccountError {
    fn from(error: CeremonyError) -> Self {
        match error {
            CeremonyError::CounterNotIncreasing => AccountError::CounterNotIncreasing,
            CeremonyError::Internal(e) => AccountError::Internal(e),
            other => AccountError::Ceremony(other),
        }
    }
}

/// A begun ceremony: the options for the browser and, before a session, the login-ceremony
/// cookie's value to set (shown to the browser once, kept as its SHA-256).
#[derive(Debug)]
pub struct BegunCeremony {
    pub options: serde_json::Value,
    pub login_cookie: Option<SecretString>,
}

/// An admin's passkey as the admin sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminPasskeyView {
    pub id: AdminPasskeyId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    pub backed_up: bool,
    pub active: bool,
}

impl From<&AdminPasskeyRecord> for AdminPasskeyView {
    fn from(p: &AdminPasskeyRecord) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            backed_up: p.backed_up,
            active: p.revoked_at.is_none(),
        }
    }
}

/// What a ceremony is for: sealed with webauthn_rp's state, checked when it is answered.
#[derive(Debug, Serialize, Deserialize)]
enum Purpose {
    Bootstrap {
        token_hash: Vec<u8>,
        name: String,
        handle: Vec<u8>,
    },
    Invitation {
        token_hash: Vec<u8>,
        admin: AdminId,
    },
    AddPasskey {
        admin: AdminId,
        name: String,
    },
    SignIn,
    /// The action the step-up is for (a `StepUpAction`'s text).
    StepUp {
        admin: AdminId,
        action: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    purpose: Purpose,
    server_state: Vec<u8>,
}

/// Refusals that name nothing known (no admin, no token), audited together: anyone can send
/// them, so each one must not cost an audit row.
#[derive(Debug, Default)]
struct Aggregated {
    last_event: Option<OffsetDateTime>,
    unreported: u64,
}

impl Aggregated {
    /// Counts a refusal at `now`: the count to write now (the refusals since the previous event,
    /// this one included), or `None` within [`UNKNOWN_SIGN_IN_WINDOW`] of the previous event.
    fn count(&mut self, now: OffsetDateTime) -> Option<u64> {
        self.unreported += 1;
        if self.last_event.is_some_and(|last| now - last < UNKNOWN_SIGN_IN_WINDOW) {
            return None;
        }
        self.last_event = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[derive(Debug)]
pub struct AdminAccounts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    webauthn: Arc<WebauthnSettings>,
    /// Sign-in refusals naming no admin.
    unknown_sign_ins: Mutex<Aggregated>,
    /// Bootstrap tokens nobody created.
    unknown_tokens: Mutex<Aggregated>,
}

impl AdminAccounts {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        webauthn: Arc<WebauthnSettings>,
    ) -> Self {
        Self {
            store,
            clock,
            master,
            webauthn,
            unknown_sign_ins: Mutex::default(),
            unknown_tokens: Mutex::default(),
        }
    }

    /// Begins the first admin's passkey registration, if the token would be accepted (a bad
    /// token begins nothing).
    pub async fn begin_bootstrap(&self, token: &str, name: &str) -> Result<BegunCeremony, AccountError> {
        let name = admin_name(name)?;
        let token_hash = secret_hash(token);
        match self.store.check_bootstrap_token(&token_hash, self.clock.now()).await? {
            BootstrapSpend::Spent => {}
            refused => return Err(self.bootstrap_refused(refused, "options").await),
        }
        let handle = ceremony::new_user_handle();
        let user = UserEntity { handle: &handle, name: &name, display_name: Some(&name) };
        let begun = ceremony::creation_options(&self.webauthn, user, Vec::new(), ResidentKey::Required)?;
        let purpose = Purpose::Bootstrap { token_hash, name, handle };
        self.begin_in_browser(CeremonyKind::Register, None, purpose, begun).await
    }

    /// Finishes the bootstrap: verifies the passkey, then spends the token and creates the admin
    /// with it in one transaction (audited, alerted).
    pub async fn finish_bootstrap(
        &self,
        login_cookie: Option<&str>,
        credential: &serde_json::Value,
    ) -> Result<AdminRecord, AccountError> {
        let (ceremony, sealed) = self.take_in_browser(login_cookie, CeremonyKind::Register).await?;
        let Purpose::Bootstrap { token_hash, name, handle } = sealed.purpose else {
            return Err(AccountError::CeremonyInvalid);
        };
        let registered = ceremony::verify_registration(&self.webauthn, &sealed.server_state, credential)?;
        let now = self.clock.now();
        let admin = AdminRecord {
            id: AdminId::random(),
            name,
            role: Role::Admin,
            status: AdminStatus::Active,
            webauthn_handle: handle,
            created_at: now,
            created_by: Actor::Cli.to_string(),
            removal_due_at: None,
            removed_at: None,
        };
        let passkey = new_passkey(admin.id, "first passkey", registered, now);
        let audit = AuditEvent::new(
            now,
            Actor::Admin { id: admin.id },
            Action::AdminBootstrapped,
            Subject::Admin(admin.id),
        )
        .with_details(json!({ "name": admin.name, "ceremony": ceremony.id.to_string() }));
        match self.store.spend_bootstrap_token(&token_hash, now, &admin, &passkey, audit).await? {
            BootstrapSpend::Spent => Ok(admin),
            refused => Err(self.bootstrap_refused(refused, "registration").await),
        }
    }

    /// Audits a refused bootstrap token (unknown ones in aggregate) and names the refusal.
    async fn bootstrap_refused(&self, found: BootstrapSpend, at: &str) -> AccountError {
        let (error, reason) = match found {
            BootstrapSpend::Unknown => (AccountError::BootstrapTokenInvalid, "unknown"),
            BootstrapSpend::Used => (AccountError::BootstrapTokenUsed, "used"),
            BootstrapSpend::Expired => (AccountError::BootstrapTokenExpired, "expired"),
            BootstrapSpend::Closed | BootstrapSpend::Spent => (AccountError::BootstrapClosed, "closed"),
        };
        let details = if found == BootstrapSpend::Unknown {
            match aggregate(&self.unknown_tokens, self.clock.now()) {
                Some(refusals) => json!({ "reason": reason, "refusals": refusals, "at": at }),
                None => return error,
            }
        } else {
            json!({ "reason": reason, "at": at })
        };
        let audit = AuditEvent::new(
            self.clock.now(),
            Actor::System,
            Action::AdminBootstrapRefused,
            Subject::AdminBootstrap,
        )
        .with_details(details);
        match self.store.record_audit(audit).await {
            Ok(()) => error,
            Err(e) => e.into(),
        }
    }

    /// Begins an invited admin's first passkey registration, if the invitation is good.
    pub async fn begin_invitation(&self, token: &str) -> Result<BegunCeremony, AccountError> {
        let token_hash = secret_hash(token);
        let Some((invitation, admin)) = self.store.invitation(&token_hash).await? else {
            return Err(AccountError::InvitationInvalid);
        };
        if invitation.used_at.is_some() || admin.status != AdminStatus::Invited {
            return Err(AccountError::InvitationUsed);
        }
        if invitation.expires_at <= self.clock.now() {
            return Err(AccountError::InvitationExpired);
        }
        let user =
            UserEntity { handle: &admin.webauthn_handle, name: &admin.name, display_name: Some(&admin.name) };
        let begun = ceremony::creation_options(&self.webauthn, user, Vec::new(), ResidentKey::Required)?;
        let purpose = Purpose::Invitation { token_hash, admin: admin.id };
        self.begin_in_browser(CeremonyKind::Register, Some(admin.id), purpose, begun).await
    }

    /// Finishes an invitation: the invited admin becomes active with their first passkey.
    pub async fn finish_invitation(
        &self,
        login_cookie: Option<&str>,
        credential: &serde_json::Value,
    ) -> Result<AdminRecord, AccountError> {
        let (_, sealed) = self.take_in_browser(login_cookie, CeremonyKind::Register).await?;
        let Purpose::Invitation { token_hash, admin } = sealed.purpose else {
            return Err(AccountError::CeremonyInvalid);
        };
        let registered = ceremony::verify_registration(&self.webauthn, &sealed.server_state, credential)?;
        let now = self.clock.now();
        let passkey = new_passkey(admin, "first passkey", registered, now);
        let audit = AuditEvent::new(
            now,
            Actor::Admin { id: admin },
            Action::AdminPasskeyRegistered,
            Subject::Admin(admin),
        )
        .with_details(json!({ "passkey": passkey.id.to_string(), "invitation": true }));
        match self.store.redeem_invitation(&token_hash, now, &passkey, audit).await? {
            InvitationRedeem::Redeemed(admin) => Ok(admin),
            InvitationRedeem::Unknown => Err(AccountError::InvitationInvalid),
            InvitationRedeem::Used => Err(AccountError::InvitationUsed),
            InvitationRedeem::Expired => Err(AccountError::InvitationExpired),
        }
    }

    /// Begins a discoverable sign-in (no name typed).
    pub async fn begin_sign_in(&self) -> Result<BegunCeremony, AccountError> {
        let begun = ceremony::discoverable_request_options(&self.webauthn, CEREMONY_TTL)?;
        self.begin_in_browser(CeremonyKind::SignIn, None, Purpose::SignIn, begun).await
    }

    /// Verifies a sign-in assertion: the admin it proves, active. Every refusal is audited (those
    /// naming no admin in aggregate).
    pub async fn finish_sign_in(
        &self,
        login_cookie: Option<&str>,
        credential: &serde_json::Value,
    ) -> Result<AdminRecord, AccountError> {
        let sealed = match self.take_in_browser(login_cookie, CeremonyKind::SignIn).await {
            Ok((_, sealed)) => sealed,
            Err(AccountError::CeremonyInvalid) => {
                self.unknown_sign_in("no_ceremony").await?;
                return Err(AccountError::CeremonyInvalid);
            }
            Err(error) => return Err(error),
        };
        let assertion = match DiscoverableAssertion::parse(credential) {
            Ok(assertion) => assertion,
            Err(error) => {
                // Names no admin (a user's passkey with a handle of another length, or junk).
                self.unknown_sign_in("response_invalid").await?;
                return Err(error.into());
            }
        };
        let Some(passkey) = self.store.admin_passkey_by_credential_id(assertion.credential_id()).await?
        else {
            self.unknown_sign_in("unknown_credential").await?;
            return Err(AccountError::UnknownCredential);
        };
        let Some(admin) = self.store.admin(passkey.admin_id).await? else {
            return Err(StoreError::Corrupt("an admin passkey without its admin".into()).into());
        };
        let handle_matches = bool::from(assertion.user_handle().ct_eq(&admin.webauthn_handle));
        if passkey.revoked_at.is_some() || !handle_matches {
            let reason = if handle_matches { "passkey_revoked" } else { "user_handle_mismatch" };
            return Err(self.refused(&admin, reason, AccountError::UnknownCredential).await);
        }
        let stored = stored_credential(&passkey, &admin);
        let verified = assertion.verify(&self.webauthn, &sealed.server_state, stored);
        self.store_assertion(&admin, &passkey, verified).await?;
        if admin.status != AdminStatus::Active {
            return Err(self.refused(&admin, admin.status.as_str(), AccountError::UnknownCredential).await);
        }
        Ok(admin)
    }

    /// Begins a step-up: an assertion from one of this admin's active passkeys.
    pub async fn begin_step_up(
        &self,
        principal: &AdminPrincipal,
        action: &StepUpAction,
    ) -> Result<serde_json::Value, AccountError> {
        let allowed = self.descriptors(principal.id).await?;
        let begun = ceremony::request_options(&self.webauthn, allowed, CEREMONY_TTL)?
            .ok_or(AccountError::PasskeyNotFound)?;
        let purpose = Purpose::StepUp { admin: principal.id, action: action.as_str().to_owned() };
        self.keep(
            CeremonyKind::StepUp,
            Some(principal.id),
            &principal.session_hash,
            purpose,
            begun.server_state,
        )
        .await?;
        Ok(begun.options)
    }

    /// Verifies a step-up assertion against this admin's own passkeys; answers the action it
    /// was begun for (the caller records the step-up, for that action only, on the session).
    pub async fn finish_step_up(
        &self,
        principal: &AdminPrincipal,
        credential: &serde_json::Value,
    ) -> Result<StepUpAction, AccountError> {
        let sealed = self.take_with_session(principal, CeremonyKind::StepUp).await?;
        let action = match &sealed.purpose {
            Purpose::StepUp { admin, action } if *admin == principal.id => StepUpAction::parse(action),
            _ => None,
        };
        let Some(action) = action else {
            return Err(AccountError::CeremonyInvalid);
        };
        let admin = self.admin_of(principal).await?;
        let assertion = Assertion::parse(credential)?;
        let passkey = self.store.admin_passkey_by_credential_id(assertion.credential_id()).await?;
        let Some(passkey) = passkey.filter(|p| p.admin_id == admin.id && p.revoked_at.is_none()) else {
            return Err(self.refused(&admin, "not_own_passkey", AccountError::UnknownCredential).await);
        };
        let verified =
            assertion.verify(&self.webauthn, &sealed.server_state, stored_credential(&passkey, &admin));
        self.store_assertion(&admin, &passkey, verified).await?;
        Ok(action)
    }

    /// The admin's own passkeys.
    pub async fn passkeys(&self, admin: AdminId) -> Result<Vec<AdminPasskeyView>, AccountError> {
        Ok(self.store.admin_passkeys(admin).await?.iter().map(AdminPasskeyView::from).collect())
    }

    /// Begins registering another passkey for the signed-in admin.
    pub async fn begin_add_passkey(
        &self,
        principal: &AdminPrincipal,
        name: &str,
    ) -> Result<serde_json::Value, AccountError> {
        let name = admin_name(name)?;
        let admin = self.admin_of(principal).await?;
        let exclude = self.descriptors(admin.id).await?;
        let user =
            UserEntity { handle: &admin.webauthn_handle, name: &admin.name, display_name: Some(&admin.name) };
        let begun = ceremony::creation_options(&self.webauthn, user, exclude, ResidentKey::Required)?;
        let purpose = Purpose::AddPasskey { admin: admin.id, name };
        self.keep(
            CeremonyKind::Register,
            Some(admin.id),
            &principal.session_hash,
            purpose,
            begun.server_state,
        )
        .await?;
        Ok(begun.options)
    }

    /// Finishes registering another passkey (the caller has spent a step-up for it).
    pub async fn finish_add_passkey(
        &self,
        principal: &AdminPrincipal,
        credential: &serde_json::Value,
    ) -> Result<AdminPasskeyView, AccountError> {
        let sealed = self.take_with_session(principal, CeremonyKind::Register).await?;
        let Purpose::AddPasskey { admin, name } = sealed.purpose else {
            return Err(AccountError::CeremonyInvalid);
        };
        if admin != principal.id {
            return Err(AccountError::CeremonyInvalid);
        }
        let registered = ceremony::verify_registration(&self.webauthn, &sealed.server_state, credential)?;
        let now = self.clock.now();
        let passkey = new_passkey(admin, &name, registered, now);
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminPasskeyRegistered, Subject::Admin(admin))
                .with_details(json!({ "passkey": passkey.id.to_string(), "name": name }));
        self.store.add_admin_passkey(&passkey, audit).await?;
        Ok(AdminPasskeyView::from(&passkey))
    }

    /// Revokes one of the signed-in admin's passkeys (the caller has spent a step-up for it);
    /// never the last active one.
    pub async fn revoke_passkey(
        &self,
        principal: &AdminPrincipal,
        passkey: AdminPasskeyId,
    ) -> Result<(), AccountError> {
        let now = self.clock.now();
        let audit = AuditEvent::new(
            now,
            principal.actor(),
            Action::AdminPasskeyRevoked,
            Subject::Admin(principal.id),
        )
        .with_details(json!({ "passkey": passkey.to_string() }));
        match self.store.revoke_admin_passkey(principal.id, passkey, now, audit).await? {
            AdminPasskeyRevoke::Revoked => Ok(()),
            AdminPasskeyRevoke::NotFound => Err(AccountError::PasskeyNotFound),
            AdminPasskeyRevoke::LastOne => Err(AccountError::LastPasskey),
        }
    }

    async fn admin_of(&self, principal: &AdminPrincipal) -> Result<AdminRecord, AccountError> {
        self.store.admin(principal.id).await?.ok_or(AccountError::CeremonyInvalid)
    }

    async fn descriptors(&self, admin: AdminId) -> Result<Vec<Descriptor>, AccountError> {
        let passkeys = self.store.admin_passkeys(admin).await?;
        // No transports are kept for admin passkeys: the browser tries them all.
        Ok(passkeys
            .iter()
            .filter(|p| p.revoked_at.is_none())
            .filter_map(|p| ceremony::descriptor(&p.credential_id, 0))
            .collect())
    }

    /// Stores a verified assertion's counter, or audits (and for a counter that did not rise,
    /// alerts) why it was refused.
    async fn store_assertion(
        &self,
        admin: &AdminRecord,
        passkey: &AdminPasskeyRecord,
        verified: Result<ceremony::Asserted, CeremonyError>,
    ) -> Result<(), AccountError> {
        let asserted = match verified {
            Ok(asserted) => asserted,
            Err(CeremonyError::CounterNotIncreasing) => {
                let now = self.clock.now();
                let subject = Subject::Admin(admin.id);
                let details =
                    json!({ "reason": "counter_not_increasing", "passkey": passkey.id.to_string() });
                let audit = AuditEvent::new(now, Actor::System, Action::AdminSignInRefused, subject.clone())
                    .with_details(details.clone());
                self.store
                    .record_signal(audit, (AlertKind::PossibleClone, &subject, &details.to_string()), now)
                    .await?;
                return Err(AccountError::CounterNotIncreasing);
            }
            Err(CeremonyError::Internal(e)) => return Err(e.into()),
            Err(error) => {
                let reason = match &error {
                    CeremonyError::Rejected { rejection, .. } => rejection.as_str(),
                    _ => "response_invalid",
                };
                return Err(self.refused(admin, reason, AccountError::Ceremony(error)).await);
            }
        };
        let update = AdminAssertionUpdate {
            passkey: passkey.id,
            previous_dynamic_state: passkey.dynamic_state.clone(),
            dynamic_state: asserted.dynamic_state,
            sign_count: i64::from(asserted.sign_count),
            backed_up: asserted.backed_up,
            at: self.clock.now(),
        };
        if self.store.record_admin_assertion(&update).await? {
            Ok(())
        } else {
            // Revoked meanwhile, or the same assertion accepted by a concurrent request.
            Err(self.refused(admin, "passkey_changed", AccountError::CeremonyInvalid).await)
        }
    }

    /// Audits a refused sign-in or step-up of a known admin and returns `error`.
    async fn refused(&self, admin: &AdminRecord, reason: &str, error: AccountError) -> AccountError {
        let audit = AuditEvent::new(
            self.clock.now(),
            Actor::System,
            Action::AdminSignInRefused,
            Subject::Admin(admin.id),
        )
        .with_details(json!({ "reason": reason }));
        match self.store.record_audit(audit).await {
            Ok(()) => error,
            Err(e) => e.into(),
        }
    }

    /// Counts a sign-in refusal that names no admin; writes at most one event per
    /// [`UNKNOWN_SIGN_IN_WINDOW`], carrying the refusals counted since the previous one.
    async fn unknown_sign_in(&self, reason: &str) -> Result<(), AccountError> {
        let now = self.clock.now();
        let Some(refusals) = aggregate(&self.unknown_sign_ins, now) else {
            return Ok(());
        };
        let audit = AuditEvent::new(now, Actor::System, Action::AdminSignInRefused, Subject::UnknownAdmins)
            .with_details(json!({ "refusals": refusals, "latest_reason": reason }));
        Ok(self.store.record_audit(audit).await?)
    }

    /// Keeps a ceremony bound to a fresh login-ceremony cookie.
    async fn begin_in_browser(
        &self,
        kind: CeremonyKind,
        admin: Option<AdminId>,
        purpose: Purpose,
        begun: ceremony::Begun,
    ) -> Result<BegunCeremony, AccountError> {
        let cookie =
            random_secret().map_err(|_| InternalError::new("no randomness for a ceremony cookie"))?;
        self.keep(kind, admin, &secret_hash(cookie.expose_secret()), purpose, begun.server_state).await?;
        Ok(BegunCeremony { options: begun.options, login_cookie: Some(cookie) })
    }

    async fn keep(
        &self,
        kind: CeremonyKind,
        admin: Option<AdminId>,
        binding_hash: &[u8],
        purpose: Purpose,
        server_state: Vec<u8>,
    ) -> Result<(), AccountError> {
        let id = AdminCeremonyId::random();
        let plain = serde_json::to_vec(&Sealed { purpose, server_state })
            .map_err(|e| InternalError::caused_by("writing a ceremony's state", e))?;
        let state = self
            .master
            .encrypt(seal_context(id).as_bytes(), &plain)
            .map_err(|e| InternalError::caused_by("sealing a ceremony's state", e))?;
        let now = self.clock.now();
        let record = AdminCeremonyRecord {
            id,
            kind,
            admin_id: admin,
            binding_hash: binding_hash.to_vec(),
            state,
            created_at: now,
            expires_at: now + CEREMONY_TTL,
        };
        Ok(self.store.insert_admin_ceremony(&record).await?)
    }

    async fn take_in_browser(
        &self,
        login_cookie: Option<&str>,
        kind: CeremonyKind,
    ) -> Result<(AdminCeremonyRecord, Sealed), AccountError> {
        let cookie = login_cookie.ok_or(AccountError::CeremonyInvalid)?;
        self.take(&secret_hash(cookie), kind).await
    }

    async fn take_with_session(
        &self,
        principal: &AdminPrincipal,
        kind: CeremonyKind,
    ) -> Result<Sealed, AccountError> {
        Ok(self.take(&principal.session_hash, kind).await?.1)
    }

    async fn take(
        &self,
        binding_hash: &[u8],
        kind: CeremonyKind,
    ) -> Result<(AdminCeremonyRecord, Sealed), AccountError> {
        let record = self
            .store
            .take_admin_ceremony(binding_hash, kind, self.clock.now())
            .await?
            .ok_or(AccountError::CeremonyInvalid)?;
        let plain = self
            .master
            .decrypt(seal_context(record.id).as_bytes(), &record.state)
            .map_err(|_| InternalError::new("a sealed admin ceremony does not open"))?;
        let sealed: Sealed = serde_json::from_slice(&plain)
            .map_err(|e| InternalError::caused_by("reading a ceremony's state", e))?;
        Ok((record, sealed))
    }
}

/// A one-time bootstrap token (`countersign admin bootstrap`): 256 random bits, returned once,
/// stored as SHA-256, audited with the CLI as actor. Refused once the plane has its two active
/// admins.
pub async fn create_bootstrap_token(
    store: &dyn Store,
    clock: &dyn Clock,
    ttl: Duration,
) -> Result<SecretString, AccountError> {
    if !bootstrap_ttl_allowed(ttl) {
        return Err(AccountError::InvalidTtl);
    }
    if store.active_admin_count().await? >= MIN_ACTIVE_ADMINS {
        return Err(AccountError::BootstrapClosed);
    }
    let token = random_secret().map_err(|_| InternalError::new("no randomness for a bootstrap token"))?;
    let now = clock.now();
    let audit = AuditEvent::new(now, Actor::Cli, Action::AdminBootstrapTokenCreated, Subject::AdminBootstrap)
        .with_details(json!({ "expires_at": (now + ttl).unix_timestamp() }));
    store.create_bootstrap_token(&secret_hash(token.expose_secret()), now, now + ttl, audit).await?;
    Ok(token)
}

/// A new invitation of an invited admin (for the four-eyes applier that approved them): the
/// token, shown once (to the approver, as `/admin/invite?token=…`), and the row to store with
/// only its SHA-256, redeemable for [`INVITATION_TTL`].
pub fn new_invitation(
    admin: AdminId,
    now: OffsetDateTime,
) -> Result<(SecretString, InvitationRecord), InternalError> {
    let token = random_secret().map_err(|_| InternalError::new("no randomness for an invitation"))?;
    let record = InvitationRecord {
        token_hash: secret_hash(token.expose_secret()),
        admin_id: admin,
        created_at: now,
        expires_at: now + INVITATION_TTL,
        used_at: None,
    };
    Ok((token, record))
}

fn aggregate(counter: &Mutex<Aggregated>, now: OffsetDateTime) -> Option<u64> {
    counter.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count(now)
}

fn seal_context(id: AdminCeremonyId) -> String {
    format!("{SEAL_CONTEXT}{id}")
}

fn stored_credential<'a>(passkey: &'a AdminPasskeyRecord, admin: &'a AdminRecord) -> StoredCredential<'a> {
    StoredCredential {
        credential_id: &passkey.credential_id,
        user_handle: &admin.webauthn_handle,
        static_state: &passkey.static_state,
        dynamic_state: &passkey.dynamic_state,
    }
}

fn new_passkey(admin: AdminId, name: &str, c: NewCredential, now: OffsetDateTime) -> AdminPasskeyRecord {
    AdminPasskeyRecord {
        id: AdminPasskeyId::random(),
        admin_id: admin,
        credential_id: c.credential_id,
        name: name.to_owned(),
        static_state: c.static_state,
        dynamic_state: c.dynamic_state,
        aaguid: c.aaguid,
        backup_eligible: c.backup_eligible,
        backed_up: c.backed_up,
        sign_count: c.sign_count,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_naming_nothing_are_written_once_a_window_with_their_count() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let mut counter = Aggregated::default();
        assert_eq!(counter.count(start), Some(1), "the first is written at once");
        for second in 1..5 {
            assert_eq!(counter.count(start + Duration::seconds(second)), None);
        }
        assert_eq!(counter.count(start + UNKNOWN_SIGN_IN_WINDOW), Some(5), "four held back and this one");
        assert_eq!(counter.count(start + UNKNOWN_SIGN_IN_WINDOW + Duration::seconds(1)), None);
    }

    #[test]
    fn invitations_keep_only_the_tokens_hash() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let admin = AdminId::random();
        let (token, record) = new_invitation(admin, now).unwrap();
        let (other, _) = new_invitation(admin, now).unwrap();
        assert_ne!(token.expose_secret(), other.expose_secret());
        assert_eq!(token.expose_secret().len(), 43);
        assert_eq!(record.token_hash, secret_hash(token.expose_secret()));
        assert_eq!((record.admin_id, record.expires_at, record.used_at), (admin, now + INVITATION_TTL, None));
    }
}
