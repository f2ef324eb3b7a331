//! PostgreSQL store: production, many instances sharing one database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AppRecord, Conflict, DeviceRecord, Engine, EnrollmentRecord, NoticeRecord, PoolStats, ServerKeyRecord,
    Store, StoreError, StoredPush, UserRecord, check_migrations_applied, map_unique_violation, next_link,
};
use crate::audit::AuditEvent;
use crate::audit::chain::{HeadSealer, StoredEvent, StoredHead};
use crate::clock::{from_unix_micros, unix_micros};
use crate::ids::{AppId, DeviceId, EnrollmentId, UserId};

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
    Ok(DeviceRecord {
        id: DeviceId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        public_key: row.try_get("public_key")?,
        push: StoredPush {
            provider: row.try_get("push_provider")?,
            token: row.try_get("push_token")?,
            environment: row.try_get("push_environment")?,
        },
        name: row.try_get("name")?,
        platform: row.try_get("platform")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_counter: row.try_get("last_counter")?,
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

    async fn delete_user(
        &self,
        id: UserId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(revoked)
    }

    async fn create_enrollment(
        &self,
        e: EnrollmentRecord,
        audit: AuditEvent,
    ) -> Result<EnrollmentRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        .execute(&mut *tx)
        .await?;
        self.append_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(e)
    }

    async fn enrollment_by_id(&self, id: EnrollmentId) -> Result<Option<EnrollmentRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = $1"));
        sqlx::query(sql)
            .bind(id.0)
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
            sqlx::AssertSqlSafe(format!("SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE code_hash = $1"));
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
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(d)
    }

    async fn device_by_id(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"));
        sqlx::query(sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn devices_for_user(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id"
        ));
        sqlx::query(sql).bind(user.0).fetch_all(&self.pool).await?.iter().map(device_from_row).collect()
    }

    async fn public_key_owner(&self, public_key: &[u8]) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM devices WHERE public_key = $1")
            .bind(public_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(owner.map(UserId))
    }

    async fn push_token_owner(&self, provider: &str, token: &str) -> Result<Option<UserId>, StoreError> {
        let owner: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM devices WHERE push_provider = $1 AND push_token = $2 AND revoked_at IS NULL",
        )
        .bind(provider)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.map(UserId))
    }

    async fn revoke_device(
        &self,
        id: DeviceId,
        at: OffsetDateTime,
        audit: AuditEvent,
    ) -> Result<DeviceRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(device)
    }

    async fn update_push(&self, id: DeviceId, push: StoredPush, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn remember_request_nonce(
        &self,
        device: DeviceId,
        nonce: &[u8],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM device_request_nonces WHERE device_id = $1 AND expires_at < $2")
            .bind(device.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO device_request_nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(device.0)
        .bind(nonce)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted.rows_affected() == 1)
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
        .fetch_all(&self.pool)
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

    async fn record_audit(&self, audit: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.append_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn server_key(&self) -> Result<Option<ServerKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT public_key, sealed_pkcs8, created_at FROM server_keys WHERE id = 1")
            .fetch_optional(&self.pool)
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
        .execute(&self.pool)
        .await?;
        self.server_key().await?.ok_or_else(|| StoreError::Corrupt("server key vanished after insert".into()))
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
