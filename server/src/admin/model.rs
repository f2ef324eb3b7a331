//! The admin plane's pure rules: roles and what they may do, session lifetimes, the four-eyes
//! request kinds and who may decide them, and the two-admin floor.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::ids::AdminId;

/// What an admin may do, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing (it may ask for the audit chain to be verified).
    Auditor,
    /// Verifies callers, lifts ordinary freezes, revokes factors, issues enrollment links for a
    /// verified caller, and asks for (never approves) four-eyes changes.
    Helpdesk,
    /// Everything, including approving another admin's request.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Helpdesk => "helpdesk",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auditor" => Some(Role::Auditor),
            "helpdesk" => Some(Role::Helpdesk),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether the role allows `permission`.
    pub const fn permits(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::VerifyAudit => true,
            Permission::HelpDesk | Permission::SubmitRequest => {
                matches!(self, Role::Helpdesk | Role::Admin)
            }
            Permission::Administer | Permission::DecideRequest => matches!(self, Role::Admin),
        }
    }
}

/// What a route asks of the admin's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Any page or read of the admin API.
    Read,
    /// Starting a verification of the audit chain.
    VerifyAudit,
    /// Help-desk work on users: caller verification, ordinary unfreeze, revoking factors.
    HelpDesk,
    /// Asking for a four-eyes change.
    SubmitRequest,
    /// Approving or rejecting another admin's request.
    DecideRequest,
    /// Everything else that changes the plane: apps, OIDC clients, admins' sessions.
    Administer,
}

/// Where an admin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminStatus {
    /// Approved, but no passkey registered yet.
    Invited,
    Active,
    /// Soft removal: signed out now, removed once the delay has passed unless cancelled.
    RemovalPending,
    Removed,
}

impl AdminStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminStatus::Invited => "invited",
            AdminStatus::Active => "active",
            AdminStatus::RemovalPending => "removal_pending",
            AdminStatus::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "invited" => Some(AdminStatus::Invited),
            "active" => Some(AdminStatus::Active),
            "removal_pending" => Some(AdminStatus::RemovalPending),
            "removed" => Some(AdminStatus::Removed),
            _ => None,
        }
    }
}

/// How long sessions and step-ups last (NIST SP 800-63B AAL3: 15 minutes idle, 12 hours in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    pub idle: Duration,
    pub absolute: Duration,
    /// A step-up assertion is good for one sensitive action within this window.
    pub step_up: Duration,
    /// An idle timer is pushed forward at most this often (one write a minute, not per request).
    pub touch_every: Duration,
}

impl Default for SessionTimes {
    fn default() -> Self {
        Self {
            idle: Duration::minutes(15),
            absolute: Duration::hours(12),
            step_up: Duration::minutes(2),
            touch_every: Duration::minutes(1),
        }
    }
}

/// The one sensitive action a step-up is taken for (`approve_request:<id>`, `add_passkey`,
/// `revoke_passkey:<id>`, …): a step-up is spent only by that action, so someone holding a
/// stolen session cannot spend the admin's fresh assertion on something else (adding their own
/// passkey, approving another request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpAction(String);

impl StepUpAction {
    /// An action as the client names it: a lowercase verb, optionally `:` and an id.
    pub fn parse(text: &str) -> Option<Self> {
        let (verb, object) = match text.split_once(':') {
            Some((verb, object)) => (verb, Some(object)),
            None => (text, None),
        };
        let verb_ok =
            (1..=40).contains(&verb.len()) && verb.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let object_ok = object.is_none_or(|o| {
            (1..=80).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        });
        (verb_ok && object_ok).then(|| Self(text.to_owned()))
    }

    /// Approving (or rejecting) the request `id`.
    pub fn approve_request(id: crate::ids::AdminRequestId) -> Self {
        Self(format!("approve_request:{id}"))
    }

