//! Challenge routes: `/v1/challenges` for apps, `/device/v1/challenges/...` for phones.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use countersign_mobile_protocol::{
    ChallengeResponse, ChallengeResponseResult, ErrorCode, PendingChallenges, SignedChallengeDetails,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::ChallengeState;
use super::service::{ChallengeContext, ChallengeError};
use crate::app::AppState;
use crate::devices::api_doc::{
    ChallengeResponseBody, DeviceRefusals, SignedRequestHeaders, SignedRequestRefusals,
};
use crate::http::scope::{ChallengesReadOrWrite, ChallengesWrite};
use crate::http::{
    ApiError, ApiJson, ApiPath, AppKey, Code, DeviceBody, ErrorBody, PeerAddr, SignedDevice,
    parse_signed_json,
};
use crate::ids::{ChallengeId, DeviceId};
use crate::store::ChallengeRecord;

impl From<ChallengeError> for ApiError {
    fn from(error: ChallengeError) -> Self {
        let message = error.to_string();
        let protocol = |code: ErrorCode| ApiError::protocol(code, message.clone());
        match error {
            ChallengeError::InvalidInput(_) | ChallengeError::NumberRecentlyUsed => {
                ApiError::invalid_request(message)
            }
            ChallengeError::IdempotencyKeyReused => ApiError::new(Code::IdempotencyKeyReused, message),
            ChallengeError::NoDevice => ApiError::new(Code::NoEnrolledDevice, message),
            ChallengeError::PushFrozen { until, .. } => {
                let message = match until {
                    Some(until) => format!(
                        "{message}; frozen until {}",
                        until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
                    ),
                    None => format!("{message}; frozen until a stronger factor or an admin unfreezes it"),
                };
                ApiError::new(Code::PushFrozen, message)
            }
            ChallengeError::PushLocked => ApiError::new(Code::PushLocked, message),
            ChallengeError::PasskeyRequired => ApiError::new(Code::PasskeyRequired, message),
            ChallengeError::SourceRateLimited { .. } => {
                ApiError::new(Code::SourceRateLimited, message).with_retry_after(60)
            }
            ChallengeError::PushRateLimited { retry_after_secs } => {
                ApiError::new(Code::PushRateLimited, message).with_retry_after(retry_after_secs)
            }
            ChallengeError::NotFound => ApiError::new(Code::ChallengeNotFound, message),
            ChallengeError::InvalidWait(_) => ApiError::new(Code::InvalidWait, message),
            ChallengeError::AlreadyRedeemed => ApiError::new(Code::AlreadyRedeemed, message),
            ChallengeError::NotApproved(_) => ApiError::new(Code::ChallengeNotApproved, message),
            ChallengeError::ApprovalStale => ApiError::new(Code::ApprovalStale, message),
            ChallengeError::NotPending(_) => ApiError::new(Code::ChallengeNotPending, message),
            ChallengeError::Protocol(e) => e.into(),
            ChallengeError::SignatureInvalid => protocol(ErrorCode::SignatureInvalid),
            ChallengeError::ChallengeNotFound => protocol(ErrorCode::ChallengeNotFound),
            ChallengeError::ChallengeNotPending => protocol(ErrorCode::ChallengeNotPending),
            ChallengeError::ChallengeExpired => protocol(ErrorCode::ChallengeExpired),
            ChallengeError::CounterNotIncreasing => protocol(ErrorCode::CounterNotIncreasing),
            ChallengeError::DeviceRevoked => protocol(ErrorCode::DeviceRevoked),
            ChallengeError::DeviceThrottled { retry_after_secs } => {
                protocol(ErrorCode::RateLimited).with_retry_after(retry_after_secs)
            }
            ChallengeError::Internal(_) => ApiError::internal(&error),
            ChallengeError::Store(e) => e.into(),
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_challenge))
        .routes(routes!(get_challenge))
        .routes(routes!(redeem_challenge))
        .routes(routes!(cancel_challenge))
}

