//! PostgreSQL store: production, many instances sharing one database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::audit::{DUPLICATE_EVENT_SQL, PendingEvent, PendingRow, link_pending, pending_row};
use super::challenges::may_become;
use super::pg_pool::{PgConnections, PooledConnection};
use super::{
    AlertCursor, AlertRecord, AlertStore, AppRecord, AppStore, ApprovalProof, AuditStore, ChallengeEvent,
    ChallengeRecord, ChallengeStore, ChallengeTransition, Conflict, DeviceDecision, DeviceRecord,
    DeviceStore, Engine, EnrollmentRecord, FatigueStore, NoticeRecord, PoolStats, Precondition, PromptTarget,
    PushJob, PushJobResult, PushOutbox, PushStateChange, ServerKeyRecord, Store, StoreError, StoredPush,
    UserRecord, UserStore, check_migrations_applied, genesis_mac, map_unique_violation, seals_genesis,
};
use crate::audit::chain::{AuditSealer, StoredEvent, StoredHead};
use crate::audit::{AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::{from_unix_micros, unix_micros};
use crate::fatigue::model::{
    LadderMove, Policy, PromptContext, PushState, incident_alert_details, ladder_move,
};
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgConnections,
    /// For the LISTEN connection, which lives outside the pool.
    url: String,
    sealer: AuditSealer,
    audit_pending: Arc<Notify>,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32, sealer: AuditSealer) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.parse().map_err(|_| StoreError::InvalidUrl("not a valid postgres:// URL".into()))?;
        let pool = PgConnections::connect(options, max_connections, Duration::from_secs(5)).await?;
        Ok(Self { pool, url: url.to_owned(), sealer, audit_pending: Arc::new(Notify::new()) })
    }

    async fn conn(&self) -> Result<PooledConnection, StoreError> {
        self.pool.get().await
    }

    /// Writes the event, sealed, for the chainer to link: one INSERT that takes no shared lock,
    /// so concurrent changes never queue behind each other for the audit trail.
    async fn append_audit(&self, conn: &mut PgConnection, event: &AuditEvent) -> Result<(), StoreError> {
        let p = pending_row(&self.sealer, event);
        sqlx::query(
            "INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(p.event_id.as_slice())
        .bind(micros_to_time(p.row.occurred_at_micros)?)
        .bind(&p.row.actor)
        .bind(&p.row.action)
        .bind(&p.row.subject)
        .bind(&p.row.details)
        .bind(&p.mac)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Ends a pending challenge without an answer — `expired` once due by the database clock, or
    /// `cancelled` by its app — under the user's lock, moving their ladder (both count as
    /// unanswered); `None` if the challenge is no longer pending (or not due, or not the app's).
    #[allow(clippy::too_many_arguments)]
    async fn end_pending(
        &self,
        tx: &mut PgConnection,
        id: ChallengeId,
        user: UserId,
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
        let step = ladder_move(&state, to, now, policy);
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

    /// Commits and wakes the audit chainer.
    async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), StoreError> {
        tx.commit().await?;
        self.audit_pending.notify_one();
        Ok(())
    }
}

/// Applies the migrations; seals the genesis head when this run created the trail (or added
/// sealed genesis to an empty one), never on a later start.
async fn migrate_and_seal_genesis(pool: &sqlx::PgPool, sealer: &AuditSealer) -> Result<(), StoreError> {
    let has_table: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    let applied_before: Vec<i64> = if has_table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await?
    } else {
        Vec::new()
    };
    MIGRATOR.run(pool).await.map_err(StoreError::Migrate)?;
    if seals_genesis(&applied_before) {
        sqlx::query(
            "UPDATE audit_head SET mac = $1 WHERE id = 1 AND seq = 0 AND mac = ''::bytea
               AND NOT EXISTS (SELECT 1 FROM audit_events)",
        )
        .bind(genesis_mac(sealer))
        .execute(pool)
        .await?;
    }
    Ok(())
}

fn micros_to_time(micros: i64) -> Result<OffsetDateTime, StoreError> {
    from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} out of range")))
}

fn app_from_row(row: &sqlx::postgres::PgRow) -> Result<AppRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(AppRecord {
        id: AppId(row.try_get::<Uuid, _>("id")?),
        name: row.try_get("name")?,
        key_id: row.try_get("key_id")?,
        key_hash: row.try_get("key_hash")?,
        scopes: scopes.parse().map_err(|e| StoreError::Corrupt(format!("app scopes: {e}")))?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId(row.try_get::<Uuid, _>("id")?),
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_privileged: row.try_get("is_privileged")?,
        created_at: row.try_get("created_at")?,
    })
}

fn enrollment_from_row(row: &sqlx::postgres::PgRow) -> Result<EnrollmentRecord, StoreError> {
    Ok(EnrollmentRecord {
        id: EnrollmentId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        code_hash: row.try_get("code_hash")?,
        code_sealed: row.try_get("code_sealed")?,
        is_second_device: row.try_get("is_second_device")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        device_id: row.try_get::<Option<Uuid>, _>("device_id")?.map(DeviceId),
    })
}

fn device_from_row(row: &sqlx::postgres::PgRow) -> Result<DeviceRecord, StoreError> {
    device_from_prefixed(row, "")
}

