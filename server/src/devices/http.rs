//! Device routes: the REST side for apps (`/v1/users/{username}/enrollments`, `/devices`) and
//! the phone side (`/device/v1/...`, PROTOCOL.md). Phone-side errors use the protocol's codes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_mobile_protocol::limits::MAX_DEVICE_REQUEST_BODY_LEN;
use countersign_mobile_protocol::{EnrollmentRequest, ErrorCode, PushRegistration};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api_doc::{DeviceRefusals, EnrollmentRequestBody, SignedRequestHeaders, SignedRequestRefusals};
use super::service::{DeviceError, unix_seconds};
use crate::app::AppState;
use crate::http::scope::{UsersRead, UsersWrite};
use crate::http::{
    ApiError, ApiJson, ApiPath, AppKey, Code, DeviceBody, ErrorBody, SignedDevice, parse_json,
    parse_signed_json,
};
use crate::ids::{ChallengeId, DeviceId, EnrollmentId, UserId};
use crate::store::DeviceRecord;

impl From<DeviceError> for ApiError {
    fn from(error: DeviceError) -> Self {
        let message = error.to_string();
        let protocol = |code: ErrorCode| ApiError::protocol(code, message.clone());
        match error {
            DeviceError::Protocol(e) => e.into(),
            DeviceError::UserNotFound => ApiError::new(Code::UserNotFound, message),
            DeviceError::SecondFactorProofRequired => ApiError::new(Code::SecondFactorProofRequired, message),
            DeviceError::ApprovalInvalid => ApiError::new(Code::ApprovalInvalid, message),
            DeviceError::EnrollmentNotFound => ApiError::new(Code::EnrollmentNotFound, message),
            DeviceError::EnrollmentGone => ApiError::new(Code::EnrollmentGone, message),
            DeviceError::DeviceNotFound => ApiError::new(Code::DeviceNotFound, message),
            DeviceError::ActivationCodeInvalid => protocol(ErrorCode::ActivationCodeInvalid),
            DeviceError::ActivationCodeExpired => protocol(ErrorCode::ActivationCodeExpired),
            DeviceError::ActivationCodeUsed => protocol(ErrorCode::ActivationCodeUsed),
            DeviceError::FactorAlreadyBound => protocol(ErrorCode::FactorAlreadyBound),
            DeviceError::EnrollmentNotAllowed => protocol(ErrorCode::EnrollmentNotAllowed),
            DeviceError::SignatureInvalid => protocol(ErrorCode::SignatureInvalid),
            DeviceError::RequestReplayed => protocol(ErrorCode::RequestReplayed),
            DeviceError::DeviceRevoked => protocol(ErrorCode::DeviceRevoked),
            DeviceError::Throttled { retry_after_secs } => {
                protocol(ErrorCode::RateLimited).with_retry_after(retry_after_secs)
            }
            DeviceError::Internal(_) => ApiError::internal(&error),
            DeviceError::Store(e) => e.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phone side: /device/v1

pub fn device_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(notices))
        .routes(routes!(update_push_token))
        .routes(routes!(unenroll))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_DEVICE_REQUEST_BODY_LEN))
}

