//! What the dashboard shows: the overview (users under attack, prompt charts, push health, the
//! latest alerts), the user list and a user's page, the audit viewer and the alerts after a
//! cursor. The API (`admin/http/dashboard.rs`) and the pages (`admin/http/pages.rs`) both call
//! these functions and only render what they return.
//!
//! Reads only. The challenge number never appears: a timeline row says "matched" or "wrong
//! number" ([`NumberMatch`]). Every list pages by keyset; the charts (the only aggregate over
//! 24 hours of prompts) are cached for 30 s per instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

pub use super::views::{
    AlertView, AlertsPage, AppView, AttackedUser, AuditEventView, AuditPage, Charts, ClientView, DeviceView,
    MinuteCount, OverviewView, PasskeyView, ProviderHealthView, ReasonCount, RefusedPrompt, Source,
    TimelineItem, UserList, UserPage, UserRow,
};
use crate::audit::chain::StoredEvent;
use crate::audit::{Action, Subject};
use crate::clock::{Clock, from_unix_micros};
use crate::fatigue::policy::PolicyHandle;
use crate::fatigue::report::{self, PushStanding};
use crate::ids::{ChallengeId, UserId};
use crate::store::{
    AlertRecord, AuditFilter, NumberMatch, Store, StoreError, TimelineCursor, TimelineRow, UserRecord,
};

/// Rows per page of every list.
pub const PAGE_LEN: u32 = 50;
/// At most this many users in the overview's under-attack table.
const UNDER_ATTACK_SHOWN: usize = 50;
/// How far back the overview's charts and push health reach.
const CHART_SPAN: Duration = Duration::hours(24);
/// How long one instance reuses the charts it computed.
const CHART_CACHE: Duration = Duration::seconds(30);
/// Alerts in the overview's list.
const LATEST_ALERTS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("no such user")]
    UserNotFound,
    /// A query parameter does not parse or is out of range.
    #[error("{0}")]
    Invalid(String),
    #[error("this session has as many live streams open as it may; close one first")]
    TooManyStreams,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The audit viewer's question, as the query string asks it.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// A username whose events (subject `user:<id>`) are wanted; combined with `filter`.
    pub user: Option<String>,
    pub before_seq: Option<i64>,
}

#[derive(Debug)]
pub struct Dashboard {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: PolicyHandle,
    charts: Mutex<Option<Charts>>,
    /// Push health with when it was computed: an aggregate over an hour of the outbox, cached
    /// like the charts.
    push_health: Mutex<Option<(OffsetDateTime, Vec<ProviderHealthView>)>>,
}