/// A device from columns named `{prefix}id`, `{prefix}user_id`, … (for rows that join it).
fn device_from_prefixed(row: &sqlx::postgres::PgRow, prefix: &str) -> Result<DeviceRecord, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(DeviceRecord {
        id: DeviceId(row.try_get(column("id").as_str())?),
        user_id: UserId(row.try_get(column("user_id").as_str())?),
        public_key: row.try_get(column("public_key").as_str())?,
        push: StoredPush {
            provider: row.try_get(column("push_provider").as_str())?,
            token: row.try_get(column("push_token").as_str())?,
            environment: row.try_get(column("push_environment").as_str())?,
        },
        name: row.try_get(column("name").as_str())?,
        platform: row.try_get(column("platform").as_str())?,
        created_at: row.try_get(column("created_at").as_str())?,
        revoked_at: row.try_get(column("revoked_at").as_str())?,
        last_counter: row.try_get(column("last_counter").as_str())?,
    })
}

/// `DEVICE_COLUMNS` of table alias `d`, renamed `d_…` so they can sit beside another table's.
fn prefixed_device_columns() -> String {
    DEVICE_COLUMNS.split(", ").map(|c| format!("d.{c} AS d_{c}")).collect::<Vec<_>>().join(", ")
}

fn challenge_from_row(row: &sqlx::postgres::PgRow) -> Result<ChallengeRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(ChallengeRecord {
        id: ChallengeId(row.try_get("id")?),
        app_id: AppId(row.try_get("app_id")?),
        user_id: UserId(row.try_get("user_id")?),
        state: state.parse().map_err(StoreError::Corrupt)?,
        number_tag: row.try_get("number_tag")?,
        number_sealed: row.try_get("number_sealed")?,
        number_digits: row.try_get("number_digits")?,
        server_nonce: row.try_get("server_nonce")?,
        app_name: row.try_get("app_name")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        location: row.try_get("location")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by_device: row.try_get::<Option<Uuid>, _>("decided_by_device")?.map(DeviceId),
        redeemed_at: row.try_get("redeemed_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: row.try_get("request_hash")?,
        is_silent: row.try_get("is_silent")?,
        source_prefix: row.try_get("source_prefix")?,
    })
}

const CHALLENGE_COLUMNS: &str = "id, app_id, user_id, state, number_tag, number_sealed, number_digits, server_nonce, app_name, ip, user_agent, location, created_at, expires_at, decided_at, decided_by_device, redeemed_at, idempotency_key, request_hash, is_silent, source_prefix";

fn push_state_from_row(row: &sqlx::postgres::PgRow) -> Result<PushState, StoreError> {
    Ok(PushState {
        consecutive_failures: row.try_get("consecutive_failures")?,
        freezes: row.try_get("freezes")?,
        frozen_until: row.try_get("frozen_until")?,
        needs_strong_factor: row.try_get("needs_strong_factor")?,
        needs_admin_review: row.try_get("needs_admin_review")?,
        hard_locked: row.try_get("hard_locked")?,
        last_wrong_number_at: row.try_get("last_wrong_number_at")?,
        reason: row.try_get("reason")?,
        unanswered: row.try_get("unanswered")?,
        refused_prompts: row.try_get("refused_prompts")?,
        under_attack_since: row.try_get("under_attack_since")?,
        last_refused_at: row.try_get("last_refused_at")?,
    })
}

const PUSH_STATE_COLUMNS: &str = "consecutive_failures, freezes, frozen_until, needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, unanswered, refused_prompts, under_attack_since, last_refused_at";

async fn save_push_state(
    conn: &mut PgConnection,
    user: UserId,
    state: &PushState,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE user_push_state SET version = version + 1, consecutive_failures = $2, freezes = $3, frozen_until = $4,
             needs_strong_factor = $5, needs_admin_review = $6, hard_locked = $7, last_wrong_number_at = $8,
             reason = $9, updated_at = $10, unanswered = $11, refused_prompts = $12, under_attack_since = $13,
             last_refused_at = $14
         WHERE user_id = $1",
    )
    .bind(user.0)
    .bind(state.consecutive_failures)
    .bind(state.freezes)
    .bind(state.frozen_until)
    .bind(state.needs_strong_factor)
    .bind(state.needs_admin_review)
    .bind(state.hard_locked)
    .bind(state.last_wrong_number_at)
    .bind(&state.reason)
    .bind(now)
    .bind(state.unanswered)
    .bind(state.refused_prompts)
    .bind(state.under_attack_since)
    .bind(state.last_refused_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Re-reads of a user's standing before a device answer gives up (each one means another
/// change for that user committed meanwhile).
const STANDING_RETRIES: usize = 32;

/// Whether reading a user's standing also locks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// A plain read; a later statement checks the version under the lock (optimistic).
    None,
    /// Locked for the rest of the transaction: the per-user lock that serialises their prompts,
    /// answers, expiries and unfreezes across instances. Its own statement, so the statements
    /// after it read what the previous holder committed.
    ForUpdate,
}