/// Auth: proof of possession + activation code (PROTOCOL.md §6.1).
#[utoipa::path(
    post,
    path = "/device/v1/enroll",
    tag = "device",
    request_body(content = EnrollmentRequestBody, description = "Signed with the new device key: signing rules in PROTOCOL.md §6.1, §7"),
    responses(
        (status = 201, description = "Enrolled: `EnrollmentResponse` (PROTOCOL.md §6.1)", body = serde_json::Value),
        (status = 403, description = "`enrollment_not_allowed`", body = ErrorBody),
        (status = 404, description = "`activation_code_invalid`", body = ErrorBody),
        (status = 409, description = "`factor_already_bound`: the key or push token belongs to another user", body = ErrorBody),
        (status = 410, description = "`activation_code_expired` or `activation_code_used`", body = ErrorBody),
        DeviceRefusals,
    )
)]
async fn enroll(State(state): State<AppState>, DeviceBody(body): DeviceBody) -> Result<Response, ApiError> {
    let request: EnrollmentRequest = parse_signed_json(&body)?;
    let response = state.devices.enroll(request).await?;
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

#[derive(Debug, Serialize)]
struct NoticeView {
    id: i64,
    kind: String,
    created_at: u64,
    details: serde_json::Value,
}

/// Auth: signed device request. Security notices for this device (§6.7).
#[utoipa::path(
    get,
    path = "/device/v1/notices",
    tag = "device",
    params(SignedRequestHeaders),
    responses(
        (status = 200, description = "`{\"notices\": [...]}` (PROTOCOL.md §6.7)", body = serde_json::Value),
        SignedRequestRefusals,
        DeviceRefusals,
    )
)]
async fn notices(
    State(state): State<AppState>,
    signed: SignedDevice,
) -> Result<Json<serde_json::Value>, ApiError> {
    let notices: Vec<NoticeView> = state
        .devices
        .notices(&signed.device)
        .await?
        .into_iter()
        .map(|n| NoticeView {
            id: n.id,
            kind: n.kind,
            created_at: unix_seconds(n.created_at),
            details: serde_json::from_str(&n.details).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    Ok(Json(serde_json::json!({ "notices": notices })))
}

/// Auth: signed device request. Replaces the push registration (§6.5).
#[utoipa::path(
    put,
    path = "/device/v1/push-token",
    tag = "device",
    params(SignedRequestHeaders),
    request_body(content = serde_json::Value, description = "`PushRegistration` (PROTOCOL.md §6.5)"),
    responses(
        (status = 204, description = "Replaced"),
        SignedRequestRefusals,
        DeviceRefusals,
    )
)]
async fn update_push_token(
    State(state): State<AppState>,
    signed: SignedDevice,
) -> Result<StatusCode, ApiError> {
    let push: PushRegistration = parse_json(&signed.body)?;
    state.devices.update_push(&signed.device, push).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Auth: signed device request. The device revokes itself (§6.6).
#[utoipa::path(
    delete,
    path = "/device/v1",
    tag = "device",
    params(SignedRequestHeaders),
    responses((status = 204, description = "Revoked"), SignedRequestRefusals, DeviceRefusals)
)]
async fn unenroll(State(state): State<AppState>, signed: SignedDevice) -> Result<StatusCode, ApiError> {
    state.devices.unenroll(&signed.device).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// App side: /v1/users/{username}/enrollments and /devices

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_enrollment))
        .routes(routes!(enrollment_qr))
        .routes(routes!(list_devices))
        .routes(routes!(revoke_device))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentRequest {
    /// Proof for adding a device to a user who already has one: the id of a challenge of this
    /// user, created by this app, approved within the last 5 minutes and not redeemed. The
    /// enrollment consumes it (it becomes `redeemed`, audited) so it proves one enrollment only.
    pub approval: Option<ChallengeId>,
    /// States that a further device is meant; without `approval` it is refused.
    #[serde(default)]
    pub second_device: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrollmentView {
    pub id: EnrollmentId,
    pub user_id: UserId,
    /// Single use; give it only to the user it is for.
    pub activation_code: String,
    /// `countersign://enroll?…`: what the QR code holds.
    pub activation_uri: String,
    /// The QR code as SVG (same API key needed).
    pub qr_svg_url: String,
    pub second_device: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Auth: app API key, scope `users:write`. Issues a single-use activation code (≤ 10 min).
#[utoipa::path(
    post,
    path = "/v1/users/{username}/enrollments",
    tag = "devices",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path)),
    request_body(content = CreateEnrollmentRequest, description = "`{}` for a first device; `{\"approval\": \"<challenge id>\"}` to add another"),
    responses(
        (status = 201, description = "Created", body = EnrollmentView),
        (status = 403, description = "`second_factor_proof_required`: the user has a device (or `second_device` is set) and no approval was given; `approval_invalid`: the approval is not an approved, unredeemed challenge of this user from this app decided within 5 minutes (both audited, nothing created)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    )
)]
async fn create_enrollment(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<CreateEnrollmentRequest>,
) -> Result<(StatusCode, Json<EnrollmentView>), ApiError> {
    let created =
        state.devices.create_enrollment(app.actor(), &username, body.second_device, body.approval).await?;
    let record = &created.record;
    let username = crate::users::model::normalize_username(&username).unwrap_or(username);
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentView {
            id: record.id,
            user_id: record.user_id,
            activation_code: created.activation_code.expose_secret().to_owned(),
            activation_uri: created.activation_uri.expose_secret().to_owned(),
            qr_svg_url: format!("/v1/users/{username}/enrollments/{}/qr.svg", record.id),
            second_device: record.is_second_device,
            expires_at: record.expires_at,
        }),
    ))
}

/// Auth: app API key, scope `users:write` (the QR code holds a live activation code).
#[utoipa::path(
    get,
    path = "/v1/users/{username}/enrollments/{id}/qr.svg",
    tag = "devices",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path), ("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "QR code of the activation URI", content_type = "image/svg+xml"),
        (status = 404, description = "No such enrollment", body = ErrorBody),
        (status = 410, description = "Used or expired", body = ErrorBody),
    )
)]
async fn enrollment_qr(
    State(state): State<AppState>,
    _app: AppKey<UsersWrite>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<Response, ApiError> {
    let uri = state.devices.enrollment_uri(&username, EnrollmentId(id)).await?;
    let code = qrcode::QrCode::new(uri.expose_secret().as_bytes()).map_err(|e| ApiError::internal(&e))?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: DeviceId,
    pub name: String,
    pub platform: String,
    /// `apns`, `fcm` or `none`.
    pub push_provider: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<DeviceRecord> for DeviceView {
    fn from(d: DeviceRecord) -> Self {
        Self {
            id: d.id,
            name: d.name,
            platform: d.platform,
            push_provider: d.push.provider,
            created_at: d.created_at,
            revoked_at: d.revoked_at,
        }
    }
}

/// Auth: app API key, scope `users:read`. The user's devices, revoked ones included.
#[utoipa::path(
    get,
    path = "/v1/users/{username}/devices",
    tag = "devices",
    security(("api_key" = ["users:read"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Devices", body = [DeviceView]),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
async fn list_devices(
    State(state): State<AppState>,
    _app: AppKey<UsersRead>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let devices = state.devices.list_devices(&username).await?;
    Ok(Json(devices.into_iter().map(DeviceView::from).collect()))
}

/// Auth: app API key, scope `users:write`. Revokes a device at once (audited).
#[utoipa::path(
    delete,
    path = "/v1/users/{username}/devices/{device_id}",
    tag = "devices",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path), ("device_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active device for this user", body = ErrorBody),
    )
)]
async fn revoke_device(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath((username, device_id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<StatusCode, ApiError> {
    state.devices.revoke_device(app.actor(), &username, DeviceId(device_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
