//! The admin dashboard's reads (see `store/dashboard.rs`); only the chart's bucketing (integer
//! microseconds) and the JSON access are SQLite's own.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::audit::Action;
use crate::audit::chain::StoredEvent;
use crate::clock::unix_micros;
use crate::ids::UserId;
use crate::store::alerts::alert_from_row;
use crate::store::audit::stored_event_from_row;
use crate::store::dashboard::{
    ABOVE_ALL_USERNAMES, ALERTS_AFTER, AuditBind, AuditFilter, DashboardStore, NEWEST_ALERT_ID,
    NEWEST_PUSH_ERROR, PUSH_HEALTH_COUNTS, PromptBucket, ProviderHealth, RefusalCount, TIMELINE_FIRST_PAGE,
    TIMELINE_PAGE_BEFORE, TimelineCursor, TimelineRow, UserListing, audit_search_sql, fold_push_health,
    merge_buckets, minute_count_from_row, prefix_end, push_count_from_row, push_error_from_row,
    refusal_count_from_row, search_users_sql, timeline_row_from_row, user_listing_from_row,
};
use crate::store::{AlertRecord, StoreError};

/// Times are Unix microseconds: a minute is 60,000,000 of them.
const PROMPTS_PER_MINUTE: &str = "SELECT (created_at / 60000000) * 60000000 AS minute, COUNT(*) AS n
     FROM challenges WHERE created_at >= $1 AND number_digits > 0 GROUP BY 1 ORDER BY 1";

const REFUSED_PER_MINUTE: &str = "SELECT (occurred_at / 60000000) * 60000000 AS minute, COUNT(*) AS n
     FROM audit_events WHERE action = $1 AND occurred_at >= $2 GROUP BY 1 ORDER BY 1";

const REFUSALS_BY_REASON: &str =
    "SELECT COALESCE(CASE WHEN json_valid(details) THEN json_extract(details, '$.reason') END, '') AS reason,
     COUNT(*) AS n
     FROM audit_events WHERE action = $1 AND occurred_at >= $2 GROUP BY 1 ORDER BY n DESC, reason";

/// SQLite compares text bytewise (`BINARY`) already.
static SEARCH_USERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| search_users_sql(""));

#[async_trait]
impl DashboardStore for SqliteStore {
    async fn alerts_after(&self, after_id: i64, limit: u32) -> Result<Vec<AlertRecord>, StoreError> {
        let rows =
            sqlx::query(ALERTS_AFTER).bind(after_id).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn newest_alert_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(NEWEST_ALERT_ID).fetch_one(&self.pool).await?)
    }

    async fn prompts_per_minute(&self, since: OffsetDateTime) -> Result<Vec<PromptBucket>, StoreError> {
        let since = unix_micros(since);
        let prompts = sqlx::query(PROMPTS_PER_MINUTE).bind(since).fetch_all(&self.pool).await?;
        let refused = sqlx::query(REFUSED_PER_MINUTE)
            .bind(Action::PromptRefused.as_str())
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        let prompts = prompts.iter().map(minute_count_from_row).collect::<Result<_, _>>()?;
        let refused = refused.iter().map(minute_count_from_row).collect::<Result<_, _>>()?;
        Ok(merge_buckets(prompts, refused))
    }

    async fn refusals_by_reason(&self, since: OffsetDateTime) -> Result<Vec<RefusalCount>, StoreError> {
        let rows = sqlx::query(REFUSALS_BY_REASON)
            .bind(Action::PromptRefused.as_str())
            .bind(unix_micros(since))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(refusal_count_from_row).collect()
    }

    async fn push_health(&self, since: OffsetDateTime) -> Result<Vec<ProviderHealth>, StoreError> {
        let since = unix_micros(since);
        let rows = sqlx::query(PUSH_HEALTH_COUNTS).bind(since).fetch_all(&self.pool).await?;
        let counts = rows.iter().map(push_count_from_row).collect::<Result<_, _>>()?;
        let mut providers = fold_push_health(counts);
        for provider in &mut providers {
            let newest = sqlx::query(NEWEST_PUSH_ERROR)
                .bind(since)
                .bind(&provider.provider)
                .fetch_optional(&self.pool)
                .await?;
            provider.last_error = newest.as_ref().map(push_error_from_row).transpose()?;
        }
        Ok(providers)
    }

    async fn search_users(
        &self,
        prefix: &str,
        after_username: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserListing>, StoreError> {
        let end = prefix_end(prefix).unwrap_or_else(|| ABOVE_ALL_USERNAMES.to_owned());
        let rows = sqlx::query(SEARCH_USERS.as_str())
            .bind(prefix)
            .bind(after_username.unwrap_or(""))
            .bind(end)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_listing_from_row).collect()
    }

    async fn audit_search(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (sql, binds) = audit_search_sql(filter, before_seq, limit);
        // Built from fixed fragments only: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                AuditBind::Seq(n) | AuditBind::Limit(n) => query.bind(n),
                AuditBind::Text(text) => query.bind(text),
                AuditBind::Time(at) => query.bind(unix_micros(at)),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn user_timeline(
        &self,
        user: UserId,
        before: Option<TimelineCursor>,
        limit: u32,
    ) -> Result<Vec<TimelineRow>, StoreError> {
        let query = match before {
            None => sqlx::query(TIMELINE_FIRST_PAGE.as_str()).bind(user.0.to_string()),
            Some(cursor) => sqlx::query(TIMELINE_PAGE_BEFORE.as_str())
                .bind(user.0.to_string())
                .bind(unix_micros(cursor.created_at))
                .bind(cursor.id.0.to_string()),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(timeline_row_from_row).collect()
    }
}
