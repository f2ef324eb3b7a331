//! SQLite store: the embedded default. One instance per database file.
//!
//! Ids are TEXT, timestamps INTEGER microseconds. Write transactions start with
//! `BEGIN IMMEDIATE`, so a writer waits for the lock up front instead of failing when a read
//! lock cannot be upgraded.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::audit::{DUPLICATE_EVENT_SQL, PendingEvent, link_pending, pending_row};
use super::challenges::may_become;
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
use crate::fatigue::model::{Policy, PromptContext, PushState, incident_alert_details, ladder_move};
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    sealer: AuditSealer,
    audit_pending: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file a `sqlite:PATH` URL names.
    pub async fn connect(url: &str, max_connections: u32, sealer: AuditSealer) -> Result<Self, StoreError> {
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            return Err(StoreError::InvalidUrl(
                "sqlite: needs a file path (in-memory databases lose the audit trail)".into(),
            ));
        }
        create_private_database_file(std::path::Path::new(path))?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Database)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx already pings every connection when it is released; a second ping on every
            // acquire doubled the round trips of each one-statement operation.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self { pool, sealer, audit_pending: Arc::new(Notify::new()) })
    }

    /// The pool, for tests that play the attacker with direct SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Writes the event, sealed, for the chainer to link (the same path as on PostgreSQL).
    async fn append_audit(&self, conn: &mut SqliteConnection, event: &AuditEvent) -> Result<(), StoreError> {
        let p = pending_row(&self.sealer, event);
        sqlx::query(
            "INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(p.event_id.as_slice())
        .bind(p.row.occurred_at_micros)
        .bind(&p.row.actor)
        .bind(&p.row.action)
        .bind(&p.row.subject)
        .bind(&p.row.details)
        .bind(&p.mac)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Commits and wakes the audit chainer.
    async fn commit(&self, tx: sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), StoreError> {
        tx.commit().await?;
        self.audit_pending.notify_one();
        Ok(())
    }
}

/// The database holds device keys, sealed secrets and the audit trail: its directory is created
/// 0700 and the file 0600 before SQLite opens it, so its `-wal`/`-shm` files (which SQLite
/// creates with the database file's mode) are private too.
fn create_private_database_file(path: &std::path::Path) -> Result<(), StoreError> {
    let failed = |what: &std::path::Path, e: std::io::Error| {
        StoreError::InvalidUrl(format!("cannot create {}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_files::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    }
    crate::private_files::ensure_private_file(path).map_err(|e| failed(path, e))?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = std::path::PathBuf::from(companion);
        crate::private_files::restrict_if_exists(&companion).map_err(|e| failed(&companion, e))?;
    }
    Ok(())
}

fn time_at(row: &SqliteRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    let micros: i64 = row.try_get(column)?;
    from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("{column} {micros} out of range")))
}

fn uuid_at(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    parse_uuid(&text, column)
}

fn parse_uuid(text: &str, column: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a UUID")))
}

fn optional_time_at(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    let micros: Option<i64> = row.try_get(column)?;
    micros
        .map(|m| from_unix_micros(m).ok_or_else(|| StoreError::Corrupt(format!("{column} {m} out of range"))))
        .transpose()
}

fn enrollment_from_row(row: &SqliteRow) -> Result<EnrollmentRecord, StoreError> {
    let device_id: Option<String> = row.try_get("device_id")?;
    Ok(EnrollmentRecord {
        id: EnrollmentId(uuid_at(row, "id")?),
        user_id: UserId(uuid_at(row, "user_id")?),
        code_hash: row.try_get("code_hash")?,
        code_sealed: row.try_get("code_sealed")?,
        is_second_device: row.try_get("is_second_device")?,
        created_by: row.try_get("created_by")?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        used_at: optional_time_at(row, "used_at")?,
        device_id: device_id.map(|id| parse_uuid(&id, "device_id").map(DeviceId)).transpose()?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        id: DeviceId(uuid_at(row, "id")?),
        user_id: UserId(uuid_at(row, "user_id")?),
        public_key: row.try_get("public_key")?,
        push: StoredPush {
            provider: row.try_get("push_provider")?,
            token: row.try_get("push_token")?,
            environment: row.try_get("push_environment")?,
        },
        name: row.try_get("name")?,
        platform: row.try_get("platform")?,
        created_at: time_at(row, "created_at")?,
        revoked_at: optional_time_at(row, "revoked_at")?,
        last_counter: row.try_get("last_counter")?,
    })
}

fn challenge_from_row(row: &SqliteRow) -> Result<ChallengeRecord, StoreError> {
    let state: String = row.try_get("state")?;
    let decided_by: Option<String> = row.try_get("decided_by_device")?;
    Ok(ChallengeRecord {
        id: ChallengeId(uuid_at(row, "id")?),
        app_id: AppId(uuid_at(row, "app_id")?),
        user_id: UserId(uuid_at(row, "user_id")?),
        state: state.parse().map_err(StoreError::Corrupt)?,
        number_tag: row.try_get("number_tag")?,
        number_sealed: row.try_get("number_sealed")?,
        number_digits: row.try_get("number_digits")?,
        server_nonce: row.try_get("server_nonce")?,
        app_name: row.try_get("app_name")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        location: row.try_get("location")?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        decided_at: optional_time_at(row, "decided_at")?,
        decided_by_device: decided_by
            .map(|id| parse_uuid(&id, "decided_by_device").map(DeviceId))
            .transpose()?,
        redeemed_at: optional_time_at(row, "redeemed_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: row.try_get("request_hash")?,
        is_silent: row.try_get("is_silent")?,
        source_prefix: row.try_get("source_prefix")?,
    })
}

const CHALLENGE_COLUMNS: &str = "id, app_id, user_id, state, number_tag, number_sealed, number_digits, server_nonce, app_name, ip, user_agent, location, created_at, expires_at, decided_at, decided_by_device, redeemed_at, idempotency_key, request_hash, is_silent, source_prefix";

fn push_state_from_row(row: &SqliteRow) -> Result<PushState, StoreError> {
    Ok(PushState {
        consecutive_failures: row.try_get("consecutive_failures")?,
        freezes: row.try_get("freezes")?,
        frozen_until: optional_time_at(row, "frozen_until")?,
        needs_strong_factor: row.try_get("needs_strong_factor")?,
        needs_admin_review: row.try_get("needs_admin_review")?,
        hard_locked: row.try_get("hard_locked")?,
        last_wrong_number_at: optional_time_at(row, "last_wrong_number_at")?,
        reason: row.try_get("reason")?,
        unanswered: row.try_get("unanswered")?,
        refused_prompts: row.try_get("refused_prompts")?,
        under_attack_since: optional_time_at(row, "under_attack_since")?,
        last_refused_at: optional_time_at(row, "last_refused_at")?,
    })
}

const PUSH_STATE_COLUMNS: &str = "consecutive_failures, freezes, frozen_until, needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, unanswered, refused_prompts, under_attack_since, last_refused_at";

/// The user's push standing (write transactions are exclusive on SQLite).
async fn load_push_state(conn: &mut SqliteConnection, user: UserId) -> Result<PushState, StoreError> {
    let sql =
        sqlx::AssertSqlSafe(format!("SELECT {PUSH_STATE_COLUMNS} FROM user_push_state WHERE user_id = ?1"));
    let row = sqlx::query(sql).bind(user.0.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
}

async fn save_push_state(
    conn: &mut SqliteConnection,
    user: UserId,
    state: &PushState,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO user_push_state (user_id, consecutive_failures, freezes, frozen_until, needs_strong_factor,
                                      needs_admin_review, hard_locked, last_wrong_number_at, reason, updated_at,
                                      unanswered, refused_prompts, under_attack_since, last_refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (user_id) DO UPDATE SET consecutive_failures = ?2, freezes = ?3, frozen_until = ?4,
             needs_strong_factor = ?5, needs_admin_review = ?6, hard_locked = ?7, last_wrong_number_at = ?8,
             reason = ?9, updated_at = ?10, unanswered = ?11, refused_prompts = ?12, under_attack_since = ?13,
             last_refused_at = ?14",
    )
    .bind(user.0.to_string())
    .bind(state.consecutive_failures)
    .bind(state.freezes)
    .bind(state.frozen_until.map(unix_micros))
    .bind(state.needs_strong_factor)
    .bind(state.needs_admin_review)
    .bind(state.hard_locked)
    .bind(state.last_wrong_number_at.map(unix_micros))
    .bind(&state.reason)
    .bind(unix_micros(now))
    .bind(state.unanswered)
    .bind(state.refused_prompts)
    .bind(state.under_attack_since.map(unix_micros))
    .bind(state.last_refused_at.map(unix_micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the user's ladder for a challenge that reached `to` (no-op for neutral states).
async fn record_outcome(
    conn: &mut SqliteConnection,
    user: UserId,
    to: ChallengeState,
    now: OffsetDateTime,
    policy: &Policy,
) -> Result<(), StoreError> {
    if crate::fatigue::model::PushEvent::from_state(to).is_none() {
        return Ok(());
    }
    let state = load_push_state(conn, user).await?;
    // The same ladder move and alert as on PostgreSQL (`fatigue::model::ladder_move`).
    if let Some(step) = ladder_move(&state, to, now, policy) {
        save_push_state(conn, user, &step.next, now).await?;
        if let Some(kind) = step.alert {
            insert_alert(conn, kind, &Subject::User(user), &step.alert_details(user), now).await?;
            metrics::counter!("countersign_push_escalations_total", "kind" => kind).increment(1);
        }
    }
    Ok(())
}

async fn insert_alert(
    conn: &mut SqliteConnection,
    kind: &str,
    subject: &Subject,
    details: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO alerts (kind, subject, details, created_at) VALUES (?1, ?2, ?3, ?4)")
        .bind(kind)
        .bind(subject.to_string())
        .bind(details)
        .bind(unix_micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn stored_event_from_row(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        occurred_at_micros: row.try_get("occurred_at")?,
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

fn app_from_row(row: &SqliteRow) -> Result<AppRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(AppRecord {
        id: AppId(uuid_at(row, "id")?),
        name: row.try_get("name")?,
        key_id: row.try_get("key_id")?,
        key_hash: row.try_get("key_hash")?,
        scopes: scopes.parse().map_err(|e| StoreError::Corrupt(format!("app scopes: {e}")))?,
        created_at: time_at(row, "created_at")?,
        revoked_at: optional_time_at(row, "revoked_at")?,
    })
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId(uuid_at(row, "id")?),
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_privileged: row.try_get("is_privileged")?,
        created_at: time_at(row, "created_at")?,
    })
}

const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats { size: self.pool.size(), idle: self.pool.num_idle() }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let has_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let applied_before: Vec<i64> = match has_table {
            Some(_) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(&self.pool)
                    .await?
            }
            None => Vec::new(),
        };
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)?;
        if seals_genesis(&applied_before) {
            sqlx::query(
                "UPDATE audit_head SET mac = ?1 WHERE id = 1 AND seq = 0 AND length(mac) = 0
                   AND NOT EXISTS (SELECT 1 FROM audit_events)",
            )
            .bind(genesis_mac(&self.sealer))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::NotMigrated(format!("cannot read migrations table ({e})")))?;
        check_migrations_applied(&MIGRATOR, &applied)
    }

    async fn database_now(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        // One instance per file: the instance's clock is the only clock.
        Ok(None)
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, is_privileged, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(user.id.0.to_string())
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(user.is_privileged)
        .bind(unix_micros(user.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, is_privileged, created_at FROM users WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
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
        let mut tx = self.begin_write().await?;
        let freed_name = format!("deleted:{}", id.0);
        let deleted = sqlx::query(
            "UPDATE users SET deleted_at = ?2, username = ?3 WHERE id = ?1 AND deleted_at IS NULL",
        )
        .bind(id.0.to_string())
        .bind(unix_micros(at))
        .bind(freed_name)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let revoked =
            sqlx::query("UPDATE devices SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL")
                .bind(id.0.to_string())
                .bind(unix_micros(at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE enrollments SET expires_at = ?2, code_sealed = NULL WHERE user_id = ?1 AND used_at IS NULL AND expires_at > ?2",
        )
        .bind(id.0.to_string())
        .bind(unix_micros(at))
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
impl AppStore for SqliteStore {
    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO apps (id, name, key_id, key_hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(app.id.0.to_string())
        .bind(&app.name)
        .bind(&app.key_id)
        .bind(&app.key_hash)
        .bind(app.scopes.to_string())
        .bind(unix_micros(app.created_at))
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
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE apps SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL
             RETURNING id, name, key_id, key_hash, scopes, created_at, revoked_at",
        )
        .bind(id.0.to_string())
        .bind(unix_micros(at))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let app = app_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(app)
    }

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE key_id = ?1"));
        sqlx::query(sql).bind(key_id).fetch_optional(&self.pool).await?.as_ref().map(app_from_row).transpose()
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE name = ?1"));
        sqlx::query(sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(app_from_row).transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"));
        sqlx::query(sql).fetch_all(&self.pool).await?.iter().map(app_from_row).collect()
    }
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_enrollment(
        &self,
        e: EnrollmentRecord,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
        let consumed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE challenges SET state = 'redeemed', redeemed_at = ?2
             WHERE id = ?1 AND app_id = ?3 AND user_id = ?4 AND {} AND decided_at > ?5",
            may_become(ChallengeState::Redeemed)
        )))
        .bind(approval.challenge.0.to_string())
        .bind(unix_micros(e.created_at))
        .bind(approval.app_id.0.to_string())
        .bind(approval.user.0.to_string())
        .bind(unix_micros(e.created_at - approval.window))
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
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?1"));
        sqlx::query(sql)
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
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
            sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE code_hash = ?1"));
        sqlx::query(sql)
            .bind(code_hash)
            .fetch_optional(&self.pool)
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
        let mut tx = self.begin_write().await?;
        // Serialises enrollments of one user, so two first-device enrollments cannot both win.
        let user = sqlx::query("SELECT id FROM users WHERE id = ?1 AND deleted_at IS NULL")
            .bind(d.user_id.0.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(StoreError::NotFound);
        }
        let used = sqlx::query(
            "UPDATE enrollments SET used_at = ?2, device_id = ?3, code_sealed = NULL
             WHERE id = ?1 AND used_at IS NULL AND expires_at > ?2",
        )
        .bind(enrollment.id.0.to_string())
        .bind(unix_micros(d.created_at))
        .bind(d.id.0.to_string())
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL")
                .bind(d.user_id.0.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if active > 0 && !enrollment.is_second_device {
            return Err(StoreError::Conflict(Conflict::SecondDevice));
        }
        sqlx::query(
            "INSERT INTO devices (id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(d.id.0.to_string())
        .bind(d.user_id.0.to_string())
        .bind(&d.public_key)
        .bind(&d.push.provider)
        .bind(&d.push.token)
        .bind(&d.push.environment)
        .bind(&d.name)
        .bind(&d.platform)
        .bind(unix_micros(d.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_unique_violation)?;
        sqlx::query(
            "INSERT INTO device_notices (device_id, kind, details, created_at)
             SELECT id, ?3, ?4, ?5 FROM devices WHERE user_id = ?1 AND revoked_at IS NULL AND id <> ?2",
        )
        .bind(d.user_id.0.to_string())
        .bind(d.id.0.to_string())
        .bind(notice.0)
        .bind(&notice.1)
        .bind(unix_micros(d.created_at))
        .execute(&mut *tx)
        .await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(d)
    }

    async fn device_by_id(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"));
        sqlx::query(sql)
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn devices_for_user(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 ORDER BY created_at, id"
        ));
        sqlx::query(sql)
            .bind(user.0.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from_row)
            .collect()
    }

    async fn public_key_owner(&self, public_key: &[u8]) -> Result<Option<UserId>, StoreError> {
        let owner: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE public_key = ?1")
            .bind(public_key)
            .fetch_optional(&self.pool)
            .await?;
        owner.map(|id| parse_uuid(&id, "user_id").map(UserId)).transpose()
    }

    async fn push_token_owner(&self, provider: &str, token: &str) -> Result<Option<UserId>, StoreError> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM devices WHERE push_provider = ?1 AND push_token = ?2 AND revoked_at IS NULL",
        )
        .bind(provider)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        owner.map(|id| parse_uuid(&id, "user_id").map(UserId)).transpose()
    }

    async fn revoke_device(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL RETURNING {DEVICE_COLUMNS}"
        ));
        let row = sqlx::query(sql)
            .bind(id.0.to_string())
            .bind(unix_micros(at))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let device = device_from_row(&row)?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(device)
    }

    async fn update_push(&self, id: DeviceId, push: StoredPush, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE devices SET push_provider = ?2, push_token = ?3, push_environment = ?4
             WHERE id = ?1 AND revoked_at IS NULL",
        )
        .bind(id.0.to_string())
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
        let inserted = sqlx::query(
            "INSERT INTO device_request_nonces (device_id, nonce, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )
        .bind(device.0.to_string())
        .bind(nonce)
        .bind(unix_micros(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn purge_expired_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM device_request_nonces WHERE expires_at < ?1")
            .bind(unix_micros(now))
            .execute(&self.pool)
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
             WHERE device_id = ?1 AND created_at >= ?2 ORDER BY id",
        )
        .bind(device.0.to_string())
        .bind(unix_micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NoticeRecord {
                    id: row.try_get("id")?,
                    device_id: DeviceId(uuid_at(row, "device_id")?),
                    kind: row.try_get("kind")?,
                    details: row.try_get("details")?,
                    created_at: time_at(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT public_key, sealed_pkcs8, created_at FROM server_keys WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ServerKeyRecord {
                public_key: row.try_get("public_key")?,
                sealed_pkcs8: row.try_get("sealed_pkcs8")?,
                created_at: time_at(&row, "created_at")?,
            })
        })
        .transpose()
    }

    async fn insert_server_key(&self, key: ServerKeyRecord) -> Result<ServerKeyRecord, StoreError> {
        sqlx::query(
            "INSERT INTO server_keys (id, public_key, sealed_pkcs8, created_at) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&key.public_key)
        .bind(&key.sealed_pkcs8)
        .bind(unix_micros(key.created_at))
        .execute(&self.pool)
        .await?;
        self.server_key().await?.ok_or_else(|| StoreError::Corrupt("server key vanished after insert".into()))
    }
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
        let recent: Vec<i64> =
            sqlx::query_scalar("SELECT created_at FROM challenges WHERE user_id = ?1 AND created_at > ?2")
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
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM challenges WHERE user_id = ?1 AND state = 'pending'),
                    (SELECT COUNT(*) FROM challenges WHERE user_id = ?1 AND created_at > ?2 AND NOT is_silent)",
        )
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
             WHERE user_id = ?1 AND {} RETURNING {CHALLENGE_COLUMNS}",
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
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO challenges ({CHALLENGE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ));
        sqlx::query(sql)
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
            .execute(&mut *tx)
            .await
            .map_err(map_unique_violation)?;
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
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = ?1"));
        sqlx::query(sql)
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
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE app_id = ?1 AND idempotency_key = ?2"
        ));
        sqlx::query(sql)
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
        Ok(sqlx::query_scalar(
            "SELECT number_tag FROM challenges WHERE user_id = ?1 ORDER BY created_at DESC LIMIT ?2",
        )
        .bind(user.0.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recent_challenges(&self, user: UserId, limit: u32) -> Result<Vec<ChallengeRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE user_id = ?1 ORDER BY created_at DESC, id LIMIT ?2"
        ));
        sqlx::query(sql)
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
        let DeviceDecision { challenge: id, user: _, device, counter, to } = decision;
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
            let revoked: Option<Option<i64>> =
                sqlx::query_scalar("SELECT revoked_at FROM devices WHERE id = ?1")
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
             WHERE id = ?1 AND {} AND expires_at > ?3 RETURNING {CHALLENGE_COLUMNS}",
            may_become(to)
        ));
        let row = sqlx::query(sql)
            .bind(id.0.to_string())
            .bind(to.as_str())
            .bind(unix_micros(now))
            .bind(device.0.to_string())
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
        record_outcome(&mut tx, challenge.user_id, challenge.state, now, policy).await?;
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
            record_outcome(&mut tx, challenge.user_id, challenge.state, now, policy).await?;
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