impl Dashboard {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: PolicyHandle) -> Self {
        Self { store, clock, policy, charts: Mutex::new(None), push_health: Mutex::new(None) }
    }

    pub async fn overview(&self) -> Result<OverviewView, DashboardError> {
        let now = self.clock.now();
        let under_attack = self.under_attack(now).await?;
        let charts = self.charts(now).await?;
        let push_health = self.push_health(now).await?;
        let newest = self.store.newest_alert_id().await?;
        let after = (newest - i64::from(LATEST_ALERTS)).max(0);
        let mut alerts = self.alerts_after(after, LATEST_ALERTS).await?.alerts;
        alerts.reverse();
        Ok(OverviewView { under_attack, charts, push_health, alerts, newest_alert_id: newest })
    }

    /// Push delivery health per provider, computed at most once per [`CHART_CACHE`].
    async fn push_health(&self, now: OffsetDateTime) -> Result<Vec<ProviderHealthView>, DashboardError> {
        let cached = self.push_health.lock().ok().and_then(|cache| {
            cache.as_ref().filter(|(at, _)| now >= *at && now - *at < CHART_CACHE).map(|(_, h)| h.clone())
        });
        if let Some(health) = cached {
            return Ok(health);
        }
        let health: Vec<ProviderHealthView> = self
            .store
            .push_health(now - CHART_SPAN)
            .await?
            .into_iter()
            .map(|h| ProviderHealthView {
                last_error_at: h.last_error.as_ref().map(|(_, at)| *at),
                last_error: h.last_error.map(|(error, _)| error),
                provider: h.provider,
                queued: h.queued,
                sent: h.sent,
                failed: h.failed,
                dropped: h.dropped,
            })
            .collect();
        if let Ok(mut cache) = self.push_health.lock() {
            *cache = Some((now, health.clone()));
        }
        Ok(health)
    }

    /// Users whose standing is not clean, worst first, each with where its newest prompt came
    /// from (one indexed read per user shown).
    async fn under_attack(&self, now: OffsetDateTime) -> Result<Vec<AttackedUser>, DashboardError> {
        let troubled = self.store.troubled_users(200).await?;
        let ids: HashMap<String, UserId> = troubled.iter().map(|(u, _)| (u.username.clone(), u.id)).collect();
        let mut shown = Vec::new();
        for user in
            report::worst_first(troubled, now, &self.policy.current()).into_iter().take(UNDER_ATTACK_SHOWN)
        {
            let last_source = match ids.get(&user.username) {
                Some(id) => self.store.user_timeline(*id, None, 1).await?.into_iter().next().map(|row| {
                    Source { app_name: row.app_name, ip: row.ip, location: row.location, at: row.created_at }
                }),
                None => None,
            };
            shown.push(AttackedUser {
                username: user.username,
                score: user.score,
                standing: user.standing,
                last_source,
            });
        }
        Ok(shown)
    }

    /// The 24-hour charts, computed at most once per [`CHART_CACHE`] on this instance.
    async fn charts(&self, now: OffsetDateTime) -> Result<Charts, DashboardError> {
        if let Some(cached) = self.cached_charts(now) {
            return Ok(cached);
        }
        // Refusals are counted from chained audit events: chain what is pending first.
        if let Err(error) = crate::audit::flush(self.store.as_ref()).await {
            tracing::warn!(%error, "audit chaining failed before counting refusals");
        }
        let since = now - CHART_SPAN;
        let prompts = self.store.prompts_per_minute(since).await?;
        let refusals = self.store.refusals_by_reason(since).await?;
        let charts = Charts {
            since,
            computed_at: now,
            prompts_per_minute: prompts
                .into_iter()
                .map(|b| MinuteCount { minute: b.minute, prompts: b.prompts, refused: b.refused })
                .collect(),
            refusals_by_reason: refusals
                .into_iter()
                .map(|r| ReasonCount { reason: r.reason, refusals: r.refusals })
                .collect(),
        };
        if let Ok(mut cache) = self.charts.lock() {
            *cache = Some(charts.clone());
        }
        Ok(charts)
    }

    fn cached_charts(&self, now: OffsetDateTime) -> Option<Charts> {
        let cache = self.charts.lock().ok()?;
        cache.as_ref().filter(|c| now >= c.computed_at && now - c.computed_at < CHART_CACHE).cloned()
    }

    /// Alerts with an id above `after`, oldest first, subjects resolved to usernames.
    pub async fn alerts_after(&self, after: i64, limit: u32) -> Result<AlertsPage, DashboardError> {
        if after < 0 {
            return Err(DashboardError::Invalid("after must be an alert id (0 or more)".into()));
        }
        let records = self.store.alerts_after(after, limit.min(PAGE_LEN)).await?;
        let next_after = records.last().map_or(after, |a| a.id);
        let mut names: HashMap<String, Option<String>> = HashMap::new();
        let mut alerts = Vec::with_capacity(records.len());
        for record in records {
            let username = match names.get(&record.subject) {
                Some(known) => known.clone(),
                None => {
                    let found = self.username_of(&record.subject).await?;
                    names.insert(record.subject.clone(), found.clone());
                    found
                }
            };
            alerts.push(alert_view(record, username));
        }
        Ok(AlertsPage { alerts, next_after })
    }

    /// The id of the newest alert (0 when there is none): where a new live stream starts.
    pub async fn newest_alert_id(&self) -> Result<i64, DashboardError> {
        Ok(self.store.newest_alert_id().await?)
    }

    async fn username_of(&self, subject: &str) -> Result<Option<String>, StoreError> {
        let Some(id) = subject.strip_prefix("user:").and_then(|id| id.parse::<uuid::Uuid>().ok()) else {
            return Ok(None);
        };
        Ok(self.store.user_by_id(UserId(id)).await?.map(|u| u.username))
    }

    /// Live users whose username starts with `prefix`, after `after`, by username.
    pub async fn users(&self, prefix: &str, after: Option<&str>) -> Result<UserList, DashboardError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() > 256 || after.is_some_and(|a| a.len() > 256) {
            return Err(DashboardError::Invalid("q and after are usernames (at most 256 characters)".into()));
        }
        let listed = self.store.search_users(&prefix, after, PAGE_LEN + 1).await?;
        let more = listed.len() > PAGE_LEN as usize;
        let now = self.clock.now();
        let users: Vec<UserRow> = listed
            .into_iter()
            .take(PAGE_LEN as usize)
            .map(|l| {
                let standing = report::standing(&l.push, now, &self.policy.current());
                UserRow {
                    username: l.user.username,
                    display_name: l.user.display_name,
                    is_privileged: l.user.is_privileged,
                    push: standing.push,
                    needs_admin_review: standing.needs_admin_review,
                }
            })
            .collect();
        let next_after = if more { users.last().map(|u| u.username.clone()) } else { None };
        Ok(UserList { users, next_after })
    }

    /// A user's page: standing and why, factors, one timeline page older than `before` (a
    /// cursor from `next_before`), and the newest refused prompts.
    pub async fn user(&self, username: &str, before: Option<&str>) -> Result<UserPage, DashboardError> {
        let cursor = before.map(parse_cursor).transpose()?;
        let user = self.find_user(username).await?;
        let push = self.store.push_state(user.id).await?;
        let standing = report::standing(&push, self.clock.now(), &self.policy.current());
        let rows = self.store.user_timeline(user.id, cursor, PAGE_LEN + 1).await?;
        let more = rows.len() > PAGE_LEN as usize;
        let rows: Vec<TimelineRow> = rows.into_iter().take(PAGE_LEN as usize).collect();
        let next_before = if more { rows.last().map(|r| format_cursor(r.cursor())) } else { None };
        let devices = self.store.devices_for_user(user.id).await?;
        let passkeys = self.store.passkeys_for_user(user.id).await?;
        // Refused prompts never became challenges; the audit trail has them once chained.
        if let Err(error) = crate::audit::flush(self.store.as_ref()).await {
            tracing::warn!(%error, "audit chaining failed before reading refused prompts");
        }
        let refused =
            self.store.audit_events_about(&Subject::User(user.id), Action::PromptRefused, PAGE_LEN).await?;
        Ok(UserPage {
            why: why(&standing),
            username: user.username,
            display_name: user.display_name,
            is_privileged: user.is_privileged,
            standing,
            devices: devices
                .into_iter()
                .map(|d| DeviceView {
                    id: d.id.to_string(),
                    name: d.name,
                    platform: d.platform,
                    push_provider: d.push.provider,
                    created_at: d.created_at,
                    revoked_at: d.revoked_at,
                })
                .collect(),
            passkeys: passkeys
                .into_iter()
                .map(|p| PasskeyView {
                    id: p.id.to_string(),
                    name: p.name,
                    backed_up: p.backed_up,
                    created_at: p.created_at,
                    last_used_at: p.last_used_at,
                    revoked_at: p.revoked_at,
                })
                .collect(),
            timeline: rows.into_iter().map(timeline_item).collect(),
            next_before,
            refused: refused.iter().filter_map(refused_prompt).collect(),
        })
    }

    async fn find_user(&self, username: &str) -> Result<UserRecord, DashboardError> {
        crate::users::service::find_user(self.store.as_ref(), username).await.map_err(|e| match e {
            crate::users::service::UserError::Store(e) => DashboardError::Store(e),
            _ => DashboardError::UserNotFound,
        })
    }

    /// Every app, revoked ones included, by name; keyless apps labelled.
    pub async fn apps(&self) -> Result<Vec<AppView>, DashboardError> {
        Ok(self
            .store
            .list_apps()
            .await?
            .into_iter()
            .map(|app| AppView {
                keyless: app.scopes.is_empty(),
                scopes: app.scopes.to_string(),
                name: app.name,
                key_id: app.key_id,
                created_at: app.created_at,
                revoked_at: app.revoked_at,
            })
            .collect())
    }

    /// Every OIDC client, revoked ones included.
    pub async fn clients(&self) -> Result<Vec<ClientView>, DashboardError> {
        let clients =
            crate::oidc::client_admin::list_clients(self.store.as_ref()).await.map_err(|e| match e {
                crate::oidc::client_admin::ClientAdminError::Store(e) => DashboardError::Store(e),
                // Listing fails only on the store.
                other => DashboardError::Store(StoreError::Corrupt(other.to_string())),
            })?;
        Ok(clients
            .into_iter()
            .map(|c| ClientView {
                client_id: c.client_id.to_string(),
                name: c.name,
                redirect_uris: c.redirect_uris,
                auth_method: c.auth_method.as_str(),
                id_token_alg: c.id_token_alg.as_str(),
                ciba: c.ciba.is_some(),
                created_by: c.created_by,
                created_at: c.created_at,
                revoked_at: c.revoked_at,
            })
            .collect())
    }

    /// Chained audit events matching `query`, newest first, one page below `before_seq`.
    pub async fn audit(&self, query: AuditQuery) -> Result<AuditPage, DashboardError> {
        let AuditQuery { mut filter, user, before_seq } = query;
        if before_seq.is_some_and(|seq| seq < 1) {
            return Err(DashboardError::Invalid(
                "before must be an event sequence number (1 or more)".into(),
            ));
        }
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from >= to
        {
            return Err(DashboardError::Invalid("from must be before to".into()));
        }
        if let Some(username) = user.filter(|u| !u.trim().is_empty()) {
            let user = self.find_user(&username).await?;
            let subject = Subject::User(user.id).to_string();
            if filter.subject.as_ref().is_some_and(|s| *s != subject) {
                return Ok(AuditPage { events: Vec::new(), next_before: None });
            }
            filter.subject = Some(subject);
        }
        if before_seq.is_none()
            && let Err(error) = crate::audit::flush(self.store.as_ref()).await
        {
            tracing::warn!(%error, "audit chaining failed before the audit search");
        }
        let events = self.store.audit_search(&filter, before_seq, PAGE_LEN + 1).await?;
        let more = events.len() > PAGE_LEN as usize;
        let events: Vec<AuditEventView> =
            events.into_iter().take(PAGE_LEN as usize).filter_map(audit_event_view).collect();
        let next_before = if more { events.last().map(|e| e.seq) } else { None };
        Ok(AuditPage { events, next_before })
    }
}

