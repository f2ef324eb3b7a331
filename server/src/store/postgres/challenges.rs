//! Challenges: the fatigue gate, device answers, transitions, expiry and notifications.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::PgStore;
use super::fatigue::{Lock, read_standing};
use super::statements::{
    EventArrays, PgQuery, bind_audit, bind_ladder, count_escalation, create_statement, decide_statement,
    transition_statement,
};
use crate::audit::AuditEvent;
use crate::challenges::model::ChallengeState;
use crate::fatigue::model::{Policy, PromptContext, ladder_move};
use crate::ids::{AppId, ChallengeId, DeviceId, UserId};
use crate::store::audit::{PendingRow, pending_row};
use crate::store::challenges::challenge_from_row;
use crate::store::challenges::may_become;
use crate::store::challenges::{
    CHALLENGE_BY_ID, CHALLENGE_BY_IDEMPOTENCY_KEY, DEVICE_REVOKED_AT, RECENT_CHALLENGES, RECENT_NUMBER_TAGS,
};
use crate::store::challenges::{CHALLENGE_COLUMNS, PUSH_ONLY};
use crate::store::codec::aliased;
use crate::store::devices::device_from_prefixed;
use crate::store::devices::prefixed_device_columns;
use crate::store::fatigue::PUSH_STATE_COLUMNS;
use crate::store::fatigue::STANDING_RETRIES;
use crate::store::fatigue::push_state_from_row;
use crate::store::users::{USER_COLUMNS, user_from_prefixed};
use crate::store::{
    ChallengeEvent, ChallengeRecord, ChallengeStore, ChallengeTransition, DeviceDecision, DeviceRecord,
    Precondition, PromptTarget, StoreError, map_unique_violation,
};

/// Binds a challenge's columns, in `CHALLENGE_COLUMNS` order, as `$1`-`$21`.
pub(super) fn bind_challenge<'q>(query: PgQuery<'q>, c: &ChallengeRecord) -> PgQuery<'q> {
    query
        .bind(c.id.0)
        .bind(c.app_id.0)
        .bind(c.user_id.0)
        .bind(c.state.as_str())
        .bind(c.number_tag.clone())
        .bind(c.number_sealed.clone())
        .bind(c.number_digits)
        .bind(c.server_nonce.clone())
        .bind(c.app_name.clone())
        .bind(c.ip.clone())
        .bind(c.user_agent.clone())
        .bind(c.location.clone())
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.decided_at)
        .bind(c.decided_by_device.map(|d| d.0))
        .bind(c.redeemed_at)
        .bind(c.idempotency_key.clone())
        .bind(c.request_hash.clone())
        .bind(c.is_silent)
        .bind(c.source_prefix.clone())
}

