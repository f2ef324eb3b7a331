//! Passkey sign-in as a challenge: `POST /v1/challenges` with `"factor": "passkey"` creates a
//! challenge with WebAuthn request options instead of a number (no push), and the browser's
//! assertion (`POST /v1/challenges/{id}/webauthn`) approves it by compare-and-set; the app then
//! redeems it once like any challenge. The create response also names the challenge's hosted
//! sign-in page (`/passkeys/sign-in?token=…`, a 128-bit token stored as its hash), which answers
//! it as the app would.
//!
//! A passkey sign-in never waits on push lockouts, and a successful one lifts a wrong-number or
//! denial freeze (never a "not me" quarantine or a hard lock). Refused assertions are audited
//! and have their own budget; a signature counter that does not rise denies the sign-in and
//! raises `possible_clone`.

use ring::rand::SecureRandom;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use super::ceremony::{self, Asserted, Assertion, Begun, CeremonyError, StoredCredential};
use super::model::MAX_FAILED_ASSERTIONS;
use super::service::{PasskeyError, PasskeyService, descriptor};
use crate::alerts::AlertKind;
use crate::api_keys::service::AuthenticatedApp;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::challenges::service::{ChallengeContext, clean_context};
use crate::devices::model::{hash_activation_code, new_activation_code};
use crate::fault::InternalError;
use crate::ids::ChallengeId;
use crate::store::{
    ChallengeRecord, PasskeyAssertion, PasskeyRecord, PasskeySignIn, Precondition, SignInPage, StoreError,
};

/// A created passkey sign-in, the options for `parseRequestOptionsFromJSON()`, and the URL of
/// its hosted sign-in page (shown once: only the token's hash is kept).
#[derive(Debug)]
pub struct BegunSignIn {
    pub record: ChallengeRecord,
    pub options: serde_json::Value,
    pub sign_in_url: SecretString,
    /// The hosted page's token alone (what `sign_in_url` carries), for a page of our own that
    /// runs the ceremony (the OIDC sign-in page).
    pub page_token: SecretString,
}

/// The path of the hosted sign-in page, relative to an allowed origin.
pub const SIGN_IN_PAGE_PATH: &str = "/passkeys/sign-in";

/// A passkey sign-in whose page can still answer it.
#[derive(Debug)]
pub struct OpenSignIn {
    pub challenge: ChallengeRecord,
    pub page: SignInPage,
}

impl OpenSignIn {
    /// `PublicKeyCredentialRequestOptionsJSON` for the page.
    pub fn options(&self) -> Result<serde_json::Value, PasskeyError> {
        Ok(serde_json::from_str(&self.page.options)
            .map_err(|e| InternalError::caused_by("reading stored request options", e))?)
    }
}

impl PasskeyService {
    /// `POST /v1/challenges` with `"factor": "passkey"`. Unknown users and users without an
    /// active passkey get the same answer. No push is sent and push standing is not consulted.
    pub async fn begin_sign_in(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        context: ChallengeContext,
    ) -> Result<BegunSignIn, PasskeyError> {
        let context =
            clean_context(context, &app.name).map_err(|e| PasskeyError::InvalidInput(e.to_string()))?;
        // Unknown users answer like users without a passkey: no enumeration.
        let user = match self.user(username).await {
            Err(PasskeyError::UserNotFound) => return Err(PasskeyError::NoPasskey),
            other => other?,
        };
        let passkeys = self.store.passkeys_for_user(user.id).await?;
        let allowed = passkeys.iter().filter_map(descriptor).collect();
        let ttl = self.sign_in.ttl;
        let Begun { options, server_state: state } =
            ceremony::request_options(&self.settings, allowed, ttl)?.ok_or(PasskeyError::NoPasskey)?;
        let now = self.clock.now();
        let id = ChallengeId::random();
        let mut nonce = [0u8; 32];
        crate::challenges::model::rng()
            .fill(&mut nonce)
            .map_err(|_| InternalError::new("the system random number generator failed"))?;
        let record = ChallengeRecord {
            id,
            app_id: app.id,
            user_id: user.id,
            state: ChallengeState::Pending,
            number_tag: Vec::new(),
            number_sealed: Vec::new(),
            number_digits: 0,
            server_nonce: nonce.to_vec(),
            app_name: context.app_name,
            ip: context.ip,
            user_agent: context.user_agent,
            location: context.location,
            created_at: now,
            expires_at: now + ttl,
            decided_at: None,
            decided_by_device: None,
            redeemed_at: None,
            idempotency_key: None,
            request_hash: None,
            // Nothing is pushed: no phone is notified.
            is_silent: true,
            source_prefix: None,
        };
        let event = AuditEvent::new(
            now,
            app.actor(),
            Action::Challenge(ChallengeState::Pending),
            Subject::User(user.id),
        )
        .with_details(json!({
            "challenge_id": id,
            "factor": "passkey",
            "username": user.username,
            "ip": record.ip,
            "user_agent": record.user_agent,
            "app_name": record.app_name,
            "location": record.location,
            "passkeys": passkeys.iter().filter(|p| p.is_active()).count(),
        }));
        let origin = self
            .settings
            .origins
            .first()
            .ok_or_else(|| InternalError::new("the relying party has no allowed origin"))?;
        let (token, token_hash) =
            new_activation_code().map_err(|e| InternalError::caused_by("drawing a page token", e))?;
        let sign_in_url = format!("{origin}{SIGN_IN_PAGE_PATH}?token={}", token.expose_secret());
        let page = SignInPage {
            token_hash: token_hash.to_vec(),
            options: options.to_string(),
            app_name: app.name.clone(),
        };
        let record = self.store.create_passkey_challenge(record, &state, &page, event).await?;
        metrics::counter!("countersign_challenges_created_total").increment(1);
        Ok(BegunSignIn { record, options, sign_in_url: SecretString::from(sign_in_url), page_token: token })
    }

