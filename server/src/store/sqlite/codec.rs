//! Row codecs and column lists: ids are TEXT, times INTEGER microseconds.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::chain::StoredEvent;
use crate::clock::from_unix_micros;
use crate::fatigue::model::PushState;
use crate::ids::{AppId, ChallengeId, DeviceId, EnrollmentId, UserId};
use crate::store::{
    AppRecord, ChallengeRecord, DeviceRecord, EnrollmentRecord, StoreError, StoredPush, UserRecord,
};

pub(super) fn time_at(row: &SqliteRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    let micros: i64 = row.try_get(column)?;
    from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("{column} {micros} out of range")))
}

pub(super) fn uuid_at(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    parse_uuid(&text, column)
}

pub(super) fn parse_uuid(text: &str, column: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a UUID")))
}

pub(super) fn optional_time_at(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    let micros: Option<i64> = row.try_get(column)?;
    micros
        .map(|m| from_unix_micros(m).ok_or_else(|| StoreError::Corrupt(format!("{column} {m} out of range"))))
        .transpose()
}

pub(super) fn enrollment_from_row(row: &SqliteRow) -> Result<EnrollmentRecord, StoreError> {
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

pub(super) fn device_from_row(row: &SqliteRow) -> Result<DeviceRecord, StoreError> {
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

pub(super) fn challenge_from_row(row: &SqliteRow) -> Result<ChallengeRecord, StoreError> {
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

pub(super) const CHALLENGE_COLUMNS: &str = "id, app_id, user_id, state, number_tag, number_sealed, number_digits, server_nonce, app_name, ip, user_agent, location, created_at, expires_at, decided_at, decided_by_device, redeemed_at, idempotency_key, request_hash, is_silent, source_prefix";

pub(super) fn push_state_from_row(row: &SqliteRow) -> Result<PushState, StoreError> {
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

pub(super) const PUSH_STATE_COLUMNS: &str = "consecutive_failures, freezes, frozen_until, needs_strong_factor, needs_admin_review, hard_locked, last_wrong_number_at, reason, unanswered, refused_prompts, under_attack_since, last_refused_at";

pub(super) fn stored_event_from_row(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
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

pub(super) const ENROLLMENT_COLUMNS: &str = "id, user_id, code_hash, code_sealed, is_second_device, created_by, created_at, expires_at, used_at, device_id";
pub(super) const DEVICE_COLUMNS: &str = "id, user_id, public_key, push_provider, push_token, push_environment, name, platform, created_at, revoked_at, last_counter";

pub(super) fn app_from_row(row: &SqliteRow) -> Result<AppRecord, StoreError> {
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

pub(super) fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId(uuid_at(row, "id")?),
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_privileged: row.try_get("is_privileged")?,
        created_at: time_at(row, "created_at")?,
    })
}

pub(super) const APP_COLUMNS: &str = "id, name, key_id, key_hash, scopes, created_at, revoked_at";
