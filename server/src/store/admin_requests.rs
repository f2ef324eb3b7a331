//! Four-eyes requests and the roster changes they make: each decision is one compare-and-set
//! transaction with its audit event, and every change to who is an active admin takes the
//! roster lock and recounts before it writes.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use super::admin::{AdminRecord, admin_from_row};
use super::codec::{Columns, Sql};
use crate::admin::model::{self, AdminStatus, LastAdmins, RequestKind, RequestState, Role};
use crate::audit::AuditEvent;
use crate::ids::{AdminId, AdminRequestId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequestRecord {
    pub id: AdminRequestId,
    pub kind: RequestKind,
    /// The kind's payload, as JSON.
    pub payload: String,
    pub state: RequestState,
    pub requested_by: AdminId,
    pub requested_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub decided_by: Option<AdminId>,
    pub decided_at: Option<OffsetDateTime>,
    pub applied_at: Option<OffsetDateTime>,
    /// What applying the change did (JSON), or why it could not be made.
    pub result: Option<String>,
}

/// Where a page of requests starts: strictly older than this `(requested_at, id)`.
pub type RequestCursor = (OffsetDateTime, AdminRequestId);

/// What an approval found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The step-up is spent and the request approved, in one transaction.
    Approved,
    /// The approver's session holds no fresh step-up: nothing changed.
    StepUpMissing,
    /// The request is not pending (or expired, or is the approver's own): nothing changed.
    NotPending,
}

/// A decision on a request other than an approval, each a compare-and-set on its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// pending → rejected, by an admin other than the requester.
    Reject { by: AdminId },
    /// pending → cancelled, by the requester only.
    Cancel { by: AdminId },
    /// pending → expired, once past `expires_at`.
    Expire,
    /// approved → applied, with what applying did.
    Applied { result: String },
    /// approved → pending again: the change could not be made (e.g. it would now leave fewer
    /// than two admins); `result` says why.
    ApplyRefused { result: String },
}

/// What a roster change (a role change, a removal) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterChange {
    Changed,
    /// The admin already stood so: nothing to write ("set to" operations are idempotent).
    Unchanged,
    LastAdmins(LastAdmins),
    NotFound,
}