    /// The passkey sign-in the page token names, if it can still be answered: unknown (404),
    /// expired (410) and decided (409) are told apart. Changes nothing.
    pub async fn open_sign_in(&self, token: &str) -> Result<OpenSignIn, PasskeyError> {
        let sign_in = self
            .store
            .passkey_sign_in_by_page_token(&hash_activation_code(token))
            .await?
            .ok_or(PasskeyError::SignInPageInvalid)?;
        let page = sign_in.page.ok_or(PasskeyError::SignInPageInvalid)?;
        let challenge =
            self.store.challenge_by_id(sign_in.challenge_id).await?.ok_or(PasskeyError::SignInPageInvalid)?;
        check_pending(&challenge, self.clock.now())?;
        Ok(OpenSignIn { challenge, page })
    }

    /// The page's assertion for the sign-in its token names: answered as the app that created
    /// the challenge would answer it (`POST /v1/challenges/{id}/webauthn`).
    pub async fn complete_sign_in_page(
        &self,
        token: &str,
        credential: &serde_json::Value,
    ) -> Result<ChallengeRecord, PasskeyError> {
        let open = self.open_sign_in(token).await?;
        let actor = Actor::App { id: open.challenge.app_id, name: open.page.app_name };
        self.answer(&actor, open.challenge, credential).await
    }

    /// `POST /v1/challenges/{id}/webauthn` with the assertion (`credential.toJSON()`).
    pub async fn complete_sign_in(
        &self,
        app: &AuthenticatedApp,
        id: ChallengeId,
        credential: &serde_json::Value,
    ) -> Result<ChallengeRecord, PasskeyError> {
        let challenge = self
            .store
            .challenge_by_id(id)
            .await?
            .filter(|c| c.app_id == app.id && !c.is_push())
            .ok_or(PasskeyError::ChallengeNotFound)?;
        self.answer(&app.actor(), challenge, credential).await
    }