impl PgStore {
    /// Ends a pending challenge without an answer — `expired` once due by the database clock, or
    /// `cancelled` by its app — under the user's lock, moving their ladder (both count as
    /// unanswered; a passkey sign-in, `is_push` false, leaves the ladder alone); `None` if the
    /// challenge is no longer pending (or not due, or not the app's).
    #[allow(clippy::too_many_arguments)]
    async fn end_pending(
        &self,
        tx: &mut PgConnection,
        id: ChallengeId,
        (user, is_push): (UserId, bool),
        end: ChallengeTransition,
        now: OffsetDateTime,
        audit: &PendingRow,
        policy: &Policy,
    ) -> Result<Option<ChallengeRecord>, StoreError> {
        let (state, _) = read_standing(&mut *tx, user, now, Lock::ForUpdate).await?;
        let (to, update, first) = match end {
            ChallengeTransition::Cancel { .. } => (
                ChallengeState::Cancelled,
                format!(
                    "UPDATE challenges SET state = 'cancelled', decided_at = now()
                     WHERE id = $1 AND user_id = $2 AND {} AND app_id = $3",
                    may_become(ChallengeState::Cancelled)
                ),
                4,
            ),
            _ => (
                ChallengeState::Expired,
                format!(
                    "UPDATE challenges SET state = 'expired', decided_at = expires_at
                     WHERE id = $1 AND user_id = $2 AND {} AND expires_at <= now()",
                    may_become(ChallengeState::Expired)
                ),
                3,
            ),
        };
        let step = if is_push { ladder_move(&state, to, now, policy) } else { None };
        let sql = transition_statement(
            "",
            &update,
            first,
            step.as_ref(),
            "",
            "SELECT (SELECT COUNT(*) FROM n) AS notified, c.* FROM c",
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(user.0);
        let query = match end {
            ChallengeTransition::Cancel { app_id } => query.bind(app_id.0),
            _ => query,
        };
        let query = bind_ladder(bind_audit(query, audit)?, user, step.as_ref(), now);
        let Some(row) = query.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        count_escalation(step.as_ref());
        challenge_from_row(&row).map(Some)
    }
}

#[async_trait]
impl ChallengeStore for PgStore {
    async fn prompt_target(&self, username: &str, recent: u32) -> Result<Option<PromptTarget>, StoreError> {
        // One round trip: the user, their active devices, and their recent number tags.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {},
                    ARRAY(SELECT number_tag FROM challenges WHERE user_id = u.id
                          ORDER BY created_at DESC LIMIT $2) AS recent_tags,
                    {}
             FROM users u LEFT JOIN devices d ON d.user_id = u.id AND d.revoked_at IS NULL
             WHERE u.username = $1 ORDER BY d.created_at, d.id",
            aliased(USER_COLUMNS, "u"),
            prefixed_device_columns()
        ));
        let rows = sqlx::query(sql)
            .bind(username)
            .bind(i64::from(recent))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let user = user_from_prefixed(first, "u_")?;
        let mut devices = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<Uuid>, _>("d_id")?.is_some() {
                devices.push(device_from_prefixed(row, "d_")?);
            }
        }
        Ok(Some(PromptTarget { user, devices, recent_tags: first.try_get("recent_tags")? }))
    }

    async fn device_and_challenge(
        &self,
        device: DeviceId,
        challenge: ChallengeId,
    ) -> Result<(Option<DeviceRecord>, Option<ChallengeRecord>), StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {}, c.* FROM (SELECT 1) AS one
             LEFT JOIN devices d ON d.id = $1 LEFT JOIN challenges c ON c.id = $2",
            prefixed_device_columns()
        ));
        let row =
            sqlx::query(sql).bind(device.0).bind(challenge.0).fetch_one(&mut *self.conn().await?).await?;
        let device = match row.try_get::<Option<Uuid>, _>("d_id")? {
            Some(_) => Some(device_from_prefixed(&row, "d_")?),
            None => None,
        };
        let challenge = match row.try_get::<Option<Uuid>, _>("id")? {
            Some(_) => Some(challenge_from_row(&row)?),
            None => None,
        };
        Ok((device, challenge))
    }

    async fn create_challenge(
        &self,
        c: ChallengeRecord,
        push_devices: &[DeviceId],
        audit: AuditEvent,
        superseded: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let mut conn = self.conn().await?;
        // Optimistic, like a device answer: read the user's standing (with its version) and the
        // gate's inputs in one snapshot, decide, then write everything in one statement that
        // applies only if the standing is still that version. Every new prompt bumps the
        // version, so two prompts for one user never both pass the same budget check.
        for _ in 0..STANDING_RETRIES {
            let sql = format!(
                "SELECT {PUSH_STATE_COLUMNS}, version,
                        ARRAY(SELECT created_at FROM challenges WHERE user_id = $1 AND created_at > $2 AND {PUSH_ONLY}) AS recent,
                        CASE WHEN $3::text IS NULL THEN NULL
                             ELSE (SELECT COUNT(DISTINCT user_id) FROM challenges
                                   WHERE source_prefix = $3 AND created_at > $4 AND user_id <> $1) END AS source_users,
                        ARRAY(SELECT id FROM challenges WHERE user_id = $1 AND state = 'pending' AND {PUSH_ONLY}) AS pending,
                        (SELECT COUNT(*) FROM challenges
                         WHERE user_id = $1 AND created_at > $5 AND NOT is_silent AND {PUSH_ONLY}) AS audible_today
                 FROM user_push_state WHERE user_id = $1"
            );
            let gate = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(c.user_id.0)
                .bind(c.created_at - policy.budget_window)
                .bind(&c.source_prefix)
                .bind(c.created_at - policy.spray_window)
                .bind(c.created_at - time::Duration::DAY)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(gate) = gate else {
                // No standing yet: create it, then read again.
                read_standing(&mut conn, c.user_id, c.created_at, Lock::None).await?;
                continue;
            };
            let state = push_state_from_row(&gate)?;
            let version: i64 = gate.try_get("version")?;
            let recent: Vec<OffsetDateTime> = gate.try_get("recent")?;
            let source_users =
                gate.try_get::<Option<i64>, _>("source_users")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            let pending_ids: Vec<Uuid> = gate.try_get("pending")?;
            let prompt = PromptContext {
                source_users: source_users.unwrap_or(0),
                superseded: u32::try_from(pending_ids.len()).unwrap_or(u32::MAX),
                audible_today: u32::try_from(gate.try_get::<i64, _>("audible_today")?).unwrap_or(u32::MAX),
            };
            let network = c.source_prefix.as_deref().filter(|_| source_users.is_some());
            let is_silent =
                crate::fatigue::model::gate(&state, &recent, network, prompt, c.created_at, policy)
                    .map_err(StoreError::Refused)?;
            let record = ChallengeRecord { is_silent, ..c.clone() };
            let mut created_event = audit.clone();
            if let serde_json::Value::Object(details) = &mut created_event.details {
                details.insert("silent".into(), is_silent.into());
            }
            let jobs: Vec<Uuid> =
                if is_silent { Vec::new() } else { push_devices.iter().map(|d| d.0).collect() };
            // The prompt this one supersedes (rarely any): its audit event is written only if
            // it is in fact cancelled here.
            let mut old_events = Vec::new();
            if !pending_ids.is_empty() {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = ANY($1)"
                ));
                for row in sqlx::query(sql).bind(&pending_ids).fetch_all(&mut *conn).await? {
                    let old = challenge_from_row(&row)?;
                    let cancelled = ChallengeRecord {
                        state: ChallengeState::Cancelled,
                        decided_at: Some(c.created_at),
                        ..old
                    };
                    old_events.push((cancelled.id.0, pending_row(&self.sealer, &superseded(&cancelled))));
                }
            }
            let mut events = EventArrays::default();
            events.push(record.id.0, &pending_row(&self.sealer, &created_event))?;
            for (id, event) in &old_events {
                events.push(*id, event)?;
            }
            let query = bind_challenge(sqlx::query(sqlx::AssertSqlSafe(create_statement())), &record)
                .bind(version)
                .bind(old_events.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(jobs);
            let row = events.bind(query).fetch_one(&mut *conn).await.map_err(map_unique_violation)?;
            if !row.try_get::<bool, _>("fresh")? {
                continue;
            }
            self.audit_pending.notify_one();
            return Ok(ChallengeRecord { expires_at: row.try_get("expires_at")?, ..record });
        }
        Err(StoreError::Contended)
    }

    async fn challenge_by_id(&self, id: ChallengeId) -> Result<Option<ChallengeRecord>, StoreError> {
        sqlx::query(CHALLENGE_BY_ID.as_str())
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
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
            .bind(app.0)
            .bind(key)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(challenge_from_row)
            .transpose()
    }

    async fn pending_challenges(
        &self,
        user: UserId,
        _now: OffsetDateTime,
    ) -> Result<Vec<ChallengeRecord>, StoreError> {
        // Open by the database clock, not the caller's.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges
             WHERE user_id = $1 AND state = 'pending' AND expires_at > now() ORDER BY created_at, id"
        ));
        sqlx::query(sql)
            .bind(user.0)
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(challenge_from_row)
            .collect()
    }

    async fn recent_number_tags(&self, user: UserId, limit: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(RECENT_NUMBER_TAGS)
            .bind(user.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError> {
        sqlx::query(RECENT_CHALLENGES.as_str())
            .bind(user.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.conn().await?)
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
        let pending = pending_row(&self.sealer, &audit);
        let mut conn = self.conn().await?;
        // Optimistic: read the user's standing, then one statement that applies the answer only
        // if the standing is still that version (checked under its row lock). No transaction
        // spans a round trip; a concurrent change to the standing means reading it again.
        for _ in 0..STANDING_RETRIES {
            let (state, version) = read_standing(&mut conn, user, now, Lock::None).await?;
            let step = ladder_move(&state, to, now, policy);
            let query = sqlx::query(sqlx::AssertSqlSafe(decide_statement(to, step.as_ref())))
                .bind(device.0)
                .bind(counter)
                .bind(to.as_str())
                .bind(id.0)
                .bind(user.0)
                .bind(version);
            let query = bind_ladder(bind_audit(query, &pending)?, user, step.as_ref(), now);
            let row = query.fetch_one(&mut *conn).await?;
            if !row.try_get::<bool, _>("fresh")? {
                continue;
            }
            if !row.try_get::<bool, _>("device_ok")? {
                let revoked: Option<Option<OffsetDateTime>> =
                    sqlx::query_scalar(DEVICE_REVOKED_AT).bind(device.0).fetch_optional(&mut *conn).await?;
                return Err(StoreError::PreconditionFailed(match revoked {
                    Some(None) => Precondition::CounterNotIncreasing,
                    _ => Precondition::DeviceInactive,
                }));
            }
            if row.try_get::<Option<Uuid>, _>("id")?.is_none() {
                return Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending));
            }
            count_escalation(step.as_ref());
            self.audit_pending.notify_one();
            return challenge_from_row(&row);
        }
        Err(StoreError::Contended)
    }

    async fn transition_challenge(
        &self,
        id: ChallengeId,
        transition: ChallengeTransition,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let pending = pending_row(&self.sealer, &audit);
        let ChallengeTransition::Redeem { app_id, window } = transition else {
            // Expiry and cancellation move the user's ladder (unanswered prompts): they take
            // the user's lock like a device answer.
            let (user, digits): (Uuid, i16) =
                sqlx::query_as("SELECT user_id, number_digits FROM challenges WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(&mut *self.conn().await?)
                    .await?
                    .ok_or(StoreError::NotFound)?;
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await?;
            let owner = (UserId(user), digits > 0);
            let ended = self.end_pending(&mut tx, id, owner, transition, now, &pending, policy).await?;
            self.commit(tx).await?;
            return ended.ok_or(StoreError::NotFound);
        };
        // Redeeming leaves the ladder alone: one autocommitted statement, fresh by the database
        // clock (`now()`), as every challenge transition.
        let sql = transition_statement(
            "",
            &format!(
                "UPDATE challenges SET state = 'redeemed', redeemed_at = now()
                 WHERE id = $1 AND app_id = $2 AND {}
                   AND decided_at > now() - $3::bigint * interval '1 microsecond'",
                may_become(ChallengeState::Redeemed)
            ),
            4,
            None,
            "",
            "SELECT (SELECT COUNT(*) FROM n) AS notified, c.* FROM c",
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(app_id.0)
            .bind(window.whole_microseconds() as i64);
        let row = bind_audit(query, &pending)?
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.audit_pending.notify_one();
        challenge_from_row(&row)
    }

    async fn expire_due_challenges(
        &self,
        now: OffsetDateTime,
        limit: u32,
        event: ChallengeEvent<'_>,
        policy: &Policy,
    ) -> Result<Vec<ChallengeRecord>, StoreError> {
        // Each expiry takes its user's lock before the challenge's row (the order every
        // transition uses); an instance that loses the race to another finds nothing to do.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE {} AND expires_at <= now()
             ORDER BY expires_at LIMIT $1",
            may_become(ChallengeState::Expired)
        ));
        let due = sqlx::query(sql).bind(i64::from(limit)).fetch_all(&mut *self.conn().await?).await?;
        let mut expired = Vec::with_capacity(due.len());
        for row in &due {
            let before = challenge_from_row(row)?;
            let after = ChallengeRecord {
                state: ChallengeState::Expired,
                decided_at: Some(before.expires_at),
                ..before.clone()
            };
            let pending = pending_row(&self.sealer, &event(&after));
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await?;
            if let Some(challenge) = self
                .end_pending(
                    &mut tx,
                    before.id,
                    (before.user_id, before.is_push()),
                    ChallengeTransition::Expire,
                    now,
                    &pending,
                    policy,
                )
                .await?
            {
                self.commit(tx).await?;
                expired.push(challenge);
            }
        }
        Ok(expired)
    }

    async fn watch_challenges(
        &self,
        on_change: std::sync::Arc<dyn Fn(ChallengeId) + Send + Sync>,
    ) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen("countersign_challenges").await?;
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        if let Ok(id) = Uuid::parse_str(notification.payload()) {
                            on_change(ChallengeId(id));
                        }
                    }
                    // PgListener reconnects by itself on the next recv; waiters re-check
                    // periodically, so a notification lost meanwhile only costs latency.
                    Err(error) => {
                        tracing::warn!(%error, "challenge notification listener error; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(())
    }
}