#[async_trait]
pub trait AdminRequestStore: Send + Sync + std::fmt::Debug {
    /// Records a pending request with its audit event and an `admin_request_pending` alert.
    async fn insert_admin_request(
        &self,
        request: &AdminRequestRecord,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<(), StoreError>;

    async fn admin_request(&self, id: AdminRequestId) -> Result<Option<AdminRequestRecord>, StoreError>;

    /// Newest first, optionally in one state, strictly before `before`.
    async fn admin_requests(
        &self,
        state: Option<RequestState>,
        before: Option<RequestCursor>,
        limit: u32,
    ) -> Result<Vec<AdminRequestRecord>, StoreError>;

    /// Spends the approver's step-up (fresh since `fresh_since`) and moves the request
    /// pending → approved, with its audit event, in one transaction: both or neither.
    // The approval, the approver, and the step-up it spends (session, freshness, action) are
    // one compare-and-set transaction; a struct for them would only rename the arguments.
    #[allow(clippy::too_many_arguments)]
    async fn approve_admin_request(
        &self,
        id: AdminRequestId,
        approver: AdminId,
        session_hash: &[u8],
        fresh_since: OffsetDateTime,
        step_up_action: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<Approval, StoreError>;

    /// Makes `transition` if the request still stands where it starts from; `false` (and
    /// nothing written) otherwise.
    async fn transition_admin_request(
        &self,
        id: AdminRequestId,
        transition: &Transition,
        now: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Sets an admin's role under the roster lock.
    async fn set_admin_role(
        &self,
        id: AdminId,
        role: Role,
        audit: AuditEvent,
    ) -> Result<RosterChange, StoreError>;

    /// Soft removal under the roster lock: `removal_pending` until `due_at`, every session of
    /// the admin revoked now, an `admin_removal_scheduled` alert.
    async fn schedule_admin_removal(
        &self,
        id: AdminId,
        due_at: OffsetDateTime,
        now: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<RosterChange, StoreError>;

    /// Takes back a removal that is not yet due: the admin is active again, and an
    /// `admin_removal_cancelled` alert is raised. `false` if there was none to take back.
    async fn cancel_admin_removal(
        &self,
        id: AdminId,
        now: OffsetDateTime,
        audit: AuditEvent,
        alert_details: &str,
    ) -> Result<bool, StoreError>;

    /// Removes an admin who is still invited (no passkey yet) at once, and deletes their
    /// invitations so the link can never be redeemed. `false` if the admin is not invited (the
    /// invitation was redeemed first: remove them as an active admin).
    async fn withdraw_invitation(&self, id: AdminId, audit: AuditEvent) -> Result<bool, StoreError>;

    /// Creates an invited admin with a one-time invitation (its SHA-256); if an invited admin of
    /// that name exists already (an invitation applied before a crash), it gets a new
    /// invitation instead. Returns the admin's id; `Conflict(AdminName)` if the name belongs to
    /// an admin who is not invited.
    async fn invite_admin(
        &self,
        admin: &AdminRecord,
        token_hash: &[u8],
        expires_at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AdminId, StoreError>;
}

/// What a roster change should do to `target` (read under the roster lock, with `active`
/// counted there): `Changed` means go ahead and write. `new_role` `None` is a removal.
pub(super) fn roster_plan(active: u32, target: Option<&AdminRecord>, new_role: Option<Role>) -> RosterChange {
    let Some(target) = target else { return RosterChange::NotFound };
    let already = match new_role {
        Some(role) => target.role == role,
        None => target.status != AdminStatus::Active,
    };
    if already {
        return RosterChange::Unchanged;
    }
    match model::roster_change(active, target.role, target.status, new_role) {
        Ok(()) => RosterChange::Changed,
        Err(short) => RosterChange::LastAdmins(short),
    }
}

pub(super) const REQUEST_COLUMNS: &str = "id, kind, payload, state, requested_by, requested_at, expires_at, \
     decided_by, decided_at, applied_at, result";

pub(super) fn request_from_row<R: Columns>(row: &R) -> Result<AdminRequestRecord, StoreError> {
    let kind: String = row.value("kind")?;
    let state: String = row.value("state")?;
    Ok(AdminRequestRecord {
        id: AdminRequestId(row.id("id")?),
        kind: RequestKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("request kind `{kind}`")))?,
        payload: row.value("payload")?,
        state: RequestState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("request state `{state}`")))?,
        requested_by: AdminId(row.id("requested_by")?),
        requested_at: row.time("requested_at")?,
        expires_at: row.time("expires_at")?,
        decided_by: row.optional_id("decided_by")?.map(AdminId),
        decided_at: row.optional_time("decided_at")?,
        applied_at: row.optional_time("applied_at")?,
        result: row.value("result")?,
    })
}

/// The target admin of a roster change, read inside the locked transaction.
pub(super) fn target_from_row<R: Columns>(row: Option<&R>) -> Result<Option<AdminRecord>, StoreError> {
    row.map(admin_from_row).transpose()
}

/// Where a first page starts: later than any request.
pub(super) fn first_page() -> RequestCursor {
    (time::macros::datetime!(9999-01-01 0:00 UTC), AdminRequestId(uuid::Uuid::max()))
}

// Portable statements: the same text on both engines.

pub(super) static INSERT_REQUEST: Sql = Sql::new(|| {
    format!(
        "INSERT INTO admin_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )
});
pub(super) static REQUEST_BY_ID: Sql =
    Sql::new(|| format!("SELECT {REQUEST_COLUMNS} FROM admin_requests WHERE id = $1"));
pub(super) static REQUEST_PAGE: Sql = Sql::new(|| {
    format!(
        "SELECT {REQUEST_COLUMNS} FROM admin_requests
         WHERE ($1 IS NULL OR state = $1) AND (requested_at < $2 OR (requested_at = $2 AND id < $3))
         ORDER BY requested_at DESC, id DESC LIMIT $4"
    )
});

/// Pending, unexpired, another admin's, and both admins still what they were: the approver an
/// active admin now (not demoted or removed meanwhile), the requester still active (a removed
/// admin's requests die with them).
pub(super) const APPROVE: &str =
    "UPDATE admin_requests SET state = 'approved', decided_by = $2, decided_at = $3
     WHERE id = $1 AND state = 'pending' AND expires_at > $3 AND requested_by <> $2
       AND EXISTS (SELECT 1 FROM admins a WHERE a.id = $2 AND a.role = 'admin' AND a.status = 'active')
       AND EXISTS (SELECT 1 FROM admins r WHERE r.id = admin_requests.requested_by AND r.status = 'active')";
pub(super) const REJECT: &str =
    "UPDATE admin_requests SET state = 'rejected', decided_by = $2, decided_at = $3
     WHERE id = $1 AND state = 'pending' AND expires_at > $3 AND requested_by <> $2";
pub(super) const CANCEL: &str =
    "UPDATE admin_requests SET state = 'cancelled', decided_by = $2, decided_at = $3
     WHERE id = $1 AND state = 'pending' AND requested_by = $2";
pub(super) const EXPIRE: &str =
    "UPDATE admin_requests SET state = 'expired' WHERE id = $1 AND state = 'pending' AND expires_at <= $2";
pub(super) const APPLIED: &str = "UPDATE admin_requests SET state = 'applied', applied_at = $2, result = $3
     WHERE id = $1 AND state = 'approved'";
pub(super) const APPLY_REFUSED: &str = "UPDATE admin_requests
     SET state = 'pending', decided_by = NULL, decided_at = NULL, result = $2
     WHERE id = $1 AND state = 'approved'";

pub(super) static ADMIN_FOR_CHANGE: Sql =
    Sql::new(|| format!("SELECT {} FROM admins WHERE id = $1", super::admin::ADMIN_COLUMNS));
pub(super) const SET_ROLE: &str = "UPDATE admins SET role = $2 WHERE id = $1";
pub(super) const SCHEDULE_REMOVAL: &str =
    "UPDATE admins SET status = 'removal_pending', removal_due_at = $2 WHERE id = $1 AND status = 'active'";
pub(super) const REVOKE_ALL_SESSIONS: &str =
    "UPDATE admin_sessions SET revoked_at = $2 WHERE admin_id = $1 AND revoked_at IS NULL";
pub(super) const CANCEL_REMOVAL: &str = "UPDATE admins SET status = 'active', removal_due_at = NULL
     WHERE id = $1 AND status = 'removal_pending' AND removal_due_at > $2";
pub(super) const REMOVE_INVITED: &str =
    "UPDATE admins SET status = 'removed' WHERE id = $1 AND status = 'invited'";
pub(super) const DELETE_INVITATIONS: &str = "DELETE FROM admin_invitations WHERE admin_id = $1";
pub(super) const ADMIN_BY_NAME: &str = "SELECT id, status FROM admins WHERE name = $1";
pub(super) const INSERT_INVITATION: &str =
    "INSERT INTO admin_invitations (token_hash, admin_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
