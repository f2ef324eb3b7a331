//! Four-eyes requests: one admin asks, a different admin approves with a fresh passkey
//! assertion, and the change is made right after the approval by an idempotent "set to"
//! applier. A request approved but not applied (a crash between the two) is applied on its next
//! read or approval attempt; a pending request past its 24 hours reads as expired.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::model::{
    self, AdminStatus, DecisionRefused, INVITATION_TTL, LastAdmins, REMOVAL_DELAY, REQUEST_TTL, RequestKind,
    RequestState, Role, StepUpAction,
};
use super::request_json::admin_view;
pub use super::request_json::{
    AdminView, ApprovalView, ForUser, GrantRole, InvitationView, RemoveAdmin, RequestPayload, RequestView,
};
use super::sessions::{AdminPrincipal, random_secret, secret_hash};
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::fatigue::service::{FatigueError, FatigueService};
use crate::ids::{AdminId, AdminRequestId};
use crate::store::{
    AdminRecord, AdminRequestRecord, Approval, Conflict, RequestCursor, RosterChange, Store, StoreError,
    Transition,
};
use crate::users::service::{UserError, find_user, reset_factors};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("four-eyes changes need a second active admin to approve them; invite one first")]
    SecondAdminRequired,
    #[error("the admin who asked for a change cannot decide it")]
    SelfApproval,
    #[error("only the admin role decides requests")]
    Role,
    #[error("only the admin who asked for this change may cancel it")]
    NotRequester,
    #[error("the request is {}, not pending", .0.as_str())]
    NotPending(RequestState),
    #[error("nobody decided the request within 24 hours; it has expired")]
    Expired,
    #[error("no such request")]
    RequestNotFound,
    #[error("no such admin")]
    AdminNotFound,
    #[error("an admin with that name exists already")]
    AdminExists,
    #[error("this admin has no removal pending that can still be cancelled")]
    RemovalNotPending,
    #[error(transparent)]
    LastAdmins(#[from] LastAdmins),
    #[error("approving needs a fresh passkey assertion (step-up), used once")]
    StepUpRequired,
    #[error("no such user")]
    UserNotFound,
    #[error("`{}` requests are not yet supported by this server", .0.as_str())]
    Unsupported(RequestKind),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UserError> for AdminError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Store(e) => AdminError::Store(e),
            UserError::HeldForReview => {
                AdminError::Store(StoreError::PreconditionFailed(crate::store::Precondition::HeldForReview))
            }
            // A name that cannot be a username names nobody.
            UserError::NotFound | UserError::Input(_) | UserError::Exists => AdminError::UserNotFound,
        }
    }
}

impl From<FatigueError> for AdminError {
    fn from(error: FatigueError) -> Self {
        match error {
            FatigueError::UserNotFound => AdminError::UserNotFound,
            FatigueError::Store(e) => AdminError::Store(e),
            // Only an ordinary unfreeze is refused this way, and appliers make reviewed ones.
            FatigueError::AdminReviewRequired => {
                AdminError::Store(StoreError::Corrupt("a reviewed unfreeze was refused review".into()))
            }
        }
    }
}

/// What an admin's unfreeze did.
#[derive(Debug)]
pub enum Unfrozen {
    /// The freeze was theirs to lift: push is available again.
    Lifted(crate::fatigue::report::PushStanding),
    /// A "not me" quarantine: a request now waits for a second admin.
    Pending(RequestView),
}

/// What an applier did: its result for the request row, and an invitation to show once.
struct Applied {
    result: Value,
    invitation: Option<InvitationView>,
}

/// Longest admin name accepted.
const NAME_MAX: usize = 64;

#[derive(Debug)]
pub struct AdminRequests {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    fatigue: Arc<FatigueService>,
    /// How fresh an approver's step-up must be.
    step_up: Duration,
}

