//! Challenges: the fatigue gate, device answers, transitions, expiry and notifications.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use super::fatigue::{SqliteQuery, load_push_state, record_outcome};
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::clock::{from_unix_micros, unix_micros};
use crate::fatigue::model::{Policy, PromptContext};
use crate::ids::{AppId, ChallengeId, DeviceId, UserId};
use crate::store::challenges::challenge_from_row;
use crate::store::challenges::may_become;
use crate::store::challenges::{
    CHALLENGE_BY_ID, CHALLENGE_BY_IDEMPOTENCY_KEY, DEVICE_REVOKED_AT, RECENT_CHALLENGES, RECENT_NUMBER_TAGS,
};
use crate::store::challenges::{CHALLENGE_COLUMNS, INSERT_CHALLENGE, PUSH_ONLY};
use crate::store::{
    ChallengeEvent, ChallengeRecord, ChallengeStore, ChallengeTransition, DeviceDecision, DeviceRecord,
    DeviceStore, Precondition, PromptTarget, StoreError, UserStore, map_unique_violation,
};

/// The INSERT of a challenge row, bound (push prompts and passkey sign-ins alike).
pub(super) fn insert_challenge(c: &ChallengeRecord) -> SqliteQuery<'_> {
    sqlx::query(INSERT_CHALLENGE.as_str())
        .bind(c.id.0.to_string())
        .bind(c.app_id.0.to_string())
        .bind(c.user_id.0.to_string())
        .bind(c.state.as_str())
        .bind(&c.number_tag)
        .bind(&c.number_sealed)
        .bind(c.number_digits)
        .bind(&c.server_nonce)
        .bind(&c.app_name)
        .bind(&c.ip)
        .bind(&c.user_agent)
        .bind(&c.location)
        .bind(unix_micros(c.created_at))
        .bind(unix_micros(c.expires_at))
        .bind(c.decided_at.map(unix_micros))
        .bind(c.decided_by_device.map(|d| d.0.to_string()))
        .bind(c.redeemed_at.map(unix_micros))
        .bind(&c.idempotency_key)
        .bind(&c.request_hash)
        .bind(c.is_silent)
        .bind(&c.source_prefix)
}

#[async_trait]
impl ChallengeStore for SqliteStore {
    async fn prompt_target(&self, username: &str, recent: u32) -> Result<Option<PromptTarget>, StoreError> {
        let Some(user) = self.user_by_username(username).await? else {
            return Ok(None);
        };
        let devices =
            self.devices_for_user(user.id).await?.into_iter().filter(DeviceRecord::is_active).collect();
        let recent_tags = self.recent_number_tags(user.id, recent).await?;
        Ok(Some(PromptTarget { user, devices, recent_tags }))
    }

    async fn device_and_challenge(
        &self,
        device: DeviceId,
        challenge: ChallengeId,
    ) -> Result<(Option<DeviceRecord>, Option<ChallengeRecord>), StoreError> {
        Ok((self.device_by_id(device).await?, self.challenge_by_id(challenge).await?))
    }

