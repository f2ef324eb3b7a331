//! The admin dashboard's reads: the alert feed, the per-minute prompt chart, refusals by reason,
//! push delivery health, the user list, audit search and a user's prompt timeline.
//!
//! Read-only and built for big tables (100,000 users, 1,000,000 challenges): every list pages by
//! keyset (never `OFFSET`), nothing counts a whole table, and each query has an index
//! (migration 0022 says which serves which). Only the chart's per-minute bucketing and the JSON
//! access in refusals differ between the engines.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::codec::{Columns, Sql, qualified};
use super::fatigue::{PUSH_STATE_COLUMNS, push_state_from_row};
use super::users::{USER_COLUMNS, user_from_row};
use super::{AlertRecord, StoreError, UserRecord};
use crate::audit::chain::StoredEvent;
use crate::challenges::model::ChallengeState;
use crate::fatigue::model::PushState;
use crate::ids::{ChallengeId, DeviceId, UserId};

/// Prompts created and refused in one minute of the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBucket {
    /// The start of the minute (UTC).
    pub minute: OffsetDateTime,
    /// Push prompts created (passkey sign-ins are no prompts).
    pub prompts: i64,
    /// Prompts the defence refused before any was created (`fatigue.prompt_refused`).
    pub refused: i64,
}

/// How many prompts were refused for one reason (`budget_exhausted`, `frozen`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalCount {
    /// Empty when the event carried no reason.
    pub reason: String,
    pub refusals: i64,
}

/// Push deliveries of one provider, by outbox state, and its newest error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderHealth {
    /// The device's provider as stored now: `apns`, `fcm`, or `none` once a dead token was
    /// disabled (its failed jobs are counted there).
    pub provider: String,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub dropped: i64,
    /// The newest `last_error` (a provider status and reason code, never a token) and when.
    pub last_error: Option<(String, OffsetDateTime)>,
}

/// A user in the admin list, with the push standing it shows (frozen, quarantined, locked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    pub user: UserRecord,
    /// Default when nothing ever happened to the user's push standing.
    pub push: PushState,
}

/// What the audit viewer searches by; absent fields do not filter. `subject`, `actor` and
/// `action` are the stored spellings (`user:<id>`, `admin:<id>`, `fatigue.prompt_refused`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Events at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Events before this time.
    pub to: Option<OffsetDateTime>,
}

/// Where a timeline page starts: strictly older than this challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineCursor {
    pub created_at: OffsetDateTime,
    pub id: ChallengeId,
}

/// Whether the user typed the number shown: the admin timeline says this, never the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberMatch {
    Matched,
    WrongNumber,
}

/// One challenge of a user's prompt timeline. Deliberately without the number or anything
/// derived from it (`number_tag`, `number_sealed` are never read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    pub challenge_id: ChallengeId,
    pub state: ChallengeState,
    /// A number-matching push prompt; `false` for a passkey sign-in.
    pub is_push: bool,
    pub app_name: String,
    pub ip: String,
    pub user_agent: String,
    pub location: Option<String>,
    pub silent: bool,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by_device: Option<DeviceId>,
}

impl TimelineRow {
    /// Seconds from prompt to answer, when answered.
    pub fn seconds_to_decide(&self) -> Option<f64> {
        self.decided_at
            .filter(|_| self.state != ChallengeState::Pending)
            .map(|d| (d - self.created_at).as_seconds_f64())
    }

    /// Matched or wrong number, for push prompts the user answered with a number.
    pub fn number_match(&self) -> Option<NumberMatch> {
        match self.state {
            _ if !self.is_push => None,
            ChallengeState::Approved | ChallengeState::Redeemed => Some(NumberMatch::Matched),
            ChallengeState::DeniedWrongNumber => Some(NumberMatch::WrongNumber),
            _ => None,
        }
    }

    /// The cursor of the page after this row.
    pub fn cursor(&self) -> TimelineCursor {
        TimelineCursor { created_at: self.created_at, id: self.challenge_id }
    }
}