/// The user's push standing and its version. The row is created on first use (users created
/// before migration 0004 have none), so there is always a row to read or lock.
async fn read_standing(
    conn: &mut PgConnection,
    user: UserId,
    now: OffsetDateTime,
    lock: Lock,
) -> Result<(PushState, i64), StoreError> {
    let suffix = if lock == Lock::ForUpdate { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {PUSH_STATE_COLUMNS}, version FROM user_push_state WHERE user_id = $1{suffix}");
    for _ in 0..2 {
        if let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user.0).fetch_optional(&mut *conn).await?
        {
            return Ok((push_state_from_row(&row)?, row.try_get("version")?));
        }
        sqlx::query(
            "INSERT INTO user_push_state (user_id, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.0)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Err(StoreError::Corrupt(format!("push state of user {user} vanished while being read")))
}

/// A device answer as one statement. `standing` locks the user's standing and checks it is the
/// version the ladder move was computed from; `dv` locks the device and checks it is active and
/// the counter increases; only then `c` moves the challenge by compare-and-set, and the counter,
/// audit event, notification, ladder move and alert follow from `c`'s row. Locks are taken
/// standing first, like every path that changes a user's prompts. The database clock decides
/// whether the challenge is still open (`now()`), whatever this instance's clock says.
fn decide_statement(to: ChallengeState, step: Option<&LadderMove>) -> String {
    transition_statement(
        "standing AS (SELECT 1 FROM user_push_state WHERE user_id = $5 AND version = $6 FOR UPDATE),
         dv AS (SELECT 1 FROM devices WHERE id = $1 AND revoked_at IS NULL AND last_counter < $2 FOR UPDATE),",
        &format!(
            "UPDATE challenges SET state = $3, decided_at = now(), decided_by_device = $1
             WHERE id = $4 AND user_id = $5 AND {} AND expires_at > now()
               AND EXISTS (SELECT 1 FROM standing) AND EXISTS (SELECT 1 FROM dv)",
            may_become(to)
        ),
        7,
        step,
        ", d AS (UPDATE devices SET last_counter = $2 WHERE id = $1 AND last_counter < $2 AND EXISTS (SELECT 1 FROM c))",
        "SELECT EXISTS (SELECT 1 FROM standing) AS fresh, EXISTS (SELECT 1 FROM dv) AS device_ok,
                (SELECT COUNT(*) FROM n) AS notified, c.*
         FROM (SELECT 1) AS one LEFT JOIN c ON TRUE",
    )
}

/// A new prompt as one statement: `standing` locks the user's standing and checks its version
/// (see `create_challenge`), `bump` moves the version on and counts each prompt `old` really
/// cancelled as unanswered (the ladder's `PushEvent::Unanswered`), `old` cancels the prompts it supersedes
/// and `olda` writes their audit events for the rows actually cancelled; then the challenge, its
/// push jobs and its own audit event. Parameters: the 21 challenge columns, the version, the
/// superseded ids, the push devices, then the audit events (see [`EventArrays`]). The TTL runs
/// on the database clock: `expires_at` is the database's `now()` plus the TTL.
fn create_statement() -> String {
    let may_cancel = may_become(ChallengeState::Cancelled);
    format!(
        "WITH standing AS (SELECT 1 FROM user_push_state WHERE user_id = $3 AND version = $22 FOR UPDATE),
              old AS (UPDATE challenges SET state = 'cancelled', decided_at = $13
                      WHERE id = ANY($23::uuid[]) AND {may_cancel} AND EXISTS (SELECT 1 FROM standing)
                      RETURNING id),
              bump AS (UPDATE user_push_state SET version = version + 1,
                              unanswered = unanswered + (SELECT COUNT(*) FROM old)
                       WHERE user_id = $3 AND EXISTS (SELECT 1 FROM standing)),
              events AS (SELECT * FROM UNNEST($25::uuid[], $26::bytea[], $27::timestamptz[], $28::text[], $29::text[],
                                              $30::text[], $31::text[], $32::bytea[])
                         AS e(challenge_id, event_id, occurred_at, actor, action, subject, details, mac)),
              olda AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
                       SELECT e.event_id, e.occurred_at, e.actor, e.action, e.subject, e.details, e.mac
                       FROM events e JOIN old ON old.id = e.challenge_id),
              n AS (SELECT pg_notify('countersign_challenges', id::text) FROM old),
              ch AS (INSERT INTO challenges ({CHALLENGE_COLUMNS})
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                            now() + ($14::timestamptz - $13::timestamptz), $15, $16, $17, $18, $19, $20, $21
                     WHERE EXISTS (SELECT 1 FROM standing)
                     RETURNING expires_at),
              jobs AS (INSERT INTO push_outbox (challenge_id, device_id, state, next_attempt_at, updated_at)
                       SELECT $1, device, 'queued', $13, $13 FROM UNNEST($24::uuid[]) AS device
                       WHERE EXISTS (SELECT 1 FROM standing)),
              a AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
                    SELECT e.event_id, e.occurred_at, e.actor, e.action, e.subject, e.details, e.mac
                    FROM events e WHERE e.challenge_id = $1 AND EXISTS (SELECT 1 FROM standing))
         SELECT EXISTS (SELECT 1 FROM standing) AS fresh, (SELECT COUNT(*) FROM n) AS notified,
                (SELECT expires_at FROM ch) AS expires_at"
    )
}

