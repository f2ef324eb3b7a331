//! Help desk: verifying a caller before acting for them, the way Lapsus$ could not be stopped
//! by a help desk that trusted a voice. The agent sends the caller a number-matching push to
//! their enrolled phone and reads them the number; only an approval on that phone verifies the
//! caller. An enrollment link for the caller needs such a verification, by this agent, for this
//! user, fresh and unused (it is consumed as the link's second-factor proof). Help desk never
//! sets a factor itself.
//!
//! Verification pushes are ordinary challenges of a keyless app, `countersign-helpdesk`: the
//! push budget, freezes and spray detection apply, counted per agent (`helpdesk:<admin id>`),
//! so a rogue agent prompting many users is throttled and alerted like any source.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::sessions::AdminPrincipal;
use crate::alerts::AlertKind;
use crate::api_keys::service::{AuthenticatedApp, keyless_app};
use crate::audit::{Action, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::challenges::service::{ChallengeContext, ChallengeError, ChallengeService, PromptOptions};
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::ids::ChallengeId;
use crate::passkeys::service::{PasskeyError, PasskeyService, RegistrationRequest};
use crate::store::{CallerVerification, Conflict, Store, StoreError};

/// The keyless app verification pushes are charged to. The colon makes it a name no app can
/// be created with (`apps create`), so no key holder can adopt it.
pub const HELPDESK_APP: &str = "countersign:helpdesk";

/// What the caller's phone shows as the requester.
const PROMPT_TEXT: &str = "Help desk call verification";

#[derive(Debug, thiserror::Error)]
pub enum HelpDeskError {
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    #[error(transparent)]
    Passkey(#[from] PasskeyError),
    /// Unknown, or started by another agent: the same answer.
    #[error("no such caller verification")]
    NotFound,
    #[error(
        "this caller is not verified: start a verification push and have the caller approve it with the number"
    )]
    CallerNotVerified,
    /// A privileged user's factors change only through a four-eyes request.
    #[error("this user is privileged: their factors change only through a request a second admin approves")]
    PrivilegedUser,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// A verification push on its way: the number is for the agent to read out, and nobody else.
#[derive(Debug)]
pub struct StartedVerification {
    pub id: ChallengeId,
    pub number: String,
    pub expires_at: OffsetDateTime,
}

/// Where a verification stands, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationState {
    Pending,
    /// The caller approved on their phone with the number.
    Verified,
    /// The caller's phone answered with another number: whoever is on the line did not hear it.
    WrongNumber,
    Denied,
    /// The phone's holder reported the push as "not me".
    Reported,
    Expired,
    Cancelled,
}

impl VerificationState {
    fn of(state: ChallengeState) -> Self {
        match state {
            ChallengeState::Pending => VerificationState::Pending,
            ChallengeState::Approved | ChallengeState::Redeemed => VerificationState::Verified,
            ChallengeState::DeniedWrongNumber => VerificationState::WrongNumber,
            ChallengeState::Denied => VerificationState::Denied,
            ChallengeState::Reported => VerificationState::Reported,
            ChallengeState::Expired => VerificationState::Expired,
            ChallengeState::Cancelled => VerificationState::Cancelled,
        }
    }
}

#[derive(Debug)]
pub struct HelpDesk {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    challenges: Arc<ChallengeService>,
    passkeys: Arc<PasskeyService>,
    app: OnceCell<AuthenticatedApp>,
}