pub(super) fn timeline_row_from_row<R: Columns>(row: &R) -> Result<TimelineRow, StoreError> {
    let state: String = row.value("state")?;
    let digits: i16 = row.value("number_digits")?;
    Ok(TimelineRow {
        challenge_id: ChallengeId(row.id("id")?),
        state: state.parse().map_err(StoreError::Corrupt)?,
        is_push: digits > 0,
        app_name: row.value("app_name")?,
        ip: row.value("ip")?,
        user_agent: row.value("user_agent")?,
        location: row.value("location")?,
        silent: row.value("is_silent")?,
        created_at: row.time("created_at")?,
        decided_at: row.optional_time("decided_at")?,
        decided_by_device: row.optional_id("decided_by_device")?.map(DeviceId),
    })
}

pub(super) fn user_listing_from_row<R: Columns>(row: &R) -> Result<UserListing, StoreError> {
    let has_standing = row.optional_id("standing_of")?.is_some();
    let push = if has_standing { push_state_from_row(row)? } else { PushState::default() };
    Ok(UserListing { user: user_from_row(row)?, push })
}

/// A `(minute, n)` row of a per-minute count.
pub(super) fn minute_count_from_row<R: Columns>(row: &R) -> Result<(OffsetDateTime, i64), StoreError> {
    Ok((row.time("minute")?, row.value("n")?))
}

pub(super) fn refusal_count_from_row<R: Columns>(row: &R) -> Result<RefusalCount, StoreError> {
    Ok(RefusalCount { reason: row.value("reason")?, refusals: row.value("n")? })
}

/// A [`PUSH_HEALTH_COUNTS`] row: provider, state, jobs.
pub(super) fn push_count_from_row<R: Columns>(row: &R) -> Result<(String, String, i64), StoreError> {
    Ok((row.value("provider")?, row.value("state")?, row.value("jobs")?))
}

/// A [`NEWEST_PUSH_ERROR`] row.
pub(super) fn push_error_from_row<R: Columns>(row: &R) -> Result<(String, OffsetDateTime), StoreError> {
    Ok((row.value("last_error")?, row.time("updated_at")?))
}

/// The per-minute counts of prompts and of refusals merged into one bucket per minute, oldest
/// first (each input is one engine query's `(minute, count)` rows).
pub(super) fn merge_buckets(
    prompts: Vec<(OffsetDateTime, i64)>,
    refused: Vec<(OffsetDateTime, i64)>,
) -> Vec<PromptBucket> {
    let mut by_minute = std::collections::BTreeMap::<OffsetDateTime, PromptBucket>::new();
    let empty = |minute| PromptBucket { minute, prompts: 0, refused: 0 };
    for (minute, n) in prompts {
        by_minute.entry(minute).or_insert_with(|| empty(minute)).prompts += n;
    }
    for (minute, n) in refused {
        by_minute.entry(minute).or_insert_with(|| empty(minute)).refused += n;
    }
    by_minute.into_values().collect()
}

/// The outbox counts `(provider, state, jobs)` folded into one entry per provider, by name.
pub(super) fn fold_push_health(counts: Vec<(String, String, i64)>) -> Vec<ProviderHealth> {
    let mut providers: Vec<ProviderHealth> = Vec::new();
    for (provider, state, jobs) in counts {
        let index = match providers.iter().position(|p| p.provider == provider) {
            Some(index) => index,
            None => {
                providers.push(ProviderHealth { provider, ..ProviderHealth::default() });
                providers.len() - 1
            }
        };
        let health = &mut providers[index];
        match state.as_str() {
            "queued" => health.queued += jobs,
            "sent" => health.sent += jobs,
            "failed" => health.failed += jobs,
            _ => health.dropped += jobs,
        }
    }
    providers.sort_by(|a, b| a.provider.cmp(&b.provider));
    providers
}

/// The smallest string above every string that starts with `prefix` (in code point order,
/// which is the byte order of UTF-8 both engines compare by); `None` when nothing is above
/// them (an empty prefix).
pub(super) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A value [`audit_search_sql`] binds, in placeholder order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuditBind<'a> {
    Seq(i64),
    Text(&'a str),
    Time(OffsetDateTime),
    Limit(i64),
}