/// The standing in words, for people.
fn why(standing: &PushStanding) -> Vec<String> {
    let mut lines = Vec::new();
    if standing.needs_admin_review {
        lines.push("held for admin review (a \"not me\" report or a hard lock)".to_owned());
    }
    if standing.push == "locked" {
        lines.push("push is hard-locked".to_owned());
    }
    if let Some(until) = standing.frozen_until {
        lines.push(format!("frozen until {}", crate::http::page::shown_time(until).1));
    }
    if let Some(reason) = &standing.reason {
        lines.push(format!("reason: {reason}"));
    }
    if standing.under_attack {
        lines.push(format!("under attack: {} prompts refused in this incident", standing.refused_prompts));
    }
    if standing.consecutive_failures > 0 {
        lines.push(format!("{} failed prompts in a row", standing.consecutive_failures));
    }
    if standing.unanswered_in_a_row > 0 {
        lines.push(format!("{} unanswered prompts in a row", standing.unanswered_in_a_row));
    }
    if standing.needs_strong_factor {
        lines.push("push returns after a passkey sign-in".to_owned());
    }
    if lines.is_empty() {
        lines.push("push is available; nothing unusual".to_owned());
    }
    lines
}

fn alert_view(record: AlertRecord, username: Option<String>) -> AlertView {
    AlertView {
        id: record.id,
        kind: record.kind,
        subject: record.subject,
        username,
        details: serde_json::from_str(&record.details).unwrap_or(serde_json::Value::String(record.details)),
        created_at: record.created_at,
    }
}