impl HelpDesk {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        challenges: Arc<ChallengeService>,
        passkeys: Arc<PasskeyService>,
    ) -> Self {
        Self { store, clock, challenges, passkeys, app: OnceCell::new() }
    }

    /// The help desk's keyless app, made on first use (two instances racing agree on one).
    async fn app(&self) -> Result<&AuthenticatedApp, HelpDeskError> {
        self.app
            .get_or_try_init(|| async {
                let found = match self.store.app_by_name(HELPDESK_APP).await? {
                    // Revoked by the operator: the help desk stops prompting (fails closed).
                    Some(app) if app.revoked_at.is_some() => {
                        return Err(InternalError::new("the help desk's app is revoked").into());
                    }
                    Some(app) => app,
                    None => {
                        let details = json!({ "purpose": "help-desk caller verification" });
                        let (app, audit) = keyless_app(HELPDESK_APP.to_owned(), details, self.clock.now())
                            .map_err(|e| InternalError::caused_by("drawing the help desk's app key", e))?;
                        match self.store.create_app(app, audit).await {
                            Ok(app) => app,
                            Err(StoreError::Conflict(Conflict::AppName)) => {
                                self.store.app_by_name(HELPDESK_APP).await?.ok_or(StoreError::NotFound)?
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                };
                Ok(AuthenticatedApp { id: found.id, name: found.name, scopes: found.scopes })
            })
            .await
    }

    /// Sends the caller `username` a verification push; the number goes to the agent only (it is
    /// neither audited nor logged).
    pub async fn start(
        &self,
        agent: &AdminPrincipal,
        username: &str,
    ) -> Result<StartedVerification, HelpDeskError> {
        let app = self.app().await?;
        let context = ChallengeContext { app_name: Some(PROMPT_TEXT.to_owned()), ..Default::default() };
        let options = PromptOptions { source: Some(format!("helpdesk:{}", agent.id)), ..Default::default() };
        let created = self.challenges.create_with(app, username, context, options).await?;
        let record = &created.record;
        let verification = CallerVerification {
            challenge_id: record.id,
            admin_id: agent.id,
            user_id: record.user_id,
            created_at: record.created_at,
        };
        let audit = AuditEvent::new(
            self.clock.now(),
            agent.actor(),
            Action::CallerVerificationStarted,
            Subject::User(record.user_id),
        )
        .with_details(json!({ "challenge_id": record.id, "username": username }));
        if let Err(error) = self.store.record_caller_verification(&verification, audit).await {
            // No verification without its record: take the push back.
            let _ = self.challenges.cancel(app, record.id).await;
            return Err(error.into());
        }
        Ok(StartedVerification { id: record.id, number: created.number, expires_at: record.expires_at })
    }

    /// The verification's state, waiting up to `wait` seconds for the caller to answer. Only the
    /// agent who started it may follow it.
    pub async fn status(
        &self,
        agent: &AdminPrincipal,
        id: ChallengeId,
        wait: u64,
    ) -> Result<VerificationState, HelpDeskError> {
        self.own_verification(agent, id).await?;
        let challenge = self.challenges.status(self.app().await?, id, wait).await?;
        Ok(VerificationState::of(challenge.state))
    }

    /// An enrollment link for a new passkey of the verified caller: the verification (this
    /// agent's, for this user, approved within the approval window, unused) is consumed as the
    /// registration's proof, exactly once.
    pub async fn passkey_link(
        &self,
        agent: &AdminPrincipal,
        username: &str,
        verification: ChallengeId,
        name: Option<String>,
    ) -> Result<(SecretString, OffsetDateTime), HelpDeskError> {
        self.own_verification(agent, verification).await.map_err(|_| HelpDeskError::CallerNotVerified)?;
        // One agent and one approval on a phone (which a social engineer can talk its holder
        // into) must not add a factor to a privileged user.
        let privileged = match crate::users::service::find_user(self.store.as_ref(), username).await {
            Ok(user) => user.is_privileged,
            Err(crate::users::service::UserError::Store(e)) => return Err(e.into()),
            // Nobody by that name: the registration below says so.
            Err(_) => false,
        };
        if privileged {
            return Err(HelpDeskError::PrivilegedUser);
        }
        let request = RegistrationRequest { approval: Some(verification), name };
        let app = self.app().await?;
        let link = match self.passkeys.create_helpdesk_link(app, agent.id, username, request).await {
            Ok(link) => link,
            Err(PasskeyError::ApprovalInvalid | PasskeyError::SecondFactorProofRequired) => {
                return Err(HelpDeskError::CallerNotVerified);
            }
            Err(other) => return Err(other.into()),
        };
        let audit = AuditEvent::new(
            self.clock.now(),
            agent.actor(),
            Action::HelpdeskEnrollmentLinkIssued,
            Subject::Challenge(verification),
        )
        .with_details(json!({ "username": username, "kind": "passkey", "expires_at": link.expires_at.unix_timestamp() }));
        let now = audit.occurred_at;
        self.store.record_audit(audit).await?;
        // Talking a help desk into a new factor is how accounts are taken over: every link is
        // announced, so the user's team and the security team can object while it is fresh.
        let details = json!({ "username": username, "agent": agent.id, "verification": verification });
        let subject = Subject::Challenge(verification);
        self.store
            .raise_alert(AlertKind::HelpdeskPasskeyLinkIssued, &subject, &details.to_string(), now)
            .await?;
        Ok((link.url, link.expires_at))
    }

    async fn own_verification(
        &self,
        agent: &AdminPrincipal,
        id: ChallengeId,
    ) -> Result<CallerVerification, HelpDeskError> {
        match self.store.caller_verification(id).await? {
            Some(verification) if verification.admin_id == agent.id => Ok(verification),
            _ => Err(HelpDeskError::NotFound),
        }
    }
}