#[async_trait]
impl FatigueStore for SqliteStore {
    async fn push_state(&self, user: UserId) -> Result<PushState, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {PUSH_STATE_COLUMNS} FROM user_push_state WHERE user_id = ?1"
        ));
        let row = sqlx::query(sql).bind(user.0.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(push_state_from_row).transpose().map(Option::unwrap_or_default)
    }

    async fn change_push_state(
        &self,
        user: UserId,
        now: OffsetDateTime,
        change: PushStateChange<'_>,
    ) -> Result<(PushState, PushState), StoreError> {
        // BEGIN IMMEDIATE: the one writer, so the standing read here holds still.
        let mut tx = self.begin_write().await?;
        let before = load_push_state(&mut tx, user).await?;
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
                      s.consecutive_failures DESC LIMIT ?1"
        ));
        let rows = sqlx::query(sql).bind(i64::from(limit)).fetch_all(&self.pool).await?;
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
        let mut tx = self.begin_write().await?;
        let mut state = load_push_state(&mut tx, user).await?;
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
        let mut tx = self.begin_write().await?;
        insert_alert(&mut tx, kind, subject, details, now).await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.append_audit(&mut tx, &audit).await?;
        self.commit(tx).await?;
        Ok(())
    }

    fn audit_pending_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.audit_pending)
    }

    async fn chain_pending_audit(&self, limit: u32) -> Result<u64, StoreError> {
        // BEGIN IMMEDIATE: the one writer, so the head and the pending rows hold still.
        let mut tx = self.begin_write().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
        let rows = sqlx::query(
            "SELECT id, event_id, occurred_at, actor, action, subject, details, mac FROM audit_pending
             ORDER BY id LIMIT ?1",
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
                        occurred_at_micros: row.try_get("occurred_at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        details: row.try_get("details")?,
                    },
                    mac: row.try_get("mac")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // A pending event whose id is already on the chain is a captured copy: one lookup for
        // the whole batch (the same rows, read in the same write transaction).
        let chained: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT e.event_id, e.seq FROM audit_events e
             JOIN (SELECT event_id FROM audit_pending ORDER BY id LIMIT ?1) p ON p.event_id = e.event_id",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let batch = link_pending(
            &self.sealer,
            head.try_get("seq")?,
            &head.try_get::<Vec<u8>, _>("hash")?,
            &pending,
            &chained,
        )?;
        for (event, p) in batch.events.iter().zip(&pending) {
            sqlx::query(
                "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(event.seq)
            .bind(event.occurred_at_micros)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.subject)
            .bind(&event.details)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(&event.event_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM audit_pending WHERE id = ?1").bind(p.id).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = ?1, hash = ?2, mac = ?3 WHERE id = 1")
            .bind(batch.head.seq)
            .bind(&batch.head.hash)
            .bind(&batch.head.mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(batch.events.len() as u64)
    }

    async fn audit_pending_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending").fetch_one(&self.pool).await?)
    }

    async fn audit_head(&self) -> Result<StoredHead, StoreError> {
        let row = sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let row = row.ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        Ok(StoredHead { seq: row.try_get("seq")?, hash: row.try_get("hash")?, mac: row.try_get("mac")? })
    }

    async fn audit_events(&self, after: i64, up_to: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, occurred_at, actor, action, subject, details, prev_hash, hash FROM audit_events
             WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(after)
        .bind(up_to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
             WHERE subject = ?1 AND action = ?2 ORDER BY seq DESC LIMIT ?3",
        )
        .bind(subject.to_string())
        .bind(action.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event_from_row).collect()
    }

    async fn audit_max_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events").fetch_one(&self.pool).await?)
    }

    async fn audit_duplicate_event(&self, up_to: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let row = sqlx::query(DUPLICATE_EVENT_SQL).bind(up_to).fetch_optional(&self.pool).await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("first_seq")?))).transpose()
    }
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn raise_alert(
        &self,
        kind: &str,
        subject: &Subject,
        details: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_alert(&mut conn, kind, subject, details, now).await
    }

    async fn lease_alert_cursor(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<Option<AlertCursor>, StoreError> {
        let row = sqlx::query(
            "UPDATE alert_cursor SET lease_until = ?2
             WHERE id = 1 AND (lease_until IS NULL OR lease_until < ?1) AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)
             RETURNING last_delivered, attempts",
        )
        .bind(unix_micros(now))
        .bind(unix_micros(now + lease))
        .fetch_optional(&self.pool)
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
            "SELECT id, kind, subject, details, created_at FROM alerts WHERE id > ?1 ORDER BY id LIMIT 1",
        )
        .bind(after)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AlertRecord {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                details: row.try_get("details")?,
                created_at: time_at(&row, "created_at")?,
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
                "UPDATE alert_cursor SET last_delivered = ?1, attempts = 0, next_attempt_at = NULL, lease_until = NULL, last_error = NULL WHERE id = 1",
            )
            .bind(id)
            .execute(&self.pool)
            .await?,
            None => sqlx::query(
                "UPDATE alert_cursor SET attempts = attempts + 1, next_attempt_at = ?1, lease_until = NULL, last_error = ?2 WHERE id = 1",
            )
            .bind(retry_at.map(unix_micros))
            .bind(error)
            .execute(&self.pool)
            .await?,
        };
        Ok(())
    }
}

