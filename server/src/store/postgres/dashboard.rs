//! The admin dashboard's reads (see `store/dashboard.rs`); only the chart's bucketing
//! (`date_trunc`), the JSON access and the byte-order collation are PostgreSQL's own.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::PgStore;
use crate::audit::Action;
use crate::audit::chain::StoredEvent;
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

const PROMPTS_PER_MINUTE: &str = "SELECT date_trunc('minute', created_at) AS minute, COUNT(*) AS n
     FROM challenges WHERE created_at >= $1 AND number_digits > 0 GROUP BY 1 ORDER BY 1";

const REFUSED_PER_MINUTE: &str = "SELECT date_trunc('minute', occurred_at) AS minute, COUNT(*) AS n
     FROM audit_events WHERE action = $1 AND occurred_at >= $2 GROUP BY 1 ORDER BY 1";

/// `details` is JSON by construction (serde writes it; the chain's seal covers it).
const REFUSALS_BY_REASON: &str = "SELECT COALESCE(details::json->>'reason', '') AS reason, COUNT(*) AS n
     FROM audit_events WHERE action = $1 AND occurred_at >= $2 GROUP BY 1 ORDER BY n DESC, reason";

/// `COLLATE "C"`: byte order, so a username range is a prefix whatever the database's locale
/// (and matches the index migration 0022 builds).
static SEARCH_USERS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| search_users_sql(r#" COLLATE "C""#));

#[async_trait]
impl DashboardStore for PgStore {
    async fn alerts_after(&self, after_id: i64, limit: u32) -> Result<Vec<AlertRecord>, StoreError> {
        let rows = sqlx::query(ALERTS_AFTER)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn newest_alert_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(NEWEST_ALERT_ID).fetch_one(&mut *self.conn().await?).await?)
    }

    async fn prompts_per_minute(&self, since: OffsetDateTime) -> Result<Vec<PromptBucket>, StoreError> {
        let mut conn = self.conn().await?;
        let prompts = sqlx::query(PROMPTS_PER_MINUTE).bind(since).fetch_all(&mut *conn).await?;
        let refused = sqlx::query(REFUSED_PER_MINUTE)
            .bind(Action::PromptRefused.as_str())
            .bind(since)
            .fetch_all(&mut *conn)
            .await?;
        let prompts = prompts.iter().map(minute_count_from_row).collect::<Result<_, _>>()?;
        let refused = refused.iter().map(minute_count_from_row).collect::<Result<_, _>>()?;
        Ok(merge_buckets(prompts, refused))
    }

    async fn refusals_by_reason(&self, since: OffsetDateTime) -> Result<Vec<RefusalCount>, StoreError> {
        let rows = sqlx::query(REFUSALS_BY_REASON)
            .bind(Action::PromptRefused.as_str())
            .bind(since)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter().map(refusal_count_from_row).collect()
    }

    async fn push_health(&self, since: OffsetDateTime) -> Result<Vec<ProviderHealth>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(PUSH_HEALTH_COUNTS).bind(since).fetch_all(&mut *conn).await?;
        let counts = rows.iter().map(push_count_from_row).collect::<Result<_, _>>()?;
        let mut providers = fold_push_health(counts);
        for provider in &mut providers {
            let newest = sqlx::query(NEWEST_PUSH_ERROR)
                .bind(since)
                .bind(&provider.provider)
                .fetch_optional(&mut *conn)
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
            .fetch_all(&mut *self.conn().await?)
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
                AuditBind::Time(at) => query.bind(at),
            };
        }
        let rows = query.fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn user_timeline(
        &self,
        user: UserId,
        before: Option<TimelineCursor>,
        limit: u32,
    ) -> Result<Vec<TimelineRow>, StoreError> {
        let query = match before {
            None => sqlx::query(TIMELINE_FIRST_PAGE.as_str()).bind(user.0),
            Some(cursor) => sqlx::query(TIMELINE_PAGE_BEFORE.as_str())
                .bind(user.0)
                .bind(cursor.created_at)
                .bind(cursor.id.0),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(timeline_row_from_row).collect()
    }
}
