//! SQLite store: the embedded default. One instance per database file.
//!
//! Ids are TEXT, timestamps INTEGER microseconds. Write transactions start with
//! `BEGIN IMMEDIATE`, so a writer waits for the lock up front instead of failing when a read
//! lock cannot be upgraded.

mod admin;
mod admin_passkeys;
mod admin_requests;
mod alerts;
mod apps;
mod audit;
mod callbacks;
mod challenges;
mod dashboard;
mod devices;
mod fatigue;
mod fatigue_policy;
mod helpdesk;
mod keycloak;
mod oidc_ciba;
mod oidc_clients;
mod oidc_flow;
mod outbox;
mod passkeys;
mod signing_keys;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::audit::AuditEvent;
use crate::audit::chain::AuditSealer;
use crate::store::audit::{INSERT_PENDING_EVENT, pending_row};
use crate::store::{
    Engine, PoolStats, Store, StoreError, check_migrations_applied, genesis_mac, seals_genesis,
};

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
        sqlx::query(INSERT_PENDING_EVENT)
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
