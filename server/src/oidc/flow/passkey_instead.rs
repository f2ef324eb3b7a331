//! "Use a passkey instead": a push sign-in moves to a passkey sign-in for the same user. The
//! push is cancelled first (as the client's app, audited), which is the decisive step against
//! the phone: whichever of the cancel and the phone's answer lands first wins, so an approval
//! is never lost and a cancelled push can no longer be approved. The sign-in then points at the
//! new passkey challenge by compare-and-set.

use secrecy::ExposeSecret;
use serde_json::json;

use super::{
    AuthorizationRecord, ChallengeContext, ChallengeError, ChallengeState, InternalError, OidcFlow,
    PasskeyError, Proof, SignInError, page_secret_context, stored_request,
};
use crate::audit::{Action, AuditEvent, Subject};
use crate::ids::AuthorizationId;
use crate::store::{AuthorizationSwitch, ChallengeRecord, StoreError};

/// Why a sign-in stays as it is.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// Said on a page; nothing changed.
    #[error("{0}")]
    Refused(&'static str),
}

impl From<StoreError> for SwitchError {
    fn from(error: StoreError) -> Self {
        SwitchError::SignIn(error.into())
    }
}

impl From<InternalError> for SwitchError {
    fn from(error: InternalError) -> Self {
        SwitchError::SignIn(error.into())
    }
}

const ANSWERED: &str =
    "Your phone has already answered this sign-in. Go back to the sign-in page to continue.";
const NO_PASSKEY: &str = "This account has no passkey. Go back and answer the number on your phone.";
const PASSKEY_GONE: &str =
    "Your passkey is no longer usable, and the push was withdrawn. Start again from the application.";
const NOT_PUSH: &str = "This sign-in already uses a passkey. Go back to the sign-in page to continue.";

impl OidcFlow {
    /// `POST /oidc/sign-in/{id}/passkey`: the browser that started a push sign-in switches it
    /// to a passkey sign-in (the page then runs the passkey ceremony). Refused, with nothing
    /// changed, once the push was answered, the sign-in finished, or if the user has no
    /// passkey.
    pub async fn use_passkey_instead(
        &self,
        id: AuthorizationId,
        browser_secret: Option<&str>,
    ) -> Result<(), SwitchError> {
        let record = self.open_sign_in(id, browser_secret).await?;
        let mut stored = stored_request(&record)?;
        if stored.proof != Proof::NumberMatchedPush {
            return Err(SwitchError::Refused(NOT_PUSH));
        }
        let push = self.store.challenge_by_id(record.challenge_id).await?.ok_or(SignInError::NotFound)?;
        if push.state != ChallengeState::Pending || push.expires_at <= self.clock.now() {
            return Err(SwitchError::Refused(ANSWERED));
        }
        if !self.has_passkey(&record).await? {
            return Err(SwitchError::Refused(NO_PASSKEY));
        }
        let (client, app) = self.client_of(&record).await?;
        match self.challenges.cancel(&app, push.id).await {
            Ok(_) => {}
            Err(ChallengeError::NotPending(_)) => return Err(SwitchError::Refused(ANSWERED)),
            Err(other) => return Err(InternalError::caused_by("cancelling the sign-in's push", other).into()),
        }
        let begun = match self.passkeys.begin_sign_in(&app, &stored.username, context_of(&push)).await {
            Ok(begun) => begun,
            // Revoked in the meantime: the push is gone, so the sign-in ends denied.
            Err(PasskeyError::NoPasskey) => return Err(SwitchError::Refused(PASSKEY_GONE)),
            Err(other) => return Err(InternalError::caused_by("starting a passkey sign-in", other).into()),
        };
        let token = begun.page_token.expose_secret().to_owned();
        stored.proof = Proof::Passkey;
        let switch = AuthorizationSwitch {
            challenge_id: begun.record.id,
            request: serde_json::to_string(&stored)
                .map_err(|e| InternalError::caused_by("storing the request", e))?,
            page_secret_sealed: self
                .master
                .encrypt(&page_secret_context(id), token.as_bytes())
                .map_err(|e| InternalError::caused_by("sealing the page secret", e))?,
            expires_at: begun.record.expires_at,
        };
        let event = AuditEvent::new(
            self.clock.now(),
            app.actor(),
            Action::OidcSignInSwitched,
            Subject::User(record.user_id),
        )
        .with_details(json!({
            "authorization_id": id,
            "client_id": client.client_id.0,
            "cancelled_challenge_id": push.id,
            "challenge_id": begun.record.id,
            "factor": "passkey",
        }));
        match self.store.switch_authorization(id, push.id, &switch, event).await {
            Ok(()) => Ok(()),
            // Another tab switched or finished first: its sign-in stands, this passkey one goes.
            Err(StoreError::NotFound) => {
                if let Err(error) = self.challenges.cancel(&app, begun.record.id).await {
                    tracing::warn!(%error, "could not cancel an unused passkey sign-in");
                }
                Err(SwitchError::Refused(ANSWERED))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Whether the page may offer a passkey instead: a pending push for a user with a passkey.
    pub(super) async fn passkey_offered(
        &self,
        record: &AuthorizationRecord,
        proof: Proof,
        push: &ChallengeRecord,
    ) -> Result<bool, SignInError> {
        if proof != Proof::NumberMatchedPush || push.state != ChallengeState::Pending {
            return Ok(false);
        }
        self.has_passkey(record).await
    }

    async fn has_passkey(&self, record: &AuthorizationRecord) -> Result<bool, SignInError> {
        let passkeys = self.store.passkeys_for_user(record.user_id).await?;
        Ok(passkeys.iter().any(|passkey| passkey.revoked_at.is_none()))
    }
}

/// The push's sign-in context, for the passkey sign-in that replaces it.
fn context_of(push: &ChallengeRecord) -> ChallengeContext {
    let present = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    ChallengeContext {
        ip: present(&push.ip),
        user_agent: present(&push.user_agent),
        app_name: present(&push.app_name),
        location: push.location.clone(),
    }
}