/// Audit events to write in one statement, as the parallel arrays it unnests: each keyed by the
/// challenge it is about (`create_statement` writes a superseded prompt's only if it was
/// cancelled).
#[derive(Default)]
struct EventArrays {
    challenge_ids: Vec<Uuid>,
    event_ids: Vec<Vec<u8>>,
    times: Vec<OffsetDateTime>,
    actors: Vec<String>,
    actions: Vec<String>,
    subjects: Vec<String>,
    details: Vec<String>,
    macs: Vec<Vec<u8>>,
}

impl EventArrays {
    fn push(&mut self, challenge: Uuid, p: &PendingRow) -> Result<(), StoreError> {
        self.challenge_ids.push(challenge);
        self.event_ids.push(p.event_id.to_vec());
        self.times.push(micros_to_time(p.row.occurred_at_micros)?);
        self.actors.push(p.row.actor.clone());
        self.actions.push(p.row.action.clone());
        self.subjects.push(p.row.subject.clone());
        self.details.push(p.row.details.clone());
        self.macs.push(p.mac.clone());
        Ok(())
    }

    fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        query
            .bind(self.challenge_ids)
            .bind(self.event_ids)
            .bind(self.times)
            .bind(self.actors)
            .bind(self.actions)
            .bind(self.subjects)
            .bind(self.details)
            .bind(self.macs)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// One statement for a challenge transition. `c` is the conditional UPDATE (`update`, without
/// RETURNING); the audit event (`a`), the notification for other instances (`n`) and, for a
/// ladder move, the user's new standing (`p`) and its alert (`al`) are written from `c`'s row,
/// so they happen with the transition or not at all. `prelude` adds CTEs before `c`, `extra`
/// (starting with a comma) after; `result` is the final SELECT (it must read `n`, e.g.
/// `(SELECT COUNT(*) FROM n)`, for the notification to be sent). Parameters after the update's
/// own start at `$first` and are bound by [`bind_audit`] then [`bind_ladder`].
fn transition_statement(
    prelude: &str,
    update: &str,
    first: usize,
    step: Option<&LadderMove>,
    extra: &str,
    result: &str,
) -> String {
    let params = |from: usize, count: usize| {
        (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    };
    let mut sql = format!(
        "WITH {prelude} c AS ({update} RETURNING {CHALLENGE_COLUMNS}),
         a AS (INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
               SELECT {} FROM c),
         n AS (SELECT pg_notify('countersign_challenges', id::text) FROM c)",
        params(first, 7)
    );
    if let Some(step) = step {
        sql.push_str(&format!(
            ", p AS (UPDATE user_push_state SET version = version + 1, (consecutive_failures, freezes, frozen_until,
                     needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, updated_at,
                     unanswered, refused_prompts, under_attack_since, last_refused_at) = ({})
                     WHERE user_id = (SELECT user_id FROM c))",
            params(first + 7, 13)
        ));
        if step.alert.is_some() {
            sql.push_str(&format!(
                ", al AS (INSERT INTO alerts (kind, subject, details, created_at) SELECT {} FROM c)",
                params(first + 20, 4)
            ));
        }
    }
    sql.push_str(extra);
    sql.push(' ');
    sql.push_str(result);
    sql
}

fn bind_audit<'q>(query: PgQuery<'q>, p: &PendingRow) -> Result<PgQuery<'q>, StoreError> {
    Ok(query
        .bind(p.event_id.to_vec())
        .bind(micros_to_time(p.row.occurred_at_micros)?)
        .bind(p.row.actor.clone())
        .bind(p.row.action.clone())
        .bind(p.row.subject.clone())
        .bind(p.row.details.clone())
        .bind(p.mac.clone()))
}

/// Binds a ladder move's parameters for [`transition_statement`]: the new standing, and the
/// alert when the move escalates.
fn bind_ladder<'q>(
    query: PgQuery<'q>,
    user: UserId,
    step: Option<&LadderMove>,
    now: OffsetDateTime,
) -> PgQuery<'q> {
    let Some(step) = step else { return query };
    let state = &step.next;
    let query = query
        .bind(state.consecutive_failures)
        .bind(state.freezes)
        .bind(state.frozen_until)
        .bind(state.needs_strong_factor)
        .bind(state.needs_admin_review)
        .bind(state.hard_locked)
        .bind(state.last_wrong_number_at)
        .bind(state.reason.clone())
        .bind(now)
        .bind(state.unanswered)
        .bind(state.refused_prompts)
        .bind(state.under_attack_since)
        .bind(state.last_refused_at);
    match step.alert {
        Some(kind) => {
            query.bind(kind).bind(Subject::User(user).to_string()).bind(step.alert_details(user)).bind(now)
        }
        None => query,
    }
}

/// Counts an escalation once its transition is committed.
fn count_escalation(step: Option<&LadderMove>) {
    if let Some(kind) = step.and_then(|s| s.alert) {
        metrics::counter!("countersign_push_escalations_total", "kind" => kind).increment(1);
    }
}

