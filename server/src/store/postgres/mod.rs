//! PostgreSQL store: production, many instances sharing one database.

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
mod statements;
mod users;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::audit::AuditEvent;
use crate::audit::chain::AuditSealer;
use crate::store::audit::{INSERT_PENDING_EVENT, pending_row};
use crate::store::pg_pool::{PgConnections, PooledConnection};
use crate::store::{
    Engine, PoolStats, Store, StoreError, check_migrations_applied, genesis_mac, seals_genesis,
};
use statements::bind_audit;

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
        bind_audit(sqlx::query(INSERT_PENDING_EVENT), &p)?.execute(&mut *conn).await?;
        Ok(())
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