    /// Verifies an assertion for a passkey challenge and applies it; `actor` is who the audit
    /// trail names (the app, directly or through the challenge's page).
    async fn answer(
        &self,
        actor: &Actor,
        challenge: ChallengeRecord,
        credential: &serde_json::Value,
    ) -> Result<ChallengeRecord, PasskeyError> {
        let id = challenge.id;
        let now = self.clock.now();
        check_pending(&challenge, now)?;
        let sign_in = self
            .store
            .passkey_sign_in(id)
            .await?
            .ok_or_else(|| InternalError::new("a passkey challenge has no WebAuthn request"))?;
        let assertion = Assertion::parse(credential)?;
        let passkey = match self.store.passkey_by_credential_id(assertion.credential_id()).await? {
            Some(passkey) if passkey.is_active() && passkey.user_id == challenge.user_id => passkey,
            other => {
                let details = json!({ "credential_owner": other.map(|p| p.user_id) });
                self.refuse_assertion(actor, &challenge, &sign_in, "unknown_credential", details).await?;
                return Err(PasskeyError::UnknownCredential);
            }
        };
        let verified = self.verify(&challenge, &sign_in, &assertion, &passkey).await?;
        match verified {
            Ok(asserted) => self.approve(actor, &challenge, &passkey, asserted, now).await,
            Err(CeremonyError::CounterNotIncreasing) => {
                // A second assertion for a challenge another one has just answered carries an
                // older counter: it is over, not a clone. Anything else is a second key.
                let current = self.store.challenge_by_id(id).await?.ok_or(PasskeyError::ChallengeNotFound)?;
                check_pending(&current, now)?;
                Err(self.possible_clone(actor, &challenge, &passkey).await?)
            }
            Err(CeremonyError::Rejected { rejection, message }) => {
                let details =
                    json!({ "rejection": rejection.as_str(), "cause": message, "passkey_id": passkey.id });
                self.refuse_assertion(actor, &challenge, &sign_in, "credential_rejected", details).await?;
                Err(PasskeyError::Rejected { rejection, message })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Verifies the assertion against the stored request and passkey: the passkey's new
    /// dynamic state, or why not.
    async fn verify(
        &self,
        challenge: &ChallengeRecord,
        sign_in: &PasskeySignIn,
        assertion: &Assertion,
        passkey: &PasskeyRecord,
    ) -> Result<Result<Asserted, CeremonyError>, PasskeyError> {
        let handle = self.user_handle_of(challenge.user_id).await?;
        let stored = StoredCredential {
            credential_id: &passkey.credential_id,
            user_handle: handle.as_ref(),
            static_state: &passkey.static_state,
            dynamic_state: &passkey.dynamic_state,
        };
        match assertion.verify(&self.settings, &sign_in.server_state, stored) {
            Err(CeremonyError::Internal(e)) => Err(e.into()),
            other => Ok(other),
        }
    }

    /// Applies a verified assertion: the challenge becomes approved (once, whatever races it),
    /// the passkey's counter and flags are kept, and push standing is relieved.
    async fn approve(
        &self,
        actor: &Actor,
        challenge: &ChallengeRecord,
        passkey: &PasskeyRecord,
        asserted: Asserted,
        now: OffsetDateTime,
    ) -> Result<ChallengeRecord, PasskeyError> {
        let sign_count = asserted.sign_count;
        let assertion = PasskeyAssertion {
            challenge: challenge.id,
            user: challenge.user_id,
            passkey: passkey.id,
            previous_sign_count: passkey.sign_count,
            sign_count: i64::from(sign_count),
            dynamic_state: asserted.dynamic_state,
            backed_up: asserted.backed_up,
        };
        let event = AuditEvent::new(
            now,
            actor.clone(),
            Action::Challenge(ChallengeState::Approved),
            Subject::User(challenge.user_id),
        )
        .with_details(json!({
            "challenge_id": challenge.id,
            "factor": "passkey",
            "passkey_id": passkey.id,
            "sign_count": sign_count,
            "seconds_to_decide": (now - challenge.created_at).as_seconds_f64(),
            "ip": challenge.ip,
            "user_agent": challenge.user_agent,
            "app_name": challenge.app_name,
        }));
        match self.store.approve_with_passkey(&assertion, now, event).await {
            Ok(approved) => {
                self.sign_in.waiters.decided(&approved);
                metrics::counter!("countersign_challenge_decisions_total", "outcome" => "approved")
                    .increment(1);
                self.relieve_push(actor, challenge, now).await?;
                Ok(approved)
            }
            Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending)) => {
                let current =
                    self.store.challenge_by_id(challenge.id).await?.ok_or(PasskeyError::ChallengeNotFound)?;
                check_pending(&current, now)?;
                Err(PasskeyError::ChallengeExpired)
            }
            // The passkey answered another sign-in meanwhile: this assertion's counter is spent.
            Err(StoreError::PreconditionFailed(Precondition::CounterNotIncreasing)) => {
                Err(PasskeyError::CounterNotIncreasing)
            }
            // Revoked (or its user deleted) while this sign-in was under way.
            Err(StoreError::PreconditionFailed(Precondition::DeviceInactive)) => {
                Err(PasskeyError::UnknownCredential)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A passkey sign-in proves the stronger factor: lift a wrong-number or denial freeze and
    /// reset the failure streak (audited when it changes anything).
    async fn relieve_push(
        &self,
        actor: &Actor,
        challenge: &ChallengeRecord,
        now: OffsetDateTime,
    ) -> Result<(), PasskeyError> {
        let before = self.store.push_state(challenge.user_id).await?;
        if crate::fatigue::model::after_passkey_sign_in(before.clone()) == before {
            return Ok(());
        }
        let change = |state: &crate::fatigue::model::PushState| {
            let event =
                AuditEvent::new(now, actor.clone(), Action::PushUnfrozen, Subject::User(challenge.user_id))
                    .with_details(json!({
                        "by": "passkey_sign_in",
                        "challenge_id": challenge.id,
                        "was": { "failures": state.consecutive_failures, "reason": state.reason },
                    }));
            (crate::fatigue::model::after_passkey_sign_in(state.clone()), event)
        };
        self.store.change_push_state(challenge.user_id, now, &change).await?;
        Ok(())
    }

    /// Audits a refused assertion and counts it against the sign-in's budget; the sign-in is
    /// denied once the budget is spent.
    async fn refuse_assertion(
        &self,
        actor: &Actor,
        challenge: &ChallengeRecord,
        sign_in: &PasskeySignIn,
        reason: &str,
        mut details: serde_json::Value,
    ) -> Result<(), PasskeyError> {
        if let Some(map) = details.as_object_mut() {
            map.insert("challenge_id".into(), json!(challenge.id));
            map.insert("reason".into(), json!(reason));
            map.insert("failed_assertions".into(), json!(sign_in.failed_assertions + 1));
        }
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            actor.clone(),
            Action::PasskeyAssertionRefused,
            Subject::User(challenge.user_id),
        )
        .with_details(details);
        let failed = self.store.count_failed_assertion(challenge.id, event).await?;
        if failed >= MAX_FAILED_ASSERTIONS {
            self.deny(actor.clone(), challenge, "too_many_failed_assertions").await?;
        }
        Ok(())
    }

    /// A correctly signed assertion whose counter did not rise: a second copy of the key. The
    /// sign-in is denied, audited and alerted as `possible_clone`.
    async fn possible_clone(
        &self,
        actor: &Actor,
        challenge: &ChallengeRecord,
        passkey: &PasskeyRecord,
    ) -> Result<PasskeyError, PasskeyError> {
        let now = self.clock.now();
        self.deny(actor.clone(), challenge, "possible_clone").await?;
        let details = json!({
            "factor": "passkey",
            "passkey_id": passkey.id,
            "challenge_id": challenge.id,
            "last_accepted_counter": passkey.sign_count,
        });
        let event =
            AuditEvent::new(now, actor.clone(), Action::PossibleClone, Subject::User(challenge.user_id))
                .with_details(details.clone());
        let subject = Subject::User(challenge.user_id);
        self.store
            .record_signal(event, (AlertKind::PossibleClone, &subject, &details.to_string()), now)
            .await?;
        metrics::counter!("countersign_possible_clones_total").increment(1);
        Ok(PasskeyError::CounterNotIncreasing)
    }

    async fn deny(
        &self,
        actor: Actor,
        challenge: &ChallengeRecord,
        reason: &str,
    ) -> Result<(), PasskeyError> {
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            actor,
            Action::Challenge(ChallengeState::Denied),
            Subject::User(challenge.user_id),
        )
        .with_details(json!({ "challenge_id": challenge.id, "factor": "passkey", "reason": reason }));
        match self.store.deny_passkey_challenge(challenge.id, now, event).await {
            Ok(denied) => {
                self.sign_in.waiters.decided(&denied);
                Ok(())
            }
            // Decided meanwhile (approved by a concurrent assertion, or expired): nothing to deny.
            Err(StoreError::NotFound) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}

/// A sign-in can be answered only while pending and unexpired.
fn check_pending(challenge: &ChallengeRecord, now: OffsetDateTime) -> Result<(), PasskeyError> {
    match challenge.state {
        ChallengeState::Pending if challenge.expires_at > now => Ok(()),
        ChallengeState::Pending | ChallengeState::Expired => Err(PasskeyError::ChallengeExpired),
        other => Err(PasskeyError::ChallengeNotPending(other)),
    }
}