fn timeline_item(row: TimelineRow) -> TimelineItem {
    TimelineItem {
        number: row.number_match().map(|m| match m {
            NumberMatch::Matched => "matched",
            NumberMatch::WrongNumber => "wrong_number",
        }),
        seconds_to_decide: row.seconds_to_decide(),
        challenge_id: row.challenge_id.to_string(),
        factor: if row.is_push { "push" } else { "passkey" },
        outcome: row.state.as_str().to_owned(),
        app_name: row.app_name,
        ip: row.ip,
        user_agent: row.user_agent,
        location: row.location,
        silent: row.silent,
        created_at: row.created_at,
    }
}

fn refused_prompt(event: &StoredEvent) -> Option<RefusedPrompt> {
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
    let text = |key: &str| details[key].as_str().unwrap_or_default().to_owned();
    Some(RefusedPrompt {
        app_name: text("app_name"),
        ip: text("ip"),
        reason: text("reason"),
        at: from_unix_micros(event.occurred_at_micros)?,
    })
}

fn audit_event_view(event: StoredEvent) -> Option<AuditEventView> {
    Some(AuditEventView {
        occurred_at: from_unix_micros(event.occurred_at_micros)?,
        details: serde_json::from_str(&event.details).unwrap_or(serde_json::Value::String(event.details)),
        seq: event.seq,
        actor: event.actor,
        action: event.action,
        subject: event.subject,
    })
}