    /// `verb` on `object` (an id or name), or `verb` alone.
    pub fn on(verb: &'static str, object: Option<&str>) -> Self {
        match object {
            Some(object) => Self(format!("{verb}:{object}")),
            None => Self(verb.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The smallest number of active admins the plane keeps: one admin alone could add a
/// confederate and approve anything.
pub const MIN_ACTIVE_ADMINS: u32 = 2;

/// A change to the roster of active admins that would leave fewer than [`MIN_ACTIVE_ADMINS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the change would leave {left} active admin(s); at least {MIN_ACTIVE_ADMINS} must remain")]
pub struct LastAdmins {
    pub left: u32,
}

/// Checks a change that takes `removed` admins (role `admin`, active) out of `active_admins`.
pub fn roster_after(active_admins: u32, removed: u32) -> Result<u32, LastAdmins> {
    let left = active_admins.saturating_sub(removed);
    if left < MIN_ACTIVE_ADMINS { Err(LastAdmins { left }) } else { Ok(left) }
}

/// Whether changing an admin who stands at (`role`, `status`) to `new_role` (`None`: removing
/// them) keeps two active admins, of `active` counted now. Only taking an active `admin` out of
/// the roster can break the floor; adding one never does.
pub fn roster_change(
    active: u32,
    role: Role,
    status: AdminStatus,
    new_role: Option<Role>,
) -> Result<(), LastAdmins> {
    let counted = role == Role::Admin && status == AdminStatus::Active;
    if counted && new_role != Some(Role::Admin) { roster_after(active, 1).map(|_| ()) } else { Ok(()) }
}

/// Where an admin stands at `now`: a removal whose delay has passed is a removal made (checked
/// lazily, so no worker is needed).
pub fn effective_status(
    status: AdminStatus,
    removal_due_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> AdminStatus {
    match (status, removal_due_at) {
        (AdminStatus::RemovalPending, Some(due)) if now >= due => AdminStatus::Removed,
        _ => status,
    }
}

/// How long a scheduled removal waits before it takes effect (any admin may cancel it meanwhile).
pub const REMOVAL_DELAY: Duration = Duration::hours(24);

/// How long an invitation to a new admin can be redeemed.
pub const INVITATION_TTL: Duration = Duration::hours(1);

/// The changes that need a second admin's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Invite a new admin, or change an admin's role.
    GrantRole,
    RemoveAdmin,
    FatiguePolicy,
    /// Remove every factor of a privileged user.
    ResetPrivilegedFactors,
    /// Lift the push freeze of a user who reported a prompt as "not me".
    UnfreezeQuarantined,
}

impl RequestKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestKind::GrantRole => "grant_role",
            RequestKind::RemoveAdmin => "remove_admin",
            RequestKind::FatiguePolicy => "fatigue_policy",
            RequestKind::ResetPrivilegedFactors => "reset_privileged_factors",
            RequestKind::UnfreezeQuarantined => "unfreeze_quarantined",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            RequestKind::GrantRole,
            RequestKind::RemoveAdmin,
            RequestKind::FatiguePolicy,
            RequestKind::ResetPrivilegedFactors,
            RequestKind::UnfreezeQuarantined,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// Where a four-eyes request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    /// A second admin approved; the change is being made.
    Approved,
    /// The change was made.
    Applied,
    Rejected,
    /// Withdrawn by the admin who asked.
    Cancelled,
    /// Nobody decided in time.
    Expired,
}

impl RequestState {
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Applied => "applied",
            RequestState::Rejected => "rejected",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Applied,
            RequestState::Rejected,
            RequestState::Cancelled,
            RequestState::Expired,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// How long a four-eyes request waits for a decision.
pub const REQUEST_TTL: Duration = Duration::hours(24);

/// Why an admin may not decide a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRefused {
    /// The requester cannot approve or reject their own request (they may cancel it).
    OwnRequest,
    /// Only the `admin` role decides requests.
    Role,
    NotPending,
    Expired,
}

/// Whether `decider` (with `role`) may approve or reject a request in `state`, asked by
/// `requested_by`, expiring at `expires_at`.
pub fn may_decide(
    decider: AdminId,
    role: Role,
    requested_by: AdminId,
    state: RequestState,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), DecisionRefused> {
    if !role.permits(Permission::DecideRequest) {
        return Err(DecisionRefused::Role);
    }
    if decider == requested_by {
        return Err(DecisionRefused::OwnRequest);
    }
    if state != RequestState::Pending {
        return Err(DecisionRefused::NotPending);
    }
    if now >= expires_at {
        return Err(DecisionRefused::Expired);
    }
    Ok(())
}

/// How long an admin WebAuthn ceremony (and its login-ceremony cookie) lives.
pub const CEREMONY_TTL: Duration = Duration::minutes(5);

/// How long a bootstrap token lives unless `--ttl` says otherwise, and the bounds of `--ttl`.
pub const BOOTSTRAP_TTL: Duration = Duration::minutes(15);
pub const BOOTSTRAP_TTL_MIN: Duration = Duration::minutes(1);
pub const BOOTSTRAP_TTL_MAX: Duration = Duration::hours(24);

/// Sign-in refusals that name no admin are audited together, at most one event per window.
pub const UNKNOWN_SIGN_IN_WINDOW: Duration = Duration::minutes(1);

/// The longest admin or passkey name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRefused {
    #[error("a name is required")]
    Empty,
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("a name cannot contain control characters")]
    ControlCharacter,
}

/// An admin's or a passkey's name, trimmed: what people read in lists and the audit trail.
pub fn admin_name(raw: &str) -> Result<String, NameRefused> {
    let name = raw.trim();
    if name.is_empty() {
        Err(NameRefused::Empty)
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(NameRefused::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(NameRefused::ControlCharacter)
    } else {
        Ok(name.to_owned())
    }
}

/// A lifetime as the command line takes it: a number and a unit (`90s`, `15m`, `2h`).
pub fn parse_ttl(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::seconds(seconds))
}

/// Whether a bootstrap token's lifetime is within bounds.
pub fn bootstrap_ttl_allowed(ttl: Duration) -> bool {
    (BOOTSTRAP_TTL_MIN..=BOOTSTRAP_TTL_MAX).contains(&ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_names_are_trimmed_bounded_and_printable() {
        assert_eq!(admin_name("  Alice  "), Ok("Alice".to_owned()));
        assert_eq!(admin_name(" "), Err(NameRefused::Empty));
        assert_eq!(admin_name(&"a".repeat(65)), Err(NameRefused::TooLong));
        assert_eq!(admin_name(&"é".repeat(64)).map(|n| n.chars().count()), Ok(64));
        assert_eq!(admin_name("a\u{7}b"), Err(NameRefused::ControlCharacter));
    }

    #[test]
    fn ttls_are_a_number_and_a_unit() {
        assert_eq!(parse_ttl("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_ttl("90s"), Some(Duration::seconds(90)));
        assert_eq!(parse_ttl("2h"), Some(Duration::hours(2)));
        assert_eq!(parse_ttl("15"), None);
        assert_eq!(parse_ttl("m"), None);
        assert_eq!(parse_ttl("1d"), None);
        assert_eq!(parse_ttl("99999999999999999999h"), None);
    }

    #[test]
    fn bootstrap_ttl_is_bounded() {
        assert!(bootstrap_ttl_allowed(BOOTSTRAP_TTL));
        assert!(!bootstrap_ttl_allowed(Duration::seconds(59)));
        assert!(!bootstrap_ttl_allowed(Duration::hours(25)));
    }
    use time::macros::datetime;

    #[test]
    fn roles_widen_from_auditor_to_admin() {
        use Permission::*;
        for permission in [Read, VerifyAudit] {
            assert!(Role::Auditor.permits(permission));
        }
        for permission in [HelpDesk, SubmitRequest, DecideRequest, Administer] {
            assert!(!Role::Auditor.permits(permission), "{permission:?}");
        }
        assert!(Role::Helpdesk.permits(HelpDesk) && Role::Helpdesk.permits(SubmitRequest));
        assert!(!Role::Helpdesk.permits(DecideRequest) && !Role::Helpdesk.permits(Administer));
        for permission in [Read, VerifyAudit, HelpDesk, SubmitRequest, DecideRequest, Administer] {
            assert!(Role::Admin.permits(permission));
        }
    }

    #[test]
    fn spellings_round_trip() {
        for role in [Role::Auditor, Role::Helpdesk, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for status in
            [AdminStatus::Invited, AdminStatus::Active, AdminStatus::RemovalPending, AdminStatus::Removed]
        {
            assert_eq!(AdminStatus::parse(status.as_str()), Some(status));
        }
        for kind in [
            "grant_role",
            "remove_admin",
            "fatigue_policy",
            "reset_privileged_factors",
            "unfreeze_quarantined",
        ] {
            assert_eq!(RequestKind::parse(kind).map(RequestKind::as_str), Some(kind));
        }
        for state in ["pending", "approved", "applied", "rejected", "cancelled", "expired"] {
            assert_eq!(RequestState::parse(state).map(RequestState::as_str), Some(state));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(RequestKind::parse("delete_everyone"), None);
    }

    #[test]
    fn step_up_actions_are_a_verb_and_perhaps_an_id() {
        let id = crate::ids::AdminRequestId::random();
        let approve = StepUpAction::approve_request(id);
        assert_eq!(StepUpAction::parse(approve.as_str()), Some(approve.clone()));
        assert_eq!(StepUpAction::parse("add_passkey").unwrap().as_str(), "add_passkey");
        for bad in ["", "Approve", "approve request", "add_passkey:", "x:y z", ":id", "a:b:c"] {
            assert_eq!(StepUpAction::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_roster_never_drops_below_two_admins() {
        assert_eq!(roster_after(3, 1), Ok(2));
        assert_eq!(roster_after(2, 1), Err(LastAdmins { left: 1 }));
        assert_eq!(roster_after(2, 0), Ok(2));
        assert_eq!(roster_after(1, 0), Err(LastAdmins { left: 1 }), "a plane of one is already short");
        assert_eq!(roster_after(0, 5), Err(LastAdmins { left: 0 }));
    }

    #[test]
    fn only_demoting_or_removing_an_active_admin_counts_against_the_floor() {
        use AdminStatus::*;
        assert_eq!(roster_change(2, Role::Admin, Active, Some(Role::Helpdesk)), Err(LastAdmins { left: 1 }));
        assert_eq!(roster_change(2, Role::Admin, Active, None), Err(LastAdmins { left: 1 }));
        assert_eq!(roster_change(3, Role::Admin, Active, None), Ok(()));
        assert_eq!(roster_change(2, Role::Admin, Active, Some(Role::Admin)), Ok(()));
        assert_eq!(roster_change(2, Role::Helpdesk, Active, None), Ok(()));
        assert_eq!(roster_change(2, Role::Admin, Invited, None), Ok(()));
        assert_eq!(roster_change(1, Role::Helpdesk, Active, Some(Role::Admin)), Ok(()), "promoting helps");
    }

    #[test]
    fn a_removal_past_its_delay_reads_as_removed() {
        let now = datetime!(2026-12-01 10:00 UTC);
        let due = Some(now + REMOVAL_DELAY);
        assert_eq!(effective_status(AdminStatus::RemovalPending, due, now), AdminStatus::RemovalPending);
        assert_eq!(
            effective_status(AdminStatus::RemovalPending, due, now + REMOVAL_DELAY),
            AdminStatus::Removed
        );
        assert_eq!(effective_status(AdminStatus::Active, None, now), AdminStatus::Active);
    }

    #[test]
    fn only_another_admin_decides_a_pending_unexpired_request() {
        let (a, b) = (AdminId::random(), AdminId::random());
        let now = datetime!(2026-12-01 10:00 UTC);
        let later = now + REQUEST_TTL;
        let pending = RequestState::Pending;
        assert_eq!(may_decide(b, Role::Admin, a, pending, later, now), Ok(()));
        assert_eq!(may_decide(a, Role::Admin, a, pending, later, now), Err(DecisionRefused::OwnRequest));
        assert_eq!(may_decide(b, Role::Helpdesk, a, pending, later, now), Err(DecisionRefused::Role));
        assert_eq!(may_decide(b, Role::Auditor, a, pending, later, now), Err(DecisionRefused::Role));
        assert_eq!(
            may_decide(b, Role::Admin, a, RequestState::Approved, later, now),
            Err(DecisionRefused::NotPending)
        );
        assert_eq!(may_decide(b, Role::Admin, a, pending, now, now), Err(DecisionRefused::Expired));
    }
}