    async fn create_challenge(
        &self,
        c: ChallengeRecord,
        push_devices: &[DeviceId],
        audit: AuditEvent,
        superseded: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let state = load_push_state(&mut tx, c.user_id).await?;
        let recent: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT created_at FROM challenges WHERE user_id = ?1 AND created_at > ?2 AND {PUSH_ONLY}"
        )))
        .bind(c.user_id.0.to_string())
        .bind(unix_micros(c.created_at - policy.budget_window))
        .fetch_all(&mut *tx)
        .await?;
        let recent: Vec<OffsetDateTime> = recent.into_iter().filter_map(from_unix_micros).collect();
        let source_users: Option<u32> = match &c.source_prefix {
            Some(prefix) => {
                let users: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT user_id) FROM challenges
                     WHERE source_prefix = ?1 AND created_at > ?2 AND user_id <> ?3",
                )
                .bind(prefix)
                .bind(unix_micros(c.created_at - policy.spray_window))
                .bind(c.user_id.0.to_string())
                .fetch_one(&mut *tx)
                .await?;
                Some(u32::try_from(users).unwrap_or(u32::MAX))
            }
            None => None,
        };
        let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT COUNT(*) FROM challenges WHERE user_id = ?1 AND state = 'pending' AND {PUSH_ONLY}),
                    (SELECT COUNT(*) FROM challenges WHERE user_id = ?1 AND created_at > ?2 AND NOT is_silent AND {PUSH_ONLY})"
        )))
        .bind(c.user_id.0.to_string())
        .bind(unix_micros(c.created_at - time::Duration::DAY))
        .fetch_one(&mut *tx)
        .await?;
        let prompt = PromptContext {
            source_users: source_users.unwrap_or(0),
            superseded: u32::try_from(counts.0).unwrap_or(u32::MAX),
            audible_today: u32::try_from(counts.1).unwrap_or(u32::MAX),
        };
        let network = c.source_prefix.as_deref().filter(|_| source_users.is_some());
        let is_silent = crate::fatigue::model::gate(&state, &recent, network, prompt, c.created_at, policy)
            .map_err(StoreError::Refused)?;
        let c = ChallengeRecord { is_silent, ..c };
        let mut audit = audit;
        if let serde_json::Value::Object(details) = &mut audit.details {
            details.insert("silent".into(), is_silent.into());
        }
        let push_devices: &[DeviceId] = if is_silent { &[] } else { push_devices };
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'cancelled', decided_at = ?2
             WHERE user_id = ?1 AND {} AND {PUSH_ONLY} RETURNING {CHALLENGE_COLUMNS}",
            may_become(ChallengeState::Cancelled)
        ));
        let cancelled = sqlx::query(sql)
            .bind(c.user_id.0.to_string())
            .bind(unix_micros(c.created_at))
            .fetch_all(&mut *tx)
            .await?;
        for row in &cancelled {
            let old = challenge_from_row(row)?;
            // A superseded prompt ended unanswered.
            record_outcome(&mut tx, old.user_id, old.state, c.created_at, policy).await?;
            self.append_audit(&mut tx, &superseded(&old)).await?;
        }
        insert_challenge(&c).execute(&mut *tx).await.map_err(map_unique_violation)?;
        for device in push_devices {
            sqlx::query(
                "INSERT INTO push_outbox (challenge_id, device_id, state, next_attempt_at, updated_at)
                 VALUES (?1, ?2, 'queued', ?3, ?3)",
            )
            .bind(c.id.0.to_string())
            .bind(device.0.to_string())
            .bind(unix_micros(c.created_at))
            .execute(&mut *tx)
            .await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(c)
    }

    async fn challenge_by_id(&self, id: ChallengeId) -> Result<Option<ChallengeRecord>, StoreError> {
        sqlx::query(CHALLENGE_BY_ID.as_str())
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(challenge_from_row)
            .transpose()
    }

    async fn challenge_by_idempotency_key(
        &self,
        app: AppId,
        key: &str,
    ) -> Result<Option<ChallengeRecord>, StoreError> {
        sqlx::query(CHALLENGE_BY_IDEMPOTENCY_KEY.as_str())
            .bind(app.0.to_string())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(challenge_from_row)
            .transpose()
    }

    async fn pending_challenges(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<ChallengeRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges
             WHERE user_id = ?1 AND state = 'pending' AND expires_at > ?2 ORDER BY created_at, id"
        ));
        sqlx::query(sql)
            .bind(user.0.to_string())
            .bind(unix_micros(now))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(challenge_from_row)
            .collect()
    }

    async fn recent_number_tags(&self, user: UserId, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(RECENT_NUMBER_TAGS)
            .bind(user.0.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError> {
        sqlx::query(RECENT_CHALLENGES.as_str())
            .bind(user.0.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(challenge_from_row)
            .collect()
    }

    async fn decide_challenge(
        &self,
        decision: DeviceDecision,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let DeviceDecision { challenge: id, user, device, counter, to } = decision;
        let mut tx = self.begin_write().await?;
        let advanced = sqlx::query(
            "UPDATE devices SET last_counter = ?2 WHERE id = ?1 AND revoked_at IS NULL AND last_counter < ?2
             RETURNING id",
        )
        .bind(device.0.to_string())
        .bind(counter)
        .fetch_optional(&mut *tx)
        .await?;
        if advanced.is_none() {
            let revoked: Option<Option<i64>> = sqlx::query_scalar(DEVICE_REVOKED_AT)
                .bind(device.0.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            return Err(StoreError::PreconditionFailed(match revoked {
                Some(None) => Precondition::CounterNotIncreasing,
                _ => Precondition::DeviceInactive,
            }));
        }
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = ?2, decided_at = ?3, decided_by_device = ?4
             WHERE id = ?1 AND user_id = ?5 AND {} AND expires_at > ?3 RETURNING {CHALLENGE_COLUMNS}",
            may_become(to)
        ));
        // Only the deciding device's user's challenge: an answer naming another user decides
        // nothing (as on PostgreSQL).
        let row = sqlx::query(sql)
            .bind(id.0.to_string())
            .bind(to.as_str())
            .bind(unix_micros(now))
            .bind(device.0.to_string())
            .bind(user.0.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))?;
        let challenge = challenge_from_row(&row)?;
        record_outcome(&mut tx, challenge.user_id, to, now, policy).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(challenge)
    }

    async fn transition_challenge(
        &self,
        id: ChallengeId,
        transition: ChallengeTransition,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let query = match transition {
            ChallengeTransition::Redeem { app_id, window } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE challenges SET state = 'redeemed', redeemed_at = ?2
                 WHERE id = ?1 AND app_id = ?3 AND {} AND decided_at > ?4 RETURNING {CHALLENGE_COLUMNS}",
                may_become(ChallengeState::Redeemed)
            )))
            .bind(id.0.to_string())
            .bind(unix_micros(now))
            .bind(app_id.0.to_string())
            .bind(unix_micros(now - window)),
            ChallengeTransition::Cancel { app_id } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE challenges SET state = 'cancelled', decided_at = ?2
                 WHERE id = ?1 AND app_id = ?3 AND {} RETURNING {CHALLENGE_COLUMNS}",
                may_become(ChallengeState::Cancelled)
            )))
            .bind(id.0.to_string())
            .bind(unix_micros(now))
            .bind(app_id.0.to_string()),
            ChallengeTransition::Expire => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE challenges SET state = 'expired', decided_at = expires_at
                 WHERE id = ?1 AND {} AND expires_at <= ?2 RETURNING {CHALLENGE_COLUMNS}",
                may_become(ChallengeState::Expired)
            )))
            .bind(id.0.to_string())
            .bind(unix_micros(now)),
        };
        let row = query.fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
        let challenge = challenge_from_row(&row)?;
        if challenge.is_push() {
            record_outcome(&mut tx, challenge.user_id, challenge.state, now, policy).await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(challenge)
    }

    async fn expire_due_challenges(
        &self,
        now: OffsetDateTime,
        limit: u32,
        event: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<Vec<ChallengeRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'expired', decided_at = expires_at
             WHERE id IN (SELECT id FROM challenges WHERE {} AND expires_at <= ?1
                          ORDER BY expires_at LIMIT ?2)
             RETURNING {CHALLENGE_COLUMNS}",
            may_become(ChallengeState::Expired)
        ));
        let rows = sqlx::query(sql).bind(unix_micros(now)).bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let challenge = challenge_from_row(row)?;
            if challenge.is_push() {
                record_outcome(&mut tx, challenge.user_id, challenge.state, now, policy).await?;
            }
            self.append_audit(&mut tx, &event(&challenge)).await?;
            expired.push(challenge);
        }
        self.commit(tx).await?;
        Ok(expired)
    }

    async fn watch_challenges(
        &self,
        _on_change: std::sync::Arc<dyn Fn(ChallengeId) + Send + Sync>,
    ) -> Result<(), StoreError> {
        // One instance per SQLite file: the in-process notification already reaches every waiter.
        Ok(())
    }
}