#[async_trait]
impl PushOutbox for SqliteStore {
    async fn claim_push_jobs(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<PushJob>, StoreError> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE push_outbox SET next_attempt_at = ?2, attempts = attempts + 1, updated_at = ?1
             WHERE id IN (SELECT id FROM push_outbox WHERE state = 'queued' AND next_attempt_at <= ?1
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING id",
        )
        .bind(unix_micros(now))
        .bind(unix_micros(now + lease))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT o.id, o.challenge_id, o.device_id, o.attempts, d.push_provider, d.push_token,
                        d.push_environment, c.expires_at
                 FROM push_outbox o JOIN devices d ON d.id = o.device_id JOIN challenges c ON c.id = o.challenge_id
                 WHERE o.id = ?1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            jobs.push(PushJob {
                id: row.try_get("id")?,
                challenge_id: ChallengeId(uuid_at(&row, "challenge_id")?),
                device_id: DeviceId(uuid_at(&row, "device_id")?),
                attempts: row.try_get("attempts")?,
                push: StoredPush {
                    provider: row.try_get("push_provider")?,
                    token: row.try_get("push_token")?,
                    environment: row.try_get("push_environment")?,
                },
                expires_at: time_at(&row, "expires_at")?,
            });
        }
        self.commit(tx).await?;
        Ok(jobs)
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
        sqlx::query("UPDATE push_outbox SET state = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5 WHERE id = ?1")
            .bind(id)
            .bind(state)
            .bind(unix_micros(next))
            .bind(error)
            .bind(unix_micros(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn disable_push_token(&self, device: DeviceId, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE devices SET push_provider = 'none', push_token = NULL, push_environment = NULL
             WHERE id = ?1 AND push_provider <> 'none'",
        )
        .bind(device.0.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            self.append_audit(&mut tx, &audit).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }
}

async fn insert_enrollment(conn: &mut SqliteConnection, e: &EnrollmentRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO enrollments (id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(e.id.0.to_string())
    .bind(e.user_id.0.to_string())
    .bind(&e.code_hash)
    .bind(&e.code_sealed)
    .bind(e.is_second_device)
    .bind(&e.created_by)
    .bind(unix_micros(e.created_at))
    .bind(unix_micros(e.expires_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