/// The audit search statement for `filter` and its binds: only the filters present become
/// conditions (a `$n IS NULL OR …` would keep either engine from using the index that serves
/// the filter), newest first below `before_seq`.
pub(super) fn audit_search_sql<'a>(
    filter: &'a AuditFilter,
    before_seq: Option<i64>,
    limit: u32,
) -> (String, Vec<AuditBind<'a>>) {
    let mut binds = vec![AuditBind::Seq(before_seq.unwrap_or(i64::MAX))];
    let mut conditions = vec!["seq < $1".to_owned()];
    let mut add = |condition: &str, bind: AuditBind<'a>| {
        binds.push(bind);
        conditions.push(format!("{condition} ${}", binds.len()));
    };
    let texts = [("subject =", &filter.subject), ("actor =", &filter.actor), ("action =", &filter.action)];
    for (condition, value) in texts {
        if let Some(value) = value {
            add(condition, AuditBind::Text(value));
        }
    }
    if let Some(from) = filter.from {
        add("occurred_at >=", AuditBind::Time(from));
    }
    if let Some(to) = filter.to {
        add("occurred_at <", AuditBind::Time(to));
    }
    binds.push(AuditBind::Limit(i64::from(limit)));
    let sql = format!(
        "SELECT {} FROM audit_events WHERE {} ORDER BY seq DESC LIMIT ${}",
        super::audit::EVENT_COLUMNS,
        conditions.join(" AND "),
        binds.len()
    );
    (sql, binds)
}

// Portable statements: the same text on both engines.

pub(super) const ALERTS_AFTER: &str =
    "SELECT id, kind, subject, details, created_at FROM alerts WHERE id > $1 ORDER BY id LIMIT $2";

/// The primary key's maximum: one index probe.
pub(super) const NEWEST_ALERT_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM alerts";

/// Push jobs touched since `$1`, by the device's provider and the job's state.
pub(super) const PUSH_HEALTH_COUNTS: &str =
    "SELECT d.push_provider AS provider, o.state AS state, COUNT(*) AS jobs
     FROM push_outbox o JOIN devices d ON d.id = o.device_id
     WHERE o.updated_at >= $1 GROUP BY d.push_provider, o.state";

/// The newest error of provider `$2` since `$1`.
pub(super) const NEWEST_PUSH_ERROR: &str = "SELECT o.last_error AS last_error, o.updated_at AS updated_at
     FROM push_outbox o JOIN devices d ON d.id = o.device_id
     WHERE o.updated_at >= $1 AND o.last_error IS NOT NULL AND d.push_provider = $2
     ORDER BY o.updated_at DESC LIMIT 1";

/// The columns a [`TimelineRow`] reads: never `number_tag` or `number_sealed`.
const TIMELINE_COLUMNS: &str = "id, state, number_digits, app_name, ip, user_agent, location, is_silent, created_at, decided_at, decided_by_device";

