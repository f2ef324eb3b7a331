//! PostgreSQL connections for the store: a `deadpool` pool of sqlx connections.
//!
//! sqlx's own pool pings every connection when it is released (and by default when it is
//! acquired): one extra round trip per store operation, about 40% of the round trips of a
//! benchmark flow. Here a connection proves itself with a ping only when there is a reason to
//! doubt it: it sat idle for a while, or a connection-level error was seen anywhere since it was
//! last checked (a restarted database breaks every connection at once). A connection whose
//! ping fails is dropped and replaced.
//!
//! A transaction dropped without commit only queues its ROLLBACK in the connection's buffer;
//! until it is sent the transaction stays open on the server, holding its row locks. So a
//! connection that comes back with something queued is flushed (and pinged) before it goes back
//! to the pool. A request abandoned mid-statement leaves a reply in flight; sqlx drains it before
//! the connection's next statement.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{PoolStats, StoreError};

/// A connection idle this long is pinged before use.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Bumped on every connection-level error; connections checked before the bump are pinged.
static FAULT_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Marks every pooled connection as doubtful after an error that may have broken connections:
/// I/O and protocol errors, and the server's own "connection exception" (SQLSTATE class 08)
/// and "operator intervention" (class 57: shutdown, terminated backend) errors.
pub(super) fn note_error(error: &sqlx::Error) {
    let broken = match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            true
        }
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57"))
        }
        _ => false,
    };
    if broken {
        FAULT_EPOCH.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pooled connection and the fault epoch it was last known good in.
#[derive(Debug)]
pub struct Tracked {
    conn: PgConnection,
    checked_in_epoch: u64,
}

impl Deref for Tracked {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Opens connections, and decides when a pooled one must prove itself before use.
#[derive(Debug)]
pub struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = Tracked;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Tracked, sqlx::Error> {
        let conn = PgConnection::connect_with(&self.options).await?;
        Ok(Tracked { conn, checked_in_epoch: FAULT_EPOCH.load(Ordering::Relaxed) })
    }

    async fn recycle(&self, tracked: &mut Tracked, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        let epoch = FAULT_EPOCH.load(Ordering::Relaxed);
        if tracked.checked_in_epoch != epoch || metrics.last_used() > IDLE_CHECK {
            tracked.conn.ping().await.map_err(RecycleError::Backend)?;
            tracked.checked_in_epoch = epoch;
        }
        Ok(())
    }
}

/// A connection checked out of the pool; it goes back when dropped, after sending anything
/// still queued (a rollback).
#[derive(Debug)]
pub struct PooledConnection(Option<managed::Object<Connector>>);

impl Deref for PooledConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.0.as_deref().map(Deref::deref).unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.0.as_deref_mut().map(DerefMut::deref_mut).unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(mut object) = self.0.take() else { return };
        if !object.should_flush() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if object.ping().await.is_err() {
                        // Closing the socket ends the transaction on the server.
                        drop(managed::Object::take(object));
                    }
                });
            }
            Err(_) => drop(managed::Object::take(object)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgConnections {
    pool: managed::Pool<Connector>,
}

impl PgConnections {
    /// Opens one connection at once, so a wrong URL or an unreachable database fails at start.
    pub async fn connect(
        options: PgConnectOptions,
        max_size: u32,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(usize::try_from(max_size).unwrap_or(usize::MAX))
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::InvalidUrl(format!("connection pool: {e}")))?;
        let connections = Self { pool };
        drop(connections.get().await?);
        Ok(connections)
    }

    pub async fn get(&self) -> Result<PooledConnection, StoreError> {
        self.pool.get().await.map(|object| PooledConnection(Some(object))).map_err(|error| {
            StoreError::Database(match error {
                managed::PoolError::Backend(error) => error,
                managed::PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
                managed::PoolError::Closed => sqlx::Error::PoolClosed,
                other => sqlx::Error::Configuration(other.to_string().into()),
            })
        })
    }

    pub fn stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats { size: u32::try_from(status.size).unwrap_or(u32::MAX), idle: status.available }
    }
}