async fn insert_alert(
    conn: &mut PgConnection,
    kind: &str,
    subject: &Subject,
    details: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO alerts (kind, subject, details, created_at) VALUES ($1, $2, $3, $4)")
        .bind(kind)
        .bind(subject.to_string())
        .bind(details)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn stored_event_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        occurred_at_micros: unix_micros(row.try_get("occurred_at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

const ENROLLMENT_COLUMNS: &str = "id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at, used_at, device_id";
const DEVICE_COLUMNS: &str = "id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at, revoked_at, last_counter";

const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";

#[async_trait]
impl Store for PgStore {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // A one-off sqlx pool: the migrator takes one, and runs once per start.
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&self.url).await?;
        let result = migrate_and_seal_genesis(&pool, &self.sealer).await;
        pool.close().await;
        result
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(|e| StoreError::NotMigrated(format!("cannot read migrations table ({e})")))?;
        check_migrations_applied(&MIGRATOR, &applied)
    }

    async fn database_now(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(Some(sqlx::query_scalar("SELECT now()").fetch_one(&mut *self.conn().await?).await?))
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // With the push-standing row the user's prompts will lock.
        sqlx::query(
            "WITH u AS (INSERT INTO users (id, username, display_name, is_privileged, created_at)
                        VALUES ($1, $2, $3, $4, $5))
             INSERT INTO user_push_state (user_id, updated_at) VALUES ($1, $5)",
        )
        .bind(user.id.0)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(user.is_privileged)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, is_privileged, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&mut *self.conn().await?)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn delete_user(
        &self,
        id: UserId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let freed_name = format!("deleted:{}", id.0);
        let deleted = sqlx::query(
            "UPDATE users SET deleted_at = $2, username = $3 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.0)
        .bind(at)
        .bind(freed_name)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked =
            sqlx::query("UPDATE devices SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id.0)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE enrollments SET expires_at = $2, code_sealed = NULL WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(id.0)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let mut audit = audit;
        if let serde_json::Value::Object(details) = &mut audit.details {
            details.insert("devices_revoked".into(), revoked.into());
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(revoked)
    }
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO apps (id, name, key_id, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(app.id.0)
        .bind(&app.name)
        .bind(&app.key_id)
        .bind(&app.key_hash)
        .bind(app.scopes.to_string())
        .bind(app.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app)
    }

    async fn revoke_app(
        &self,
        id: AppId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AppRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(
            "UPDATE apps SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
             RETURNING id, name, key_id, key_hash, scopes, created_at, revoked_at",
        )
        .bind(id.0)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let app = app_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app)
    }

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE key_id = $1"));
        sqlx::query(sql)
            .bind(key_id)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1"));
        sqlx::query(sql)
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"));
        sqlx::query(sql).fetch_all(&mut *self.conn().await?).await?.iter().map(app_from_row).collect()
    }
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn create_enrollment(
        &self,
        e: EnrollmentRecord,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_enrollment(&mut tx, &e).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(e)
    }

    async fn create_enrollment_consuming_approval(
        &self,
        e: EnrollmentRecord,
        approval: ApprovalProof,
        redeemed: AuditEvent,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // Fresh by the database clock, like a redeem.
        let consumed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'redeemed', redeemed_at = now()
             WHERE id = $1 AND app_id = $2 AND user_id = $3 AND {}
               AND decided_at > now() - $4::bigint * interval '1 microsecond'",
            may_become(ChallengeState::Redeemed)
        )))
        .bind(approval.challenge.0)
        .bind(approval.app_id.0)
        .bind(approval.user.0)
        .bind(approval.window.whole_microseconds() as i64)
        .execute(&mut *tx)
        .await?;
        if consumed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &redeemed).await?;
        insert_enrollment(&mut tx, &e).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(e)
    }

    async fn enrollment_by_id(&self, id: EnrollmentId) -> Result<Option<EnrollmentRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = $1"));
        sqlx::query(sql)
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(enrollment_from_row)
            .transpose()
    }

    async fn enrollment_by_code_hash(
        &self,
        code_hash: &[u8],
    ) -> Result<Option<EnrollmentRecord>, StoreError> {
        let sql =
            sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE code_hash = $1"));
        sqlx::query(sql)
            .bind(code_hash)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(enrollment_from_row)
            .transpose()
    }

    async fn enroll_device(
        &self,
        enrollment: &EnrollmentRecord,
        d: DeviceRecord,
        notice: (&str, String),
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // Serialises enrollments of one user, so two first-device enrollments cannot both win.
        let user = sqlx::query("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE")
            .bind(d.user_id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(StoreError::NotFound);
        }
        let used = sqlx::query(
            "UPDATE enrollments SET used_at = $2, device_id = $3, code_sealed = NULL
             WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(enrollment.id.0)
        .bind(d.created_at)
        .bind(d.id.0)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(d.user_id.0)
                .fetch_one(&mut *tx)
                .await?;
        if active > 0 && !enrollment.is_second_device {
            return Err(StoreError::Conflict(Conflict::SecondDevice));
        }
        sqlx::query(
            "INSERT INTO devices (id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.0)
        .bind(d.user_id.0)
        .bind(&d.public_key)
        .bind(&d.push.provider)
        .bind(&d.push.token)
        .bind(&d.push.environment)
        .bind(&d.name)
        .bind(&d.platform)
        .bind(d.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        sqlx::query(
            "INSERT INTO device_notices (device_id, kind, details, created_at)
             SELECT id, $3, $4, $5 FROM devices WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2",
        )
        .bind(d.user_id.0)
        .bind(d.id.0)
        .bind(notice.0)
        .bind(&notice.1)
        .bind(d.created_at)
        .execute(&mut *tx)
        .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(d)
    }

    async fn device_by_id(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"));
        sqlx::query(sql)
            .bind(id.0)
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn devices_for_user(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id"
        ));
        sqlx::query(sql)
            .bind(user.0)
            .fetch_all(&mut *self.conn().await?)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn public_key_owner(&self, public_key: &[u8]) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM devices WHERE public_key = $1")
            .bind(public_key)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(owner.map(UserId))
    }

    async fn push_token_owner(&self, provider: &str, token: &str) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM devices WHERE push_provider = $1 AND push_token = $2 AND revoked_at IS NULL",
        )
        .bind(provider)
        .bind(token)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(owner.map(UserId))
    }

    async fn revoke_device(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {DEVICE_COLUMNS}"
        ));
        let row = sqlx::query(sql)
            .bind(id.0)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let device = device_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(device)
    }

    async fn update_push(&self, id: DeviceId, push: StoredPush, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(
            "UPDATE devices SET push_provider = $2, push_token = $3, push_environment = $4
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.0)
        .bind(&push.provider)
        .bind(&push.token)
        .bind(&push.environment)
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn remember_request_nonce(
        &self,
        device: DeviceId,
        nonce: &[u8],
        expires_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // One autocommitted statement on the hot path; expired nonces are purged in the
        // background (`purge_expired_nonces`).
        let inserted = sqlx::query(
            "INSERT INTO device_request_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(device.0)
        .bind(nonce)
        .bind(expires_at)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn purge_expired_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM device_request_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *self.conn().await?)
            .await?
            .rows_affected())
    }

    async fn device_notices(
        &self,
        device: DeviceId,
        since: OffsetDateTime,
    ) -> Result<Vec<NoticeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_id, kind, details, created_at FROM device_notices
             WHERE device_id = $1 AND created_at >= $2 ORDER BY id",
        )
        .bind(device.0)
        .bind(since)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NoticeRecord {
                    id: row.try_get("id")?,
                    device_id: DeviceId(row.try_get("device_id")?),
                    kind: row.try_get("kind")?,
                    details: row.try_get("details")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT public_key, sealed_pkcs8, created_at FROM server_keys WHERE id = 1")
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.map(|row| {
            Ok(ServerKeyRecord {
                public_key: row.try_get("public_key")?,
                sealed_pkcs8: row.try_get("sealed_pkcs8")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn insert_server_key(&self, key: ServerKeyRecord) -> Result<ServerKeyRecord, StoreError> {
        sqlx::query(
            "INSERT INTO server_keys (id, public_key, sealed_pkcs8, created_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&key.public_key)
        .bind(&key.sealed_pkcs8)
        .bind(key.created_at)
        .execute(&mut *self.conn().await?)
        .await?;
        self.server_key().await?.ok_or_else(|| StoreError::Corrupt("server key vanished after insert".into()))
    }
}

#[async_trait]
impl ChallengeStore for PgStore {
    async fn prompt_target(&self, username: &str, recent: u32) -> Result<Option<PromptTarget>, StoreError> {
        // One round trip: the user, their active devices, and their recent number tags.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT u.id AS u_id, u.username AS u_username, u.display_name AS u_display_name,
                    u.is_privileged AS u_is_privileged, u.created_at AS u_created_at,
                    ARRAY(SELECT number_tag FROM challenges WHERE user_id = u.id
                          ORDER BY created_at DESC LIMIT $2) AS recent_tags,
                    {}
             FROM users u LEFT JOIN devices d ON d.user_id = u.id AND d.revoked_at IS NULL
             WHERE u.username = $1 ORDER BY d.created_at, d.id",
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
        let user = UserRecord {
            id: UserId(first.try_get("u_id")?),
            username: first.try_get("u_username")?,
            display_name: first.try_get("u_display_name")?,
            is_privileged: first.try_get("u_is_privileged")?,
            created_at: first.try_get("u_created_at")?,
        };
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
                        ARRAY(SELECT created_at FROM challenges WHERE user_id = $1 AND created_at > $2) AS recent,
                        CASE WHEN $3::text IS NULL THEN NULL
                             ELSE (SELECT COUNT(DISTINCT user_id) FROM challenges
                                   WHERE source_prefix = $3 AND created_at > $4 AND user_id <> $1) END AS source_users,
                        ARRAY(SELECT id FROM challenges WHERE user_id = $1 AND state = 'pending') AS pending,
                        (SELECT COUNT(*) FROM challenges
                         WHERE user_id = $1 AND created_at > $5 AND NOT is_silent) AS audible_today
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
            let query = sqlx::query(sqlx::AssertSqlSafe(create_statement()))
                .bind(record.id.0)
                .bind(record.app_id.0)
                .bind(record.user_id.0)
                .bind(record.state.as_str())
                .bind(record.number_tag.clone())
                .bind(record.number_sealed.clone())
                .bind(record.number_digits)
                .bind(record.server_nonce.clone())
                .bind(record.app_name.clone())
                .bind(record.ip.clone())
                .bind(record.user_agent.clone())
                .bind(record.location.clone())
                .bind(record.created_at)
                .bind(record.expires_at)
                .bind(record.decided_at)
                .bind(record.decided_by_device.map(|d| d.0))
                .bind(record.redeemed_at)
                .bind(record.idempotency_key.clone())
                .bind(record.request_hash.clone())
                .bind(record.is_silent)
                .bind(record.source_prefix.clone())
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
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1"));
        sqlx::query(sql)
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
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE app_id = $1 AND idempotency_key = $2"
        ));
        sqlx::query(sql)
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
        Ok(sqlx::query_scalar(
            "SELECT number_tag FROM challenges WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(user.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ));
        sqlx::query(sql)
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
                    sqlx::query_scalar("SELECT revoked_at FROM devices WHERE id = $1")
                        .bind(device.0)
                        .fetch_optional(&mut *conn)
                        .await?;
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
            let user: Uuid = sqlx::query_scalar("SELECT user_id FROM challenges WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut conn = self.conn().await?;
            let mut tx = conn.begin().await?;
            let ended =
                self.end_pending(&mut tx, id, UserId(user), transition, now, &pending, policy).await?;
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
                    before.user_id,
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

#[async_trait]
impl FatigueStore for PgStore {
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_STATE_COLUMNS} FROM user_push_state WHERE user_id = $1"
        ));
        let row = sqlx::query(sql).bind(user.0).fetch_optional(&mut *self.conn().await?).await?;
        row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
    }

    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let (before, _) = read_standing(&mut tx, user, now, Lock::ForUpdate).await?;
        let (after, audit) = change(&before);
        save_push_state(&mut tx, user, &after, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok((before, after))
    }

    async fn troubled_users(&self, limit: u32) -> Result<Vec<(UserRecord, PushState)>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT u.id, u.username, u.display_name, u.is_privileged, u.created_at, {PUSH_STATE_COLUMNS}
             FROM user_push_state s JOIN users u ON u.id = s.user_id
             WHERE u.deleted_at IS NULL AND (s.consecutive_failures > 0 OR s.frozen_until IS NOT NULL
                   OR s.needs_strong_factor OR s.needs_admin_review OR s.hard_locked
                   OR s.unanswered >= 2 OR s.under_attack_since IS NOT NULL)
             ORDER BY s.hard_locked DESC, s.needs_admin_review DESC, s.needs_strong_factor DESC,
                      s.consecutive_failures DESC LIMIT $1"
        ));
        let rows = sqlx::query(sql).bind(i64::from(limit)).fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(|row| Ok((user_from_row(row)?, push_state_from_row(row)?))).collect()
    }

    async fn record_refused_prompt(
        &self,
        user: UserId,
        reason: &str,
        now: OffsetDateTime,
        audit: AuditEvent,
        policy: &Policy,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let (mut state, _) = read_standing(&mut tx, user, now, Lock::ForUpdate).await?;
        let opens_incident = crate::fatigue::model::refuse_prompt(&mut state, now, policy);
        save_push_state(&mut tx, user, &state, now).await?;
        if opens_incident {
            let details = incident_alert_details(user, &state, reason);
            insert_alert(&mut tx, "push_bombing", &Subject::User(user), &details, now).await?;
        }
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(opens_incident)
    }

    async fn record_signal(
        &self,
        audit: AuditEvent,
        (kind, subject, details): (&str, &Subject, &str),
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    fn audit_pending_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.audit_pending)
    }

    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        // The head row lock makes chainers (one per instance) take turns.
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT id, event_id, occurred_at, actor, action, subject, details, mac FROM audit_pending
             ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let pending = rows
            .iter()
            .map(|row| {
                Ok(PendingEvent {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    row: crate::audit::EventRow {
                        occurred_at_micros: unix_micros(row.try_get("occurred_at")?),
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        details: row.try_get("details")?,
                    },
                    mac: row.try_get("mac")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // A pending event whose id is already on the chain is a captured copy (checked here, not
        // left to the unique index, which a database attacker can drop).
        let chained: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT event_id, seq FROM audit_events WHERE event_id = ANY($1::bytea[])")
                .bind(pending.iter().map(|p| p.event_id.as_slice()).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await?;
        let batch = link_pending(
            &self.sealer,
            head.try_get("seq")?,
            &head.try_get::<Vec<u8>, _>("hash")?,
            &pending,
            &chained,
        )?;
        let times = batch
            .events
            .iter()
            .map(|e| micros_to_time(e.occurred_at_micros))
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash, event_id)
             SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bytea[], $8::bytea[], $9::bytea[])",
        )
        .bind(batch.events.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(times)
        .bind(batch.events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.details.as_str()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.prev_hash.as_slice()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.hash.as_slice()).collect::<Vec<_>>())
        .bind(batch.events.iter().map(|e| e.event_id.as_deref()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM audit_pending WHERE id = ANY($1)")
            .bind(pending.iter().map(|p| p.id).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, mac = $3 WHERE id = 1")
            .bind(batch.head.seq)
            .bind(&batch.head.hash)
            .bind(&batch.head.mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(batch.events.len() as u64)
    }

    async fn audit_pending_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
            .fetch_one(&mut *self.conn().await?)
            .await?)
    }

    async fn audit_head(&self) -> Result<StoredHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        let row = row.ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        Ok(StoredHead { seq: row.try_get("seq")?, hash: row.try_get("hash")?, mac: row.try_get("mac")? })
    }

    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, occurred_at, actor, action, subject, details, prev_hash, hash FROM audit_events
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(up_to)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_events_about(
        &self,
        subject: &Subject,
        action: crate::audit::Action,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, occurred_at, actor, action, subject, details, prev_hash, hash FROM audit_events
             WHERE subject = $1 AND action = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(subject.to_string())
        .bind(action.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_max_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM audit_events")
            .fetch_one(&mut *self.conn().await?)
            .await?)
    }

    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let row =
            sqlx::query(DUPLICATE_EVENT_SQL).bind(up_to).fetch_optional(&mut *self.conn().await?).await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("first_seq")?))).transpose()
    }
}