impl AdminRequests {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        fatigue: Arc<FatigueService>,
        step_up: Duration,
    ) -> Self {
        Self { store, clock, fatigue, step_up }
    }

    /// Every admin, by name, as they stand now.
    pub async fn admins(&self) -> Result<Vec<AdminView>, AdminError> {
        let now = self.clock.now();
        Ok(self.store.admins().await?.iter().map(|a| admin_view(a, now)).collect())
    }

    /// Asks for a change (pending, 24 hours), audited, with an `admin_request_pending` alert.
    /// Lifts a user's push freeze as one admin or help-desk agent may (a second wrong number, a
    /// hard lock, a timed freeze); a "not me" quarantine becomes a four-eyes request instead,
    /// pending until a second admin approves it.
    pub async fn unfreeze_user(
        &self,
        principal: &AdminPrincipal,
        username: &str,
    ) -> Result<Unfrozen, AdminError> {
        use crate::fatigue::model::Unfreezer;
        match self.fatigue.unfreeze_by(principal.actor(), username, Unfreezer::Admin).await {
            Ok(standing) => Ok(Unfrozen::Lifted(standing)),
            Err(FatigueError::AdminReviewRequired) => {
                let payload = RequestPayload::UnfreezeQuarantined(ForUser { username: username.to_owned() });
                Ok(Unfrozen::Pending(self.submit(principal, payload).await?))
            }
            Err(other) => Err(other.into()),
        }
    }

    pub async fn submit(
        &self,
        principal: &AdminPrincipal,
        payload: RequestPayload,
    ) -> Result<RequestView, AdminError> {
        let active = self.store.active_admin_count().await?;
        if active < model::MIN_ACTIVE_ADMINS {
            return Err(AdminError::SecondAdminRequired);
        }
        self.check(&payload, active).await?;
        let now = self.clock.now();
        let kind = payload.kind();
        let payload = payload.to_json();
        let record = AdminRequestRecord {
            id: AdminRequestId::random(),
            kind,
            payload: payload.to_string(),
            state: RequestState::Pending,
            requested_by: principal.id,
            requested_at: now,
            expires_at: now + REQUEST_TTL,
            decided_by: None,
            decided_at: None,
            applied_at: None,
            result: None,
        };
        let details = json!({ "kind": kind.as_str(), "payload": payload, "requested_by": principal.id });
        let audit = AuditEvent::new(
            now,
            principal.actor(),
            Action::AdminRequestSubmitted,
            Subject::AdminRequest(record.id),
        )
        .with_details(details.clone());
        let alert = json!({ "request_id": record.id, "kind": kind.as_str(), "requested_by": principal.id });
        self.store.insert_admin_request(&record, audit, &alert.to_string()).await?;
        Ok(RequestView::from(&record))
    }

    /// One request as it stands now (a pending one past its deadline reads as expired). A read
    /// changes nothing: any role may read, and only an approval makes a change.
    pub async fn get(&self, id: AdminRequestId) -> Result<RequestView, AdminError> {
        let record = self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound)?;
        Ok(self.as_now(&record))
    }

    /// The view of `record` now: a pending request past its deadline is expired, whether or
    /// not that was written yet (the next decision on it writes it).
    fn as_now(&self, record: &AdminRequestRecord) -> RequestView {
        let mut view = RequestView::from(record);
        if record.state == RequestState::Pending && self.clock.now() >= record.expires_at {
            view.state = RequestState::Expired;
        }
        view
    }

    /// A page of requests, newest first.
    pub async fn list(
        &self,
        state: Option<RequestState>,
        before: Option<RequestCursor>,
        limit: u32,
    ) -> Result<Vec<RequestView>, AdminError> {
        let records = self.store.admin_requests(state, before, limit).await?;
        Ok(records.iter().map(|record| self.as_now(record)).collect())
    }

    /// Approves another admin's request, spending the approver's step-up in the same
    /// transaction, then makes the change.
    pub async fn approve(
        &self,
        principal: &AdminPrincipal,
        id: AdminRequestId,
    ) -> Result<ApprovalView, AdminError> {
        let record = self.settled(id).await?;
        let now = self.clock.now();
        if record.state == RequestState::Approved {
            // Approved, never applied: the approver's process stopped in between. Another
            // admin's approval attempt makes the change (the approval itself stands).
            if !principal.role.permits(model::Permission::DecideRequest) {
                return Err(AdminError::Role);
            }
            if principal.id == record.requested_by {
                return Err(AdminError::SelfApproval);
            }
            let invitation = self.apply(&record).await?;
            let record = self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound)?;
            return Ok(ApprovalView { request: RequestView::from(&record), invitation });
        }
        self.may_decide(principal, &record, now)?;
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminRequestApproved, Subject::AdminRequest(id))
                .with_details(decision_details(&record, principal.id));
        let fresh_since = now - self.step_up;
        match self
            .store
            .approve_admin_request(
                id,
                principal.id,
                &principal.session_hash,
                fresh_since,
                StepUpAction::approve_request(id).as_str(),
                now,
                audit,
            )
            .await?
        {
            Approval::Approved => {}
            Approval::StepUpMissing => return Err(AdminError::StepUpRequired),
            Approval::NotPending => {
                let now_state = self.settled(id).await?.state;
                return Err(AdminError::NotPending(now_state));
            }
        }
        let approved = self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound)?;
        let invitation = self.apply(&approved).await?;
        let record = self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound)?;
        Ok(ApprovalView { request: RequestView::from(&record), invitation })
    }

    /// Rejects another admin's request (no step-up: refusing a change is never dangerous).
    pub async fn reject(
        &self,
        principal: &AdminPrincipal,
        id: AdminRequestId,
    ) -> Result<RequestView, AdminError> {
        let record = self.settled(id).await?;
        let now = self.clock.now();
        self.may_decide(principal, &record, now)?;
        // A rejection is a decision too: without a fresh passkey, one stolen admin session could
        // veto every defensive request (removing its confederate, lifting a quarantine).
        let action = StepUpAction::approve_request(id);
        if !self
            .store
            .consume_admin_step_up(&principal.session_hash, now - self.step_up, action.as_str())
            .await?
        {
            return Err(AdminError::StepUpRequired);
        }
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminRequestRejected, Subject::AdminRequest(id))
                .with_details(decision_details(&record, principal.id));
        self.decide(id, &Transition::Reject { by: principal.id }, now, audit).await
    }

    /// Withdraws the principal's own pending request.
    pub async fn cancel(
        &self,
        principal: &AdminPrincipal,
        id: AdminRequestId,
    ) -> Result<RequestView, AdminError> {
        let record = self.settled(id).await?;
        if record.requested_by != principal.id {
            return Err(AdminError::NotRequester);
        }
        match record.state {
            RequestState::Pending => {}
            RequestState::Expired => return Err(AdminError::Expired),
            other => return Err(AdminError::NotPending(other)),
        }
        let now = self.clock.now();
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminRequestCancelled, Subject::AdminRequest(id))
                .with_details(json!({ "kind": record.kind.as_str(), "requested_by": record.requested_by }));
        self.decide(id, &Transition::Cancel { by: principal.id }, now, audit).await
    }

    /// Takes back a scheduled removal that is not yet due: the admin is active again (they
    /// sign in anew; their old sessions stay revoked).
    pub async fn cancel_removal(
        &self,
        principal: &AdminPrincipal,
        admin_id: AdminId,
    ) -> Result<AdminView, AdminError> {
        let now = self.clock.now();
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminRemovalCancelled, Subject::Admin(admin_id))
                .with_details(json!({ "cancelled_by": principal.id }));
        let alert = json!({ "admin_id": admin_id, "cancelled_by": principal.id }).to_string();
        if !self.store.cancel_admin_removal(admin_id, now, audit, &alert).await? {
            return Err(match self.store.admin(admin_id).await? {
                None => AdminError::AdminNotFound,
                Some(_) => AdminError::RemovalNotPending,
            });
        }
        let admin = self.store.admin(admin_id).await?.ok_or(AdminError::AdminNotFound)?;
        Ok(admin_view(&admin, now))
    }

    /// Ends every session of the admin `admin_id` now (a stolen cookie, a lost laptop): they
    /// sign in again with a passkey. One admin may do it, with a step-up taken for it; it
    /// takes nothing away that a passkey does not give back. Returns how many were live.
    pub async fn end_sessions(
        &self,
        principal: &AdminPrincipal,
        admin_id: AdminId,
    ) -> Result<u64, AdminError> {
        self.store.admin(admin_id).await?.ok_or(AdminError::AdminNotFound)?;
        let now = self.clock.now();
        let audit =
            AuditEvent::new(now, principal.actor(), Action::AdminSessionsEnded, Subject::Admin(admin_id))
                .with_details(json!({ "ended_by": principal.id }));
        Ok(self.store.revoke_all_admin_sessions(admin_id, now, audit).await?)
    }

    fn may_decide(
        &self,
        principal: &AdminPrincipal,
        record: &AdminRequestRecord,
        now: OffsetDateTime,
    ) -> Result<(), AdminError> {
        model::may_decide(
            principal.id,
            principal.role,
            record.requested_by,
            record.state,
            record.expires_at,
            now,
        )
        .map_err(|refused| match refused {
            DecisionRefused::OwnRequest => AdminError::SelfApproval,
            DecisionRefused::Role => AdminError::Role,
            DecisionRefused::NotPending if record.state == RequestState::Expired => AdminError::Expired,
            DecisionRefused::NotPending => AdminError::NotPending(record.state),
            DecisionRefused::Expired => AdminError::Expired,
        })
    }

    async fn decide(
        &self,
        id: AdminRequestId,
        transition: &Transition,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<RequestView, AdminError> {
        if !self.store.transition_admin_request(id, transition, now, audit).await? {
            let state = self.settled(id).await?.state;
            return Err(if state == RequestState::Expired {
                AdminError::Expired
            } else {
                AdminError::NotPending(state)
            });
        }
        self.get(id).await
    }

    /// The request, with a lapsed pending one marked expired and an approved one applied.
    /// The request before a decision on it (a POST): a pending one past its deadline is
    /// written expired first.
    async fn settled(&self, id: AdminRequestId) -> Result<AdminRequestRecord, AdminError> {
        let record = self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound)?;
        if record.state == RequestState::Pending && self.clock.now() >= record.expires_at {
            self.expire(&record).await?;
            return self.store.admin_request(id).await?.ok_or(AdminError::RequestNotFound);
        }
        Ok(record)
    }

    async fn expire(&self, record: &AdminRequestRecord) -> Result<(), AdminError> {
        let now = self.clock.now();
        let audit = AuditEvent::new(
            now,
            Actor::System,
            Action::AdminRequestExpired,
            Subject::AdminRequest(record.id),
        )
        .with_details(json!({ "kind": record.kind.as_str(), "requested_by": record.requested_by }));
        self.store.transition_admin_request(record.id, &Transition::Expire, now, audit).await?;
        Ok(())
    }

    /// Makes an approved request's change and records it applied; a change the roster no
    /// longer allows puts the request back to pending and answers why.
    async fn apply(&self, record: &AdminRequestRecord) -> Result<Option<InvitationView>, AdminError> {
        let approver =
            record.decided_by.ok_or_else(|| StoreError::Corrupt("approved, no approver".into()))?;
        let payload = serde_json::from_str(&record.payload)
            .map_err(|e| StoreError::Corrupt(format!("request payload: {e}")))
            .and_then(|json| {
                RequestPayload::parse(record.kind, json)
                    .map_err(|e| StoreError::Corrupt(format!("request payload: {e}")))
            })?;
        let now = self.clock.now();
        let details = decision_details(record, approver);
        let outcome = self.run_applier(record, approver, &payload, &details, now).await;
        let actor = Actor::Admin { id: approver };
        match outcome {
            Ok(applied) => {
                let audit = AuditEvent::new(
                    now,
                    actor,
                    Action::AdminRequestApplied,
                    Subject::AdminRequest(record.id),
                )
                .with_details(json!({ "request": details, "result": applied.result }));
                let transition = Transition::Applied { result: applied.result.to_string() };
                self.store.transition_admin_request(record.id, &transition, now, audit).await?;
                Ok(applied.invitation)
            }
            Err(AdminError::Store(error)) => Err(AdminError::Store(error)),
            Err(refused) => {
                let result = json!({ "refused": refused.to_string() });
                let audit = AuditEvent::new(
                    now,
                    actor,
                    Action::AdminRequestApplyRefused,
                    Subject::AdminRequest(record.id),
                )
                .with_details(json!({ "request": details, "result": result }));
                let transition = Transition::ApplyRefused { result: result.to_string() };
                self.store.transition_admin_request(record.id, &transition, now, audit).await?;
                Err(refused)
            }
        }
    }

    async fn run_applier(
        &self,
        record: &AdminRequestRecord,
        approver: AdminId,
        payload: &RequestPayload,
        details: &Value,
        now: OffsetDateTime,
    ) -> Result<Applied, AdminError> {
        let actor = Actor::Admin { id: approver };
        match payload {
            RequestPayload::GrantRole(GrantRole { admin_id: Some(admin_id), role, .. }) => {
                let audit = AuditEvent::new(now, actor, Action::AdminRoleChanged, Subject::Admin(*admin_id))
                    .with_details(json!({ "role": role.as_str(), "request": details }));
                roster_outcome(self.store.set_admin_role(*admin_id, *role, audit).await?)?;
                Ok(Applied { result: json!({ "admin_id": admin_id, "role": role }), invitation: None })
            }
            RequestPayload::GrantRole(GrantRole { name: Some(name), role, .. }) => {
                self.invite(record, actor, name, *role, details, now).await
            }
            RequestPayload::GrantRole(_) => Err(AdminError::Invalid("grant_role names no admin".into())),
            RequestPayload::RemoveAdmin(RemoveAdmin { admin_id }) => {
                // An invitation not yet redeemed is withdrawn at once: nobody holds a session
                // to end, and a leaked invitation link must stop working now, not in 24 hours.
                let withdrawn = AuditEvent::new(
                    now,
                    actor.clone(),
                    Action::AdminInvitationWithdrawn,
                    Subject::Admin(*admin_id),
                )
                .with_details(json!({ "request": details }));
                if self.store.withdraw_invitation(*admin_id, withdrawn).await? {
                    return Ok(Applied {
                        result: json!({ "admin_id": admin_id, "status": "removed" }),
                        invitation: None,
                    });
                }
                let due_at = now + REMOVAL_DELAY;
                let audit =
                    AuditEvent::new(now, actor, Action::AdminRemovalScheduled, Subject::Admin(*admin_id))
                        .with_details(
                            json!({ "removal_due_at": due_at.unix_timestamp(), "request": details }),
                        );
                let alert = json!({ "admin_id": admin_id, "request_id": record.id, "removal_due_at": due_at.unix_timestamp() });
                let change = self
                    .store
                    .schedule_admin_removal(*admin_id, due_at, now, audit, &alert.to_string())
                    .await?;
                roster_outcome(change)?;
                Ok(Applied {
                    result: json!({ "admin_id": admin_id, "status": "removal_pending" }),
                    invitation: None,
                })
            }
            RequestPayload::UnfreezeQuarantined(ForUser { username }) => {
                let standing = self.fatigue.unfreeze_reviewed(actor, username).await?;
                Ok(Applied {
                    result: json!({ "username": username, "push": standing.push }),
                    invitation: None,
                })
            }
            RequestPayload::ResetPrivilegedFactors(ForUser { username }) => {
                let reset = reset_factors(self.store.as_ref(), self.clock.as_ref(), actor, username).await?;
                let result = json!({
                    "username": username,
                    "devices_revoked": reset.devices_revoked,
                    "passkeys_revoked": reset.passkeys_revoked,
                });
                Ok(Applied { result, invitation: None })
            }
            RequestPayload::FatiguePolicy(policy) => {
                policy.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
                let event = AuditEvent::new(
                    now,
                    actor,
                    Action::FatiguePolicyChanged,
                    Subject::AdminRequest(record.id),
                );
                let handle = self.fatigue.policy();
                let origin =
                    handle.change(self.store.as_ref(), policy.clone(), record.id, event, now).await?;
                Ok(Applied { result: json!({ "policy": policy, "origin": origin }), invitation: None })
            }
        }
    }

    /// Creates the invited admin and their one-time invitation; the token goes back to the
    /// approver only, and only its SHA-256 is kept.
    async fn invite(
        &self,
        record: &AdminRequestRecord,
        actor: Actor,
        name: &str,
        role: Role,
        details: &Value,
        now: OffsetDateTime,
    ) -> Result<Applied, AdminError> {
        let token = random_secret().map_err(|_| StoreError::Corrupt("no randomness".into()))?;
        let admin = AdminRecord {
            id: AdminId::random(),
            name: name.to_owned(),
            role,
            status: AdminStatus::Invited,
            // The handle their discoverable passkeys will carry (64 random bytes).
            webauthn_handle: crate::passkeys::ceremony::new_user_handle(),
            created_at: now,
            created_by: actor.to_string(),
            removal_due_at: None,
            removed_at: None,
        };
        let expires_at = now + INVITATION_TTL;
        let audit = AuditEvent::new(now, actor, Action::AdminInvited, Subject::Admin(admin.id)).with_details(
            json!({ "name": name, "role": role.as_str(), "request_id": record.id, "request": details }),
        );
        let admin_id = match self
            .store
            .invite_admin(&admin, &secret_hash(token.expose_secret()), expires_at, audit)
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(Conflict::AdminName)) => return Err(AdminError::AdminExists),
            Err(other) => return Err(other.into()),
        };
        let invitation = InvitationView { admin_id, token: token.expose_secret().to_owned(), expires_at };
        Ok(Applied {
            result: json!({ "admin_id": admin_id, "role": role, "invited": name }),
            invitation: Some(invitation),
        })
    }

    /// Refuses at submit time what the applier would refuse anyway (the applier checks again,
    /// under the roster lock).
    async fn check(&self, payload: &RequestPayload, active: u32) -> Result<(), AdminError> {
        match payload {
            RequestPayload::GrantRole(GrantRole { admin_id: Some(id), name: None, role }) => {
                let target = self.live_admin(*id).await?;
                model::roster_change(active, target.role, target.status, Some(*role))?;
            }
            RequestPayload::GrantRole(GrantRole { admin_id: None, name: Some(name), .. }) => {
                check_name(name)?;
                if self.store.admins().await?.iter().any(|a| a.name == *name) {
                    return Err(AdminError::AdminExists);
                }
            }
            RequestPayload::GrantRole(_) => {
                return Err(AdminError::Invalid(
                    "grant_role takes either `admin_id` (a role change) or `name` (a new admin)".into(),
                ));
            }
            RequestPayload::RemoveAdmin(RemoveAdmin { admin_id }) => {
                let target = self.live_admin(*admin_id).await?;
                if !matches!(target.status, AdminStatus::Active | AdminStatus::Invited) {
                    return Err(AdminError::Invalid("only an active or invited admin can be removed".into()));
                }
                model::roster_change(active, target.role, target.status, None)?;
            }
            RequestPayload::UnfreezeQuarantined(ForUser { username })
            | RequestPayload::ResetPrivilegedFactors(ForUser { username }) => {
                find_user(self.store.as_ref(), username).await?;
            }
            RequestPayload::FatiguePolicy(policy) => {
                policy.validate().map_err(|e| AdminError::Invalid(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// An admin who is not removed (nor past a removal's delay).
    async fn live_admin(&self, id: AdminId) -> Result<AdminRecord, AdminError> {
        let admin = self.store.admin(id).await?.ok_or(AdminError::AdminNotFound)?;
        match model::effective_status(admin.status, admin.removal_due_at, self.clock.now()) {
            AdminStatus::Removed => Err(AdminError::AdminNotFound),
            _ => Ok(admin),
        }
    }
}

/// Who asked and who decided: every event of a request carries both.
fn decision_details(record: &AdminRequestRecord, decided_by: AdminId) -> Value {
    json!({
        "request_id": record.id,
        "kind": record.kind.as_str(),
        "requested_by": record.requested_by,
        "approved_by": decided_by,
    })
}

fn roster_outcome(change: RosterChange) -> Result<(), AdminError> {
    match change {
        RosterChange::Changed | RosterChange::Unchanged => Ok(()),
        RosterChange::LastAdmins(short) => Err(AdminError::LastAdmins(short)),
        RosterChange::NotFound => Err(AdminError::AdminNotFound),
    }
}

fn check_name(name: &str) -> Result<(), AdminError> {
    let fine = !name.trim().is_empty()
        && name.trim() == name
        && name.chars().count() <= NAME_MAX
        && !name.chars().any(char::is_control);
    if fine {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "an admin name is 1 to {NAME_MAX} characters, without control characters or surrounding spaces"
        )))
    }
}