pub fn device_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pending_for_device))
        .routes(routes!(details_for_device))
        .routes(routes!(respond))
        .layer(axum::extract::DefaultBodyLimit::max(
            countersign_mobile_protocol::limits::MAX_DEVICE_REQUEST_BODY_LEN,
        ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChallengeRequest {
    pub username: String,
    #[serde(default)]
    pub context: ChallengeContext,
    /// `push` (number matching on the phone, the default) or `passkey` (WebAuthn in the
    /// browser: no number, no push, never held by push lockouts).
    #[serde(default)]
    pub factor: Factor,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    #[default]
    Push,
    Passkey,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedChallengeView {
    pub id: ChallengeId,
    pub factor: Factor,
    /// Push: show this on the login screen. It is never sent to the phone, never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Push: how many digits the number has (0 for a passkey challenge).
    pub number_digits: i16,
    /// Passkey: `PublicKeyCredentialRequestOptionsJSON` (WebAuthn Level 3) for
    /// `PublicKeyCredential.parseRequestOptionsFromJSON()` and `navigator.credentials.get()`;
    /// post the assertion to `/v1/challenges/{id}/webauthn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
    /// Passkey: instead of running the ceremony in your own page, send the user to this hosted
    /// sign-in page (single-purpose token, shown only here); it answers the challenge, which you
    /// then redeem as usual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_url: Option<String>,
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChallengeView {
    pub id: ChallengeId,
    /// pending, approved, denied, denied_wrong_number, reported, expired, cancelled, redeemed.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by_device: Option<DeviceId>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redeemed_at: Option<OffsetDateTime>,
}

impl From<ChallengeRecord> for ChallengeView {
    fn from(c: ChallengeRecord) -> Self {
        Self {
            id: c.id,
            state: c.state.as_str().to_owned(),
            created_at: c.created_at,
            expires_at: c.expires_at,
            decided_at: c.decided_at.filter(|_| c.state != ChallengeState::Pending),
            decided_by_device: c.decided_by_device,
            redeemed_at: c.redeemed_at,
        }
    }
}

/// Auth: app API key, scope `challenges:write`. Starts a number-matching (push) or passkey
/// challenge.
#[utoipa::path(
    post,
    path = "/v1/challenges",
    tag = "challenges",
    security(("api_key" = ["challenges:write"])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Retry safely: same key + same body → same challenge. 1-128 visible ASCII characters. Push only: a passkey challenge sends nothing, so a retry just makes another")),
    request_body = CreateChallengeRequest,
    responses(
        (status = 201, description = "Created; push: show `number` on the login screen; passkey: hand `webauthn` to the browser", body = CreatedChallengeView),
        (status = 409, description = "`no_enrolled_device` (push) or `no_passkey` (passkey), also for unknown users; `passkey_required` (push for a passkey-only user: privileged, or by policy)", body = ErrorBody),
        (status = 422, description = "Invalid context, or Idempotency-Key reused with another body (push; a passkey challenge ignores the key)", body = ErrorBody),
        (status = 423, description = "`push_frozen` or `push_locked`: push is held for this user; use a stronger factor", body = ErrorBody),
        (status = 429, description = "`source_rate_limited` or `push_rate_limited`; see `Retry-After`", body = ErrorBody),
    )
)]
async fn create_challenge(
    State(state): State<AppState>,
    app: AppKey<ChallengesWrite>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateChallengeRequest>,
) -> Result<(StatusCode, Json<CreatedChallengeView>), ApiError> {
    let key = match headers.get("idempotency-key") {
        Some(value) => {
            Some(value.to_str().map_err(|_| ApiError::invalid_request("Idempotency-Key must be ASCII"))?)
        }
        None => None,
    };
    let (record, number, webauthn, sign_in_url) = match body.factor {
        Factor::Push => {
            let created = state.challenges.create(&app, &body.username, body.context, key).await?;
            (created.record, Some(created.number), None, None)
        }
        // A passkey challenge sends nothing and spends no budget: a retry simply makes another
        // (an Idempotency-Key is not needed, and not kept).
        Factor::Passkey => {
            let begun = state.passkeys.begin_sign_in(&app, &body.username, body.context).await?;
            let url = begun.sign_in_url.expose_secret().to_owned();
            (begun.record, None, Some(begun.options), Some(url))
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedChallengeView {
            id: record.id,
            factor: body.factor,
            number,
            number_digits: record.number_digits,
            webauthn,
            sign_in_url,
            state: record.state.as_str().to_owned(),
            expires_at: record.expires_at,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Long-poll: wait up to this many seconds (0-30) for the challenge to leave `pending`.
    #[param(minimum = 0, maximum = 30, nullable = false)]
    pub wait: Option<u64>,
}

/// The long-poll route's template: its timeout is the longest wait plus a margin, not the
/// general request timeout (see `app::route_timeouts`).
pub const LONG_POLL_ROUTE: &str = "/v1/challenges/{id}";

/// Auth: app API key, scope `challenges:read` or `challenges:write`; only the creating app.
#[utoipa::path(
    get,
    path = "/v1/challenges/{id}",
    tag = "challenges",
    security(("api_key" = ["challenges:read"])),
    params(("id" = uuid::Uuid, Path), WaitQuery),
    responses(
        (status = 200, description = "Current state", body = ChallengeView),
        (status = 400, description = "wait out of range", body = ErrorBody),
        (status = 404, description = "No such challenge for this app", body = ErrorBody),
    )
)]
async fn get_challenge(
    State(state): State<AppState>,
    app: AppKey<ChallengesReadOrWrite>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChallengeView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(Code::InvalidWait, e.body_text()))?;
    let challenge = state.challenges.status(&app, ChallengeId(id), query.wait.unwrap_or(0)).await?;
    Ok(Json(challenge.into()))
}

/// Auth: app API key, scope `challenges:write`. Consumes an approval exactly once.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/redeem",
    tag = "challenges",
    security(("api_key" = ["challenges:write"])),
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Redeemed: the second factor is proven", body = ChallengeView),
        (status = 409, description = "Not approved, already redeemed (audited) or stale", body = ErrorBody),
        (status = 404, description = "No such challenge for this app", body = ErrorBody),
    )
)]
async fn redeem_challenge(
    State(state): State<AppState>,
    app: AppKey<ChallengesWrite>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<ChallengeView>, ApiError> {
    Ok(Json(state.challenges.redeem(&app, ChallengeId(id)).await?.into()))
}

/// Auth: app API key, scope `challenges:write`. Cancels a pending challenge.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/cancel",
    tag = "challenges",
    security(("api_key" = ["challenges:write"])),
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Cancelled", body = ChallengeView),
        (status = 404, description = "No such challenge for this app", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
    )
)]
async fn cancel_challenge(
    State(state): State<AppState>,
    app: AppKey<ChallengesWrite>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<ChallengeView>, ApiError> {
    Ok(Json(state.challenges.cancel(&app, ChallengeId(id)).await?.into()))
}

/// Auth: signed device request. Pending challenges for this device's user (PROTOCOL.md §6.2).
#[utoipa::path(
    get,
    path = "/device/v1/challenges",
    tag = "device",
    params(SignedRequestHeaders),
    responses(
        (status = 200, description = "`PendingChallenges` (PROTOCOL.md §6.2)", body = serde_json::Value),
        SignedRequestRefusals,
        DeviceRefusals,
    )
)]
async fn pending_for_device(
    State(state): State<AppState>,
    signed: SignedDevice,
) -> Result<Json<PendingChallenges>, ApiError> {
    Ok(Json(state.challenges.pending_for_device(&signed.device).await?))
}