#[async_trait]
impl AlertStore for PgStore {
    async fn raise_alert(
        &self,
        kind: &str,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        insert_alert(&mut conn, kind, subject, details, now).await
    }

    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError> {
        let row = sqlx::query(
            "UPDATE alert_cursor SET lease_until = $2
             WHERE id = 1 AND (lease_until IS NULL OR lease_until < $1) AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
             RETURNING last_delivered, attempts",
        )
        .bind(now)
        .bind(now + lease)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        row.map(|row| {
            Ok(AlertCursor {
                last_delivered: row.try_get("last_delivered")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .transpose()
    }

    async fn next_alert(&self, after: i64) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, subject, details, created_at FROM alerts WHERE id > $1 ORDER BY id LIMIT 1",
        )
        .bind(after)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        row.map(|row| {
            Ok(AlertRecord {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn release_alert_cursor(
        &self,
        delivered: Option<i64>,
        retry_at: Option<OffsetDateTime>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        match delivered {
            Some(id) => sqlx::query(
                "UPDATE alert_cursor SET last_delivered = $1, attempts = 0, next_attempt_at = NULL, lease_until = NULL, last_error = NULL WHERE id = 1",
            )
            .bind(id)
            .execute(&mut *self.conn().await?)
            .await?,
            None => sqlx::query(
                "UPDATE alert_cursor SET attempts = attempts + 1, next_attempt_at = $1, lease_until = NULL, last_error = $2 WHERE id = 1",
            )
            .bind(retry_at)
            .bind(error)
            .execute(&mut *self.conn().await?)
            .await?,
        };
        Ok(())
    }
}

#[async_trait]
impl PushOutbox for PgStore {
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError> {
        let rows = sqlx::query(
            "WITH claimed AS (
                 UPDATE push_outbox SET next_attempt_at = $2, attempts = attempts + 1, updated_at = $1
                 WHERE id IN (SELECT id FROM push_outbox WHERE state = 'queued' AND next_attempt_at <= $1
                              ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, challenge_id, device_id, attempts)
             SELECT claimed.id, claimed.challenge_id, claimed.device_id, claimed.attempts,
                    d.push_provider, d.push_token, d.push_environment, c.expires_at
             FROM claimed JOIN devices d ON d.id = claimed.device_id JOIN challenges c ON c.id = claimed.challenge_id",
        )
        .bind(now)
        .bind(now + lease)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PushJob {
                    id: row.try_get("id")?,
                    challenge_id: ChallengeId(row.try_get("challenge_id")?),
                    device_id: DeviceId(row.try_get("device_id")?),
                    attempts: row.try_get("attempts")?,
                    push: StoredPush {
                        provider: row.try_get("push_provider")?,
                        token: row.try_get("push_token")?,
                        environment: row.try_get("push_environment")?,
                    },
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .collect()
    }

    async fn finish_push_job(
        &self,
        id: i64,
        result: PushJobResult,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (state, next, error) = match result {
            PushJobResult::Sent => ("sent", now, None),
            PushJobResult::Retry { at, error } => ("queued", at, Some(error)),
            PushJobResult::Failed { error } => ("failed", now, Some(error)),
        };
        sqlx::query("UPDATE push_outbox SET state = $2, next_attempt_at = $3, last_error = $4, updated_at = $5 WHERE id = $1")
            .bind(id)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(now)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let updated = sqlx::query(
            "UPDATE devices SET push_provider = 'none', push_token = NULL, push_environment = NULL
             WHERE id = $1 AND push_provider <> 'none'",
        )
        .bind(device.0)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            self.append_audit(&mut tx, &audit).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}

async fn insert_enrollment(conn: &mut PgConnection, e: &EnrollmentRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO enrollments (id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.id.0)
    .bind(e.user_id.0)
    .bind(&e.code_hash)
    .bind(&e.code_sealed)
    .bind(e.is_second_device)
    .bind(&e.created_by)
    .bind(e.created_at)
    .bind(e.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
