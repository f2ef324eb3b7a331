//! PostgreSQL store: production, many instances sharing one database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AppRecord, Engine, PoolStats, Store, StoreError, UserRecord, check_migrations_applied,
    map_unique_violation, next_link,
};
use crate::audit::AuditEvent;
use crate::audit::chain::{HeadSealer, StoredEvent, StoredHead};
use crate::clock::{from_unix_micros, unix_micros};
use crate::ids::{AppId, UserId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    sealer: HeadSealer,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32, sealer: HeadSealer) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.parse().map_err(|_| StoreError::InvalidUrl("not a valid postgres:// URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool, sealer })
    }

    /// The pool, for tests that play the attacker with direct SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn append_audit(&self, conn: &mut PgConnection, event: &AuditEvent) -> Result<(), StoreError> {
        let row = event.to_row();
        let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *conn)
            .await?;
        let seq: i64 = head.try_get("seq")?;
        let link = next_link(&self.sealer, &row, seq, head.try_get::<Vec<u8>, _>("hash")?.as_slice())?;
        sqlx::query(
            "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(micros_to_time(row.occurred_at_micros)?)
        .bind(&row.actor)
        .bind(&row.action)
        .bind(&row.subject)
        .bind(&row.details)
        .bind(link.prev_hash.as_slice())
        .bind(link.hash.as_slice())
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1, mac = $2 WHERE id = 1")
            .bind(link.hash.as_slice())
            .bind(link.head_mac)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
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

const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";

#[async_trait]
impl Store for PgStore {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats { size: self.pool.size(), idle: self.pool.num_idle() }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::NotMigrated(format!("cannot read migrations table ({e})")))?;
        check_migrations_applied(&MIGRATOR, &applied)
    }

    async fn create_app(&self, app: AppRecord, audit: AuditEvent) -> Result<AppRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(app)
    }

    async fn revoke_app(
        &self,
        id: AppId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<AppRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(app)
    }

    async fn app_by_key_id(&self, key_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE key_id = $1"));
        sqlx::query(sql).bind(key_id).fetch_optional(&self.pool).await?.as_ref().map(app_from_row).transpose()
    }

    async fn app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1"));
        sqlx::query(sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(app_from_row).transpose()
    }

    async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"));
        sqlx::query(sql).fetch_all(&self.pool).await?.iter().map(app_from_row).collect()
    }

    async fn create_user(&self, user: UserRecord, audit: AuditEvent) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, display_name, is_privileged, created_at) VALUES ($1, $2, $3, $4, $5)",
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
        tx.commit().await?;
        Ok(user)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, is_privileged, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
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
            "SELECT seq, occurred_at, actor, action, subject, details, prev_hash, hash FROM audit_events
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(up_to)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    seq: row.try_get("seq")?,
                    occurred_at_micros: unix_micros(row.try_get("occurred_at")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    details: row.try_get("details")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn audit_max_seq(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM audit_events")
            .fetch_one(&self.pool)
            .await?)
    }
}