/// A time as the audit viewer's `from`/`to` give it: RFC 3339, or a form's
/// `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD`, both read as UTC.
pub fn parse_time(text: &str, name: &str) -> Result<OffsetDateTime, DashboardError> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(text, &seconds)
        .or_else(|_| time::PrimitiveDateTime::parse(text, &minutes))
        .or_else(|_| {
            time::Date::parse(text, format_description!("[year]-[month]-[day]")).map(|d| d.midnight())
        });
    local.map(|at| at.assume_utc()).map_err(|_| {
        DashboardError::Invalid(format!("{name} must be a time (RFC 3339, YYYY-MM-DDTHH:MM or YYYY-MM-DD)"))
    })
}

/// A timeline cursor as `before=` carries it: `<unix micros>.<challenge id>`.
fn format_cursor(cursor: TimelineCursor) -> String {
    format!("{}.{}", cursor.created_at.unix_timestamp_nanos() / 1000, cursor.id)
}

fn parse_cursor(text: &str) -> Result<TimelineCursor, DashboardError> {
    let invalid = || DashboardError::Invalid("before must be a cursor from next_before".into());
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let created_at = from_unix_micros(micros).ok_or_else(invalid)?;
    let id: uuid::Uuid = id.parse().map_err(|_| invalid())?;
    Ok(TimelineCursor { created_at, id: ChallengeId(id) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timeline_cursors_round_trip_and_garbage_is_refused() {
        let cursor = TimelineCursor {
            created_at: datetime!(2026-12-01 04:05:06.123456 UTC),
            id: ChallengeId(uuid::Uuid::new_v4()),
        };
        assert_eq!(parse_cursor(&format_cursor(cursor)).unwrap(), cursor);
        for bad in [
            "",
            "x",
            "12.",
            ".abc",
            "1.not-a-uuid",
            "99999999999999999999.00000000-0000-4000-8000-000000000000",
        ] {
            assert!(matches!(parse_cursor(bad), Err(DashboardError::Invalid(_))), "{bad}");
        }
    }
}
