//! Row codecs and column lists: uuid and timestamptz columns decode natively.

use sqlx::Row;
use uuid::Uuid;

use crate::audit::chain::StoredEvent;
use crate::clock::unix_micros;
use crate::fatigue::model::PushState;
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};
use crate::store::{
    AppRecord, ChallengeRecord, DeviceRecord, EnrollmentRecord, StoreError, StoredPush, UserRecord,
};

pub(super) fn app_from_row(row: &sqlx::postgres::PgRow) -> Result<AppRecord, StoreError> {
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

pub(super) fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId(row.try_get::<Uuid, _>("id")?),
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_privileged: row.try_get("is_privileged")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn enrollment_from_row(row: &sqlx::postgres::PgRow) -> Result<EnrollmentRecord, StoreError> {
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

pub(super) fn device_from_row(row: &sqlx::postgres::PgRow) -> Result<DeviceRecord, StoreError> {
    device_from_prefixed(row, "")
}

/// A device from columns named `{prefix}id`, `{prefix}user_id`, … (for rows that join it).
pub(super) fn device_from_prefixed(
    row: &sqlx::postgres::PgRow,
    prefix: &str,
) -> Result<DeviceRecord, StoreError> {
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
pub(super) fn prefixed_device_columns() -> String {
    DEVICE_COLUMNS.split(", ").map(|c| format!("d.{c} AS d_{c}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn challenge_from_row(row: &sqlx::postgres::PgRow) -> Result<ChallengeRecord, StoreError> {
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

pub(super) const CHALLENGE_COLUMNS: &str = "id, app_id, user_id, state, number_tag, number_sealed, number_digits, server_nonce, app_name, ip, user_agent, location, created_at, expires_at, decided_at, decided_by_device, redeemed_at, idempotency_key, request_hash, is_silent, source_prefix";

pub(super) fn push_state_from_row(row: &sqlx::postgres::PgRow) -> Result<PushState, StoreError> {
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

pub(super) const PUSH_STATE_COLUMNS: &str = "consecutive_failures, freezes, frozen_until, needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, unanswered, refused_prompts, under_attack_since, last_refused_at";

pub(super) fn stored_event_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, StoreError> {
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

pub(super) const ENROLLMENT_COLUMNS: &str = "id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at, used_at, device_id";
pub(super) const DEVICE_COLUMNS: &str = "id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at, revoked_at, last_counter";

pub(super) const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";
