//! `/v1/users/{username}/passkeys`: registration ceremonies over REST (for apps with their own
//! front end), enrollment links, listing, renaming and revoking; passkey answers to challenges;
//! and the endpoints of the hosted pages' script (`/passkeys/…`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{PasskeyError, RegistrationRequest};
use crate::app::AppState;
use crate::http::scope::{ChallengesWrite, UsersRead, UsersWrite};
use crate::http::webauthn::{AssertionResponseJson, AttestationResponseJson, CredentialJson, rejection_code};
use crate::http::{ApiError, ApiJson, ApiPath, AppKey, Code, ErrorBody};
use crate::ids::{ChallengeId, PasskeyId, RegistrationId};
use crate::store::PasskeyRecord;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(begin_registration))
        .routes(routes!(create_enrollment_link))
        .routes(routes!(complete_registration))
        .routes(routes!(list_passkeys))
        .routes(routes!(rename_passkey, revoke_passkey))
        .routes(routes!(answer_challenge))
}

/// What the hosted pages call (same origin; the enrollment link's code or the sign-in page's
/// token is the credential). Not part of the `/v1` API: only the pages' script uses them.
pub fn page_routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/passkeys/enroll/options", axum::routing::post(enrollment_options))
        .route("/passkeys/enroll/credential", axum::routing::post(complete_enrollment))
        .route("/passkeys/sign-in/options", axum::routing::post(sign_in_options))
        .route("/passkeys/sign-in/assertion", axum::routing::post(answer_sign_in_page))
}

impl From<PasskeyError> for ApiError {
    fn from(error: PasskeyError) -> Self {
        let message = error.to_string();
        let code = match error {
            PasskeyError::InvalidInput(_) => return ApiError::invalid_request(message),
            PasskeyError::UserNotFound => Code::UserNotFound,
            PasskeyError::SecondFactorProofRequired => Code::SecondFactorProofRequired,
            PasskeyError::ApprovalInvalid => Code::ApprovalInvalid,
            PasskeyError::RegistrationNotFound => Code::RegistrationNotFound,
            PasskeyError::RegistrationExpired => Code::RegistrationExpired,
            PasskeyError::ResponseInvalid(_) => Code::WebauthnResponseInvalid,
            PasskeyError::ClientDataTooLarge => Code::ClientDataTooLarge,
            PasskeyError::Rejected { rejection, .. } => rejection_code(rejection),
            PasskeyError::AuthenticatorNotAllowed => Code::AuthenticatorNotAllowed,
            PasskeyError::FactorAlreadyBound => Code::FactorAlreadyBound,
            PasskeyError::PasskeyNotFound => Code::PasskeyNotFound,
            PasskeyError::EnrollmentLinkInvalid => Code::EnrollmentLinkInvalid,
            PasskeyError::EnrollmentLinkExpired => Code::EnrollmentLinkExpired,
            PasskeyError::EnrollmentLinkUsed => Code::EnrollmentLinkUsed,
            PasskeyError::SignInPageInvalid => Code::SignInPageInvalid,
            PasskeyError::NoPasskey => Code::NoPasskey,
            PasskeyError::ChallengeNotFound => Code::ChallengeNotFound,
            PasskeyError::ChallengeNotPending(_) => Code::ChallengeNotPending,
            PasskeyError::ChallengeExpired => Code::ChallengeExpired,
            PasskeyError::UnknownCredential => Code::WebauthnUnknownCredential,
            PasskeyError::CounterNotIncreasing => Code::WebauthnCounterNotIncreasing,
            PasskeyError::Internal(e) => return ApiError::internal(&e),
            PasskeyError::Store(e) => return ApiError::from(e),
        };
        ApiError::new(code, message)
    }
}