/// Auth: signed device request. One challenge's signed details (§6.3).
#[utoipa::path(
    get,
    path = "/device/v1/challenges/{id}",
    tag = "device",
    params(("id" = String, Path), SignedRequestHeaders),
    responses(
        (status = 200, description = "`SignedChallengeDetails` (PROTOCOL.md §6.3)", body = serde_json::Value),
        (status = 404, description = "`challenge_not_found` (also for an id that is not a UUID)", body = ErrorBody),
        (status = 410, description = "`challenge_expired`", body = ErrorBody),
        SignedRequestRefusals,
        DeviceRefusals,
    )
)]
async fn details_for_device(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    signed: SignedDevice,
) -> Result<Json<SignedChallengeDetails>, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::from(ChallengeError::ChallengeNotFound))?;
    Ok(Json(state.challenges.details_for_device(&signed.device, ChallengeId(id)).await?))
}

/// Auth: the response's own device signature (§6.4).
#[utoipa::path(
    post,
    path = "/device/v1/challenges/{id}/response",
    tag = "device",
    params(("id" = String, Path)),
    request_body(content = ChallengeResponseBody, description = "Signed by the device: signing rules in PROTOCOL.md §6.4, §7"),
    responses(
        (status = 200, description = "`{\"outcome\": ...}` (PROTOCOL.md §6.4)", body = serde_json::Value),
        (status = 404, description = "`challenge_not_found` (also for an id that is not a UUID)", body = ErrorBody),
        (status = 409, description = "`challenge_not_pending` or `counter_not_increasing`", body = ErrorBody),
        (status = 410, description = "`challenge_expired`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many refused answers; honour `Retry-After`", body = ErrorBody),
        DeviceRefusals,
    )
)]
async fn respond(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiPath(id): ApiPath<String>,
    DeviceBody(body): DeviceBody,
) -> Result<Json<ChallengeResponseResult>, ApiError> {
    let response: ChallengeResponse = parse_signed_json(&body)?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::from(ChallengeError::ChallengeNotFound))?;
    let outcome = state.challenges.respond(ChallengeId(id), response, peer).await?;
    Ok(Json(ChallengeResponseResult { outcome }))
}