pub(super) static TIMELINE_FIRST_PAGE: Sql = Sql::new(|| {
    format!(
        "SELECT {TIMELINE_COLUMNS} FROM challenges WHERE user_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )
});

pub(super) static TIMELINE_PAGE_BEFORE: Sql = Sql::new(|| {
    format!(
        "SELECT {TIMELINE_COLUMNS} FROM challenges WHERE user_id = $1 AND (created_at, id) < ($2, $3)
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )
});

/// Live users above `$2` with usernames in [`$1`, `$3`), by username, with their standing.
/// `{collate}` is each engine's byte-order collation, so the range is a prefix and matches the
/// index. `$3` is the prefix's [`prefix_end`] (or, for no prefix, above every username).
pub(super) fn search_users_sql(collate: &str) -> String {
    format!(
        "SELECT {}, {}, s.user_id AS standing_of
         FROM users u LEFT JOIN user_push_state s ON s.user_id = u.id
         WHERE u.deleted_at IS NULL AND u.username{collate} >= $1 AND u.username{collate} > $2
         AND u.username{collate} < $3
         ORDER BY u.username{collate} LIMIT $4",
        qualified(USER_COLUMNS, "u"),
        qualified(PUSH_STATE_COLUMNS, "s"),
    )
}

/// Above every username: usernames are printable ASCII (`users::model::normalize_username`).
pub(super) const ABOVE_ALL_USERNAMES: &str = "\u{10FFFF}";

#[async_trait]
pub trait DashboardStore: Send + Sync + std::fmt::Debug {
    /// Alerts with an id above `after_id`, oldest first, at most `limit`.
    async fn alerts_after(&self, after_id: i64, limit: u32) -> Result<Vec<AlertRecord>, StoreError>;

    /// The id of the newest alert (0 when there is none).
    async fn newest_alert_id(&self) -> Result<i64, StoreError>;

    /// Push prompts created and prompts refused per minute since `since`, oldest first; minutes
    /// with neither are absent.
    async fn prompts_per_minute(&self, since: OffsetDateTime) -> Result<Vec<PromptBucket>, StoreError>;

    /// Refused prompts since `since` by reason, most first (chained audit events only).
    async fn refusals_by_reason(&self, since: OffsetDateTime) -> Result<Vec<RefusalCount>, StoreError>;

    /// Push jobs touched since `since`, per provider (by name) and state, with its newest error.
    async fn push_health(&self, since: OffsetDateTime) -> Result<Vec<ProviderHealth>, StoreError>;

    /// Live users whose username starts with `prefix` (normalized: lowercase), above
    /// `after_username`, by username, at most `limit`.
    async fn search_users(
        &self,
        prefix: &str,
        after_username: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserListing>, StoreError>;

    /// Chained audit events matching `filter` with `seq < before_seq` (all when `None`), newest
    /// first, at most `limit`: the next page starts below the last `seq` returned.
    async fn audit_search(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The user's challenges older than `before` (all when `None`), newest first, at most
    /// `limit`: the next page starts at the last row's [`TimelineRow::cursor`].
    async fn user_timeline(
        &self,
        user: UserId,
        before: Option<TimelineCursor>,
        limit: u32,
    ) -> Result<Vec<TimelineRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_prefix_end_is_the_next_string_after_every_match() {
        assert_eq!(prefix_end("ali").as_deref(), Some("alj"));
        assert_eq!(prefix_end("a.z").as_deref(), Some("a.{"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"), "surrogates are skipped");
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn only_present_filters_become_conditions_in_bind_order() {
        let at = datetime!(2026-12-01 00:00 UTC);
        let filter = AuditFilter { actor: Some("cli".into()), to: Some(at), ..AuditFilter::default() };
        let (sql, binds) = audit_search_sql(&filter, Some(42), 10);
        assert!(
            sql.contains("WHERE seq < $1 AND actor = $2 AND occurred_at < $3 ORDER BY seq DESC LIMIT $4")
        );
        assert_eq!(
            binds,
            [AuditBind::Seq(42), AuditBind::Text("cli"), AuditBind::Time(at), AuditBind::Limit(10)]
        );
        let unfiltered = AuditFilter::default();
        let (sql, binds) = audit_search_sql(&unfiltered, None, 5);
        assert!(sql.contains("WHERE seq < $1 ORDER BY seq DESC LIMIT $2"));
        assert_eq!(binds, [AuditBind::Seq(i64::MAX), AuditBind::Limit(5)]);
    }

    #[test]
    fn buckets_merge_by_minute_oldest_first() {
        let m = |minute: i64| datetime!(2026-12-01 00:00 UTC) + time::Duration::minutes(minute);
        let merged = merge_buckets(vec![(m(2), 5), (m(0), 1)], vec![(m(2), 7), (m(1), 3)]);
        let seen: Vec<(i64, i64)> = merged.iter().map(|b| (b.prompts, b.refused)).collect();
        assert_eq!(seen, [(1, 0), (0, 3), (5, 7)]);
        assert_eq!(merged[2].minute, m(2));
    }

    #[test]
    fn push_health_folds_states_per_provider() {
        let rows = vec![
            ("fcm".to_owned(), "sent".to_owned(), 4),
            ("apns".to_owned(), "failed".to_owned(), 2),
            ("apns".to_owned(), "sent".to_owned(), 9),
            ("fcm".to_owned(), "queued".to_owned(), 1),
        ];
        let health = fold_push_health(rows);
        let seen: Vec<(&str, i64, i64, i64)> =
            health.iter().map(|h| (h.provider.as_str(), h.queued, h.sent, h.failed)).collect();
        assert_eq!(seen, [("apns", 0, 9, 2), ("fcm", 1, 4, 0)]);
    }
}