/// A JSON object body as `T` (a struct also deserializes from an array; a body must not).
fn object<T: serde::de::DeserializeOwned>(
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::invalid_request(e.to_string()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeginRegistrationRequest {
    /// Proof for a user who already has a device or passkey: the id of a challenge of this user,
    /// created by this app, approved within the last 5 minutes and not redeemed. Beginning the
    /// registration consumes it (it becomes `redeemed`, audited).
    pub approval: Option<ChallengeId>,
    /// What to call the passkey (1-64 characters); `Passkey` by default.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegistrationView {
    /// Where to post the credential: `…/passkeys/registrations/{id}`.
    pub id: RegistrationId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// `PublicKeyCredentialCreationOptionsJSON` (WebAuthn Level 3): pass it to
    /// `PublicKeyCredential.parseCreationOptionsFromJSON()`, then to
    /// `navigator.credentials.create({ publicKey })`.
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: PasskeyId,
    pub name: String,
    /// The authenticator model (all zeros when it does not say, attestation `none`).
    #[schema(value_type = String, format = Uuid)]
    pub aaguid: uuid::Uuid,
    /// The credential may be synced (a multi-device passkey).
    pub backup_eligible: bool,
    /// The credential is synced now.
    pub backed_up: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<PasskeyRecord> for PasskeyView {
    fn from(p: PasskeyRecord) -> Self {
        Self {
            id: p.id,
            name: p.name,
            aaguid: uuid::Uuid::from_slice(&p.aaguid).unwrap_or_default(),
            backup_eligible: p.backup_eligible,
            backed_up: p.backed_up,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            revoked_at: p.revoked_at,
        }
    }
}

/// Auth: app API key, scope `users:write`. Begins a registration: creation options for the
/// browser, the ceremony kept in the database for 5 minutes, single use.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/passkeys/registrations",
    tag = "passkeys",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path)),
    request_body(content = BeginRegistrationRequest, description = "`{}` for a user without any factor; `{\"approval\": \"<challenge id>\"}` for a user who has one"),
    responses(
        (status = 201, description = "Begun", body = RegistrationView),
        (status = 403, description = "`second_factor_proof_required`: the user has a factor and no approval was given; `approval_invalid`: the approval is not an approved, unredeemed challenge of this user from this app decided within 5 minutes (both audited, nothing created)", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    )
)]
async fn begin_registration(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<RegistrationView>), ApiError> {
    let body: BeginRegistrationRequest = object(body)?;
    let request = RegistrationRequest { approval: body.approval, name: body.name };
    let begun = state.passkeys.begin_registration(&app, &username, request).await?;
    let view = RegistrationView {
        id: begun.ceremony.id,
        expires_at: begun.ceremony.expires_at,
        public_key: begun.options,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrollmentLinkView {
    /// The hosted registration page with its single-use code: give it to the user (it is shown
    /// only this once). It must be opened on this origin (`[webauthn] origins`, the first).
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Auth: app API key, scope `users:write`. Creates a single-use link (10 minutes) to the hosted
/// registration page, under the same trust rule as beginning a registration.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/passkeys/enrollment-links",
    tag = "passkeys",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path)),
    request_body(content = BeginRegistrationRequest, description = "`{}` for a user without any factor; `{\"approval\": \"<challenge id>\"}` for a user who has one (consumed now)"),
    responses(
        (status = 201, description = "Created: the registration is begun and waits for the page", body = EnrollmentLinkView),
        (status = 403, description = "`second_factor_proof_required`, `approval_invalid` (as for a registration; audited, nothing created)", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    )
)]
async fn create_enrollment_link(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<EnrollmentLinkView>), ApiError> {
    let body: BeginRegistrationRequest = object(body)?;
    let request = RegistrationRequest { approval: body.approval, name: body.name };
    let link = state.passkeys.create_enrollment_link(&app, &username, request).await?;
    let view = EnrollmentLinkView { url: link.url.expose_secret().to_owned(), expires_at: link.expires_at };
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentCode {
    code: String,
}

#[derive(Debug, Serialize)]
struct EnrollmentOptionsView {
    username: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// For `PublicKeyCredential.parseCreationOptionsFromJSON()`.
    public_key: serde_json::Value,
}

/// Auth: an enrollment link's code. The creation options of the link's ceremony.
async fn enrollment_options(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<EnrollmentOptionsView>, ApiError> {
    let body: EnrollmentCode = object(body)?;
    let open = state.passkeys.open_enrollment(&body.code).await?;
    let public_key = open.options()?;
    Ok(Json(EnrollmentOptionsView {
        username: open.user.username,
        expires_at: open.link.expires_at,
        public_key,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentCredential {
    code: String,
    credential: CredentialJson<AttestationResponseJson>,
}

/// Auth: an enrollment link's code. Completes the link's registration with the browser's
/// `credential.toJSON()`; the link is used up.
async fn complete_enrollment(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<PasskeyView>), ApiError> {
    let body: EnrollmentCredential = object(body)?;
    let credential = serde_json::to_value(&body.credential).map_err(|e| ApiError::internal(&e))?;
    let passkey = state.passkeys.complete_enrollment(&body.code, &credential).await?;
    Ok((StatusCode::CREATED, Json(PasskeyView::from(passkey))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInToken {
    token: String,
}

#[derive(Debug, Serialize)]
struct SignInOptionsView {
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// For `PublicKeyCredential.parseRequestOptionsFromJSON()`.
    public_key: serde_json::Value,
}

/// Auth: a passkey challenge's page token. The request options of its sign-in.
async fn sign_in_options(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<SignInOptionsView>, ApiError> {
    let body: SignInToken = object(body)?;
    let open = state.passkeys.open_sign_in(&body.token).await?;
    Ok(Json(SignInOptionsView { expires_at: open.challenge.expires_at, public_key: open.options()? }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInAssertion {
    token: String,
    credential: CredentialJson<AssertionResponseJson>,
}

/// Auth: a passkey challenge's page token. Answers the challenge with the browser's assertion,
/// as `POST /v1/challenges/{id}/webauthn` would.
async fn answer_sign_in_page(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<AnsweredChallengeView>, ApiError> {
    let body: SignInAssertion = object(body)?;
    let credential = serde_json::to_value(&body.credential).map_err(|e| ApiError::internal(&e))?;
    let approved = state.passkeys.complete_sign_in_page(&body.token, &credential).await?;
    Ok(Json(AnsweredChallengeView::from(approved)))
}

/// Auth: app API key, scope `users:write`. Completes a registration with the browser's
/// `credential.toJSON()`; the credential id is bound to this user forever.
#[utoipa::path(
    post,
    path = "/v1/users/{username}/passkeys/registrations/{id}",
    tag = "passkeys",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path), ("id" = uuid::Uuid, Path)),
    request_body(content = CredentialJson<AttestationResponseJson>, description = "`RegistrationResponseJSON`: what `credential.toJSON()` returns"),
    responses(
        (status = 201, description = "Registered", body = PasskeyView),
        (status = 403, description = "The credential is refused, nothing stored: `webauthn_response_invalid` (its contents do not decode); `webauthn_origin_mismatch`, `webauthn_rp_id_mismatch`, `webauthn_user_not_verified`, `webauthn_challenge_mismatch`, `webauthn_signature_invalid`, `webauthn_response_rejected` (it does not verify; audited); `authenticator_not_allowed` (AAGUID allow-list; audited); `second_factor_proof_required` (a factor appeared since a first-factor registration began)", body = ErrorBody),
        (status = 404, description = "`user_not_found`, `registration_not_found` (unknown, another user's or app's, or used)", body = ErrorBody),
        (status = 409, description = "`factor_already_bound`: the credential is registered already (audited naming both users)", body = ErrorBody),
        (status = 410, description = "`registration_expired`", body = ErrorBody),
        (status = 413, description = "`client_data_too_large`", body = ErrorBody),
    )
)]
async fn complete_registration(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<PasskeyView>), ApiError> {
    let credential: CredentialJson<AttestationResponseJson> = object(body)?;
    let credential = serde_json::to_value(&credential).map_err(|e| ApiError::internal(&e))?;
    let passkey =
        state.passkeys.complete_registration(&app, &username, RegistrationId(id), &credential).await?;
    Ok((StatusCode::CREATED, Json(PasskeyView::from(passkey))))
}

/// Auth: app API key, scope `users:read`. The user's passkeys, revoked ones included.
#[utoipa::path(
    get,
    path = "/v1/users/{username}/passkeys",
    tag = "passkeys",
    security(("api_key" = ["users:read"])),
    params(("username" = crate::openapi::Username, Path)),
    responses(
        (status = 200, description = "Passkeys", body = [PasskeyView]),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    )
)]
async fn list_passkeys(
    State(state): State<AppState>,
    _app: AppKey<UsersRead>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<Vec<PasskeyView>>, ApiError> {
    let passkeys = state.passkeys.list(&username).await?;
    Ok(Json(passkeys.into_iter().map(PasskeyView::from).collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskeyRequest {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
}

/// Auth: app API key, scope `users:write`. Renames an active passkey (audited).
#[utoipa::path(
    patch,
    path = "/v1/users/{username}/passkeys/{passkey_id}",
    tag = "passkeys",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path), ("passkey_id" = uuid::Uuid, Path)),
    request_body = RenamePasskeyRequest,
    responses(
        (status = 200, description = "Renamed", body = PasskeyView),
        (status = 404, description = "`user_not_found`, `passkey_not_found` (none active with that id)", body = ErrorBody),
    )
)]
async fn rename_passkey(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<PasskeyView>, ApiError> {
    let body: RenamePasskeyRequest = object(body)?;
    let passkey = state.passkeys.rename(&app, &username, PasskeyId(id), &body.name).await?;
    Ok(Json(PasskeyView::from(passkey)))
}

/// Auth: app API key, scope `users:write`. Revokes a passkey at once (audited); its credential
/// id stays bound to the user and can never be registered again.
#[utoipa::path(
    delete,
    path = "/v1/users/{username}/passkeys/{passkey_id}",
    tag = "passkeys",
    security(("api_key" = ["users:write"])),
    params(("username" = crate::openapi::Username, Path), ("passkey_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`user_not_found`, `passkey_not_found` (none active with that id)", body = ErrorBody),
    )
)]
async fn revoke_passkey(
    State(state): State<AppState>,
    app: AppKey<UsersWrite>,
    ApiPath((username, id)): ApiPath<(String, uuid::Uuid)>,
) -> Result<StatusCode, ApiError> {
    state.passkeys.revoke(app.actor(), &username, PasskeyId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnsweredChallengeView {
    pub id: ChallengeId,
    /// `approved`: redeem it once with `POST /v1/challenges/{id}/redeem`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
}

impl From<crate::store::ChallengeRecord> for AnsweredChallengeView {
    fn from(approved: crate::store::ChallengeRecord) -> Self {
        Self { id: approved.id, state: approved.state.as_str().to_owned(), decided_at: approved.decided_at }
    }
}

/// Auth: app API key, scope `challenges:write`. Answers a passkey challenge with the browser's
/// assertion (`credential.toJSON()` after `navigator.credentials.get()`); it becomes `approved`
/// once, then is redeemed like any challenge.
#[utoipa::path(
    post,
    path = "/v1/challenges/{id}/webauthn",
    tag = "challenges",
    security(("api_key" = ["challenges:write"])),
    params(("id" = uuid::Uuid, Path)),
    request_body(content = CredentialJson<AssertionResponseJson>, description = "`AuthenticationResponseJSON`: what `credential.toJSON()` returns"),
    responses(
        (status = 200, description = "Approved", body = AnsweredChallengeView),
        (status = 403, description = "The assertion is refused, the challenge stays pending (a third refusal denies it): `webauthn_response_invalid`, `webauthn_unknown_credential` (not an active passkey of the challenge's user), `webauthn_origin_mismatch`, `webauthn_rp_id_mismatch`, `webauthn_user_not_verified`, `webauthn_challenge_mismatch`, `webauthn_signature_invalid`, `webauthn_response_rejected` (audited); `webauthn_counter_not_increasing`: the signature counter did not rise, the challenge is denied and a `possible_clone` alert raised", body = ErrorBody),
        (status = 404, description = "`challenge_not_found`: no passkey challenge with that id from this app", body = ErrorBody),
        (status = 409, description = "`challenge_not_pending`: already approved, denied or cancelled", body = ErrorBody),
        (status = 410, description = "`challenge_expired`", body = ErrorBody),
    )
)]
async fn answer_challenge(
    State(state): State<AppState>,
    app: AppKey<ChallengesWrite>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<AnsweredChallengeView>, ApiError> {
    let credential: CredentialJson<AssertionResponseJson> = object(body)?;
    let credential = serde_json::to_value(&credential).map_err(|e| ApiError::internal(&e))?;
    let approved = state.passkeys.complete_sign_in(&app, ChallengeId(id), &credential).await?;
    Ok(Json(AnsweredChallengeView::from(approved)))
}
