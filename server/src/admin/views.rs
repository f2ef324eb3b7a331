//! What the dashboard's reads answer (the API's JSON bodies, which the pages render): views of
//! records, never the records themselves, so nothing secret (a key hash, the challenge number)
//! can leak by a new field.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::fatigue::report::PushStanding;

/// Times in every view: RFC 3339.
mod rfc3339 {
    pub use time::serde::rfc3339::{option, serialize};
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverviewView {
    /// Worst first, at most 50.
    pub under_attack: Vec<AttackedUser>,
    pub charts: Charts,
    /// Push jobs of the last 24 h per provider.
    pub push_health: Vec<ProviderHealthView>,
    /// The newest alerts, newest first.
    pub alerts: Vec<AlertView>,
    /// The newest alert's id (0 for none): the live feed's `after=`.
    pub newest_alert_id: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttackedUser {
    pub username: String,
    pub score: i64,
    pub standing: PushStanding,
    /// Where the user's newest prompt came from.
    pub last_source: Option<Source>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Source {
    pub app_name: String,
    pub ip: String,
    pub location: Option<String>,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Charts {
    /// The start of the charted span (24 h before `computed_at`).
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub computed_at: OffsetDateTime,
    /// Minutes with prompts or refusals, oldest first (absent minutes had neither).
    pub prompts_per_minute: Vec<MinuteCount>,
    /// Most first.
    pub refusals_by_reason: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinuteCount {
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub minute: OffsetDateTime,
    pub prompts: i64,
    pub refused: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReasonCount {
    pub reason: String,
    pub refusals: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderHealthView {
    pub provider: String,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub dropped: i64,
    /// The newest error (a provider status and reason code).
    pub last_error: Option<String>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    /// Increasing: the feed's cursor (`after=`, `Last-Event-ID`).
    pub id: i64,
    pub kind: String,
    /// As stored: `user:<id>`, `app:<id>`, …
    pub subject: String,
    /// The user the subject names, when it names one that still exists.
    pub username: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertsPage {
    /// Oldest first.
    pub alerts: Vec<AlertView>,
    /// Pass as `after=` for the next page (the last id here, or the one asked for).
    pub next_after: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserRow>,
    /// Pass as `after=` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserRow {
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    /// `available`, `frozen` or `locked`.
    pub push: String,
    pub needs_admin_review: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPage {
    pub username: String,
    pub display_name: Option<String>,
    pub is_privileged: bool,
    pub standing: PushStanding,
    /// The standing in words, one reason a line.
    pub why: Vec<String>,
    pub devices: Vec<DeviceView>,
    pub passkeys: Vec<PasskeyView>,
    /// Newest first, one page.
    pub timeline: Vec<TimelineItem>,
    /// Pass as `before=` for older prompts; absent on the last page.
    pub next_before: Option<String>,
    /// The newest prompts the defence refused before any reached the phone, newest first.
    pub refused: Vec<RefusedPrompt>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub push_provider: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub backed_up: bool,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// One prompt: who asked, from where, what became of it. Never the number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineItem {
    pub challenge_id: String,
    /// `push` or `passkey`.
    pub factor: &'static str,
    /// The app that asked.
    pub app_name: String,
    pub ip: String,
    pub user_agent: String,
    pub location: Option<String>,
    /// `matched` or `wrong_number` once the user typed one.
    pub number: Option<&'static str>,
    pub seconds_to_decide: Option<f64>,
    /// The challenge's state: `approved`, `denied`, `expired`, …
    pub outcome: String,
    pub silent: bool,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefusedPrompt {
    pub app_name: String,
    pub ip: String,
    /// `budget_exhausted`, `frozen`, `hard_locked`, `source_throttled`, …
    pub reason: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    /// Pass as `before=` for older events; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// An app as the admin list shows it (never its key: only the key's public id).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppView {
    pub name: String,
    /// The key's public id (the key itself was shown once, at creation).
    pub key_id: String,
    /// Space-separated.
    pub scopes: String,
    /// Made for an OIDC client or a Keycloak realm to act as in the challenge machinery: it has
    /// no scopes and nobody holds its key.
    pub keyless: bool,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// An OIDC client as the admin list shows it (never a secret: only hashes are stored).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: &'static str,
    pub id_token_alg: &'static str,
    /// May ask for decoupled sign-ins (CIBA).
    pub ciba: bool,
    pub created_by: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}
