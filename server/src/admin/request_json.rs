//! The JSON shapes of the four-eyes API: what each kind of request asks for (its payload) and
//! how requests, approvals and admins are shown.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::model::{self, AdminStatus, RequestKind, RequestState, Role};
use crate::ids::{AdminId, AdminRequestId};
use crate::store::{AdminRecord, AdminRequestRecord};

/// `grant_role`: an existing admin's new role (`admin_id`), or a new admin (`name`) invited
/// with `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_id: Option<AdminId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: Role,
}

/// `remove_admin`: the admin to remove (softly, after a delay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveAdmin {
    pub admin_id: AdminId,
}

/// `unfreeze_quarantined` and `reset_privileged_factors`: the user concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForUser {
    pub username: String,
}

/// What a request asks for, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestPayload {
    GrantRole(GrantRole),
    RemoveAdmin(RemoveAdmin),
    UnfreezeQuarantined(ForUser),
    ResetPrivilegedFactors(ForUser),
    /// The whole new policy (unknown fields refused).
    FatiguePolicy(crate::fatigue::model::Policy),
}

impl RequestPayload {
    pub fn kind(&self) -> RequestKind {
        match self {
            RequestPayload::GrantRole(_) => RequestKind::GrantRole,
            RequestPayload::RemoveAdmin(_) => RequestKind::RemoveAdmin,
            RequestPayload::UnfreezeQuarantined(_) => RequestKind::UnfreezeQuarantined,
            RequestPayload::ResetPrivilegedFactors(_) => RequestKind::ResetPrivilegedFactors,
            RequestPayload::FatiguePolicy(_) => RequestKind::FatiguePolicy,
        }
    }

    /// The typed payload of `kind` from its JSON.
    pub fn parse(kind: RequestKind, payload: Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            RequestKind::GrantRole => RequestPayload::GrantRole(serde_json::from_value(payload)?),
            RequestKind::RemoveAdmin => RequestPayload::RemoveAdmin(serde_json::from_value(payload)?),
            RequestKind::UnfreezeQuarantined => {
                RequestPayload::UnfreezeQuarantined(serde_json::from_value(payload)?)
            }
            RequestKind::ResetPrivilegedFactors => {
                RequestPayload::ResetPrivilegedFactors(serde_json::from_value(payload)?)
            }
            RequestKind::FatiguePolicy => RequestPayload::FatiguePolicy(serde_json::from_value(payload)?),
        })
    }

    pub fn to_json(&self) -> Value {
        let value = match self {
            RequestPayload::GrantRole(p) => serde_json::to_value(p),
            RequestPayload::RemoveAdmin(p) => serde_json::to_value(p),
            RequestPayload::UnfreezeQuarantined(p) | RequestPayload::ResetPrivilegedFactors(p) => {
                serde_json::to_value(p)
            }
            RequestPayload::FatiguePolicy(p) => serde_json::to_value(p),
        };
        value.unwrap_or(Value::Null)
    }
}

/// A request as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub id: AdminRequestId,
    pub kind: RequestKind,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub state: RequestState,
    pub requested_by: AdminId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub decided_by: Option<AdminId>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub applied_at: Option<OffsetDateTime>,
    /// What applying the change did, or why it could not be made.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

impl From<&AdminRequestRecord> for RequestView {
    fn from(r: &AdminRequestRecord) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            payload: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            state: r.state,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            expires_at: r.expires_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            applied_at: r.applied_at,
            result: r.result.as_deref().and_then(|text| serde_json::from_str(text).ok()),
        }
    }
}

/// The one-time invitation of an approved new admin: shown once, to the approver, never stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub admin_id: AdminId,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// What an approval did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    pub request: RequestView,
    /// Only for a `grant_role` that invited a new admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<InvitationView>,
}

/// An admin as the admin API lists them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminView {
    pub id: AdminId,
    pub name: String,
    pub role: Role,
    pub status: AdminStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub removal_due_at: Option<OffsetDateTime>,
}

pub(super) fn admin_view(a: &AdminRecord, now: OffsetDateTime) -> AdminView {
    AdminView {
        id: a.id,
        name: a.name.clone(),
        role: a.role,
        status: model::effective_status(a.status, a.removal_due_at, now),
        created_at: a.created_at,
        removal_due_at: a.removal_due_at,
    }
}
