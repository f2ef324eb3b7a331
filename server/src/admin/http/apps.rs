//! Apps and OIDC clients on the admin plane: an admin creates and revokes them, each change
//! spending a fresh step-up and audited as that admin. The same services as the CLI; a key or
//! client secret exists in plaintext only in the one response that creates it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::apps::{self as manage, ManageError};
use crate::admin::model::StepUpAction;
use crate::api_keys::Scopes;
use crate::api_keys::is_valid_app_name;
use crate::api_keys::service::AppAdminError;
use crate::app::AppState;
use crate::http::admin_session::AdminSession;
use crate::http::admin_session::role::AdminOnly;
use crate::http::{ApiError, ApiJson, ApiPath, Code, ErrorBody};
use crate::oidc::client_admin::{ClientAdminError, NewClient};
use crate::oidc::clients::{self, AuthMethod, ClientId, ClientKeys, IdTokenAlg};

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::App(e) => e.into(),
            ManageError::Client(e) => e.into(),
            ManageError::Keyless(_) => ApiError::new(Code::KeylessApp, error.to_string()),
            ManageError::Keys(e) => ApiError::internal(&e),
        }
    }
}

impl From<AppAdminError> for ApiError {
    fn from(error: AppAdminError) -> Self {
        let message = error.to_string();
        let code = match error {
            AppAdminError::InvalidName | AppAdminError::NoScopes => Code::InvalidRequest,
            AppAdminError::NameTaken(_) => Code::AppExists,
            AppAdminError::NotFound(_) => Code::AppNotFound,
            AppAdminError::Random => return ApiError::internal(&error),
            AppAdminError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

impl From<ClientAdminError> for ApiError {
    fn from(error: ClientAdminError) -> Self {
        let message = error.to_string();
        let code = match error {
            ClientAdminError::Invalid(_) => Code::InvalidRequest,
            ClientAdminError::NotFound(_) => Code::ClientNotFound,
            ClientAdminError::Random => return ApiError::internal(&error),
            ClientAdminError::Store(e) => return e.into(),
        };
        ApiError::new(code, message)
    }
}

/// An app to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppBody {
    /// 1-64 letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// At least one scope, e.g. `["challenges:write", "users:read"]`.
    pub scopes: Vec<String>,
}

/// A created app and its key, shown only in this response (only its hash is stored).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAppView {
    pub name: String,
    pub scopes: Vec<String>,
    pub api_key: String,
}

/// An app or client that was revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    pub name: String,
    pub revoked: bool,
}

/// Auth: admin session (admin), CSRF token, a fresh step-up taken for this change (spent). Creates an app with its
/// API key, shown once.
#[utoipa::path(
    post, path = "/admin/api/apps", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = NewAppBody,
    responses(
        (status = 201, body = CreatedAppView),
        (status = 403, description = "`step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 409, description = "`app_exists`", body = ErrorBody),
        (status = 422, description = "A bad name, no scopes or an unknown scope", body = ErrorBody),
    )
)]
async fn create_app(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiJson(body): ApiJson<NewAppBody>,
) -> Result<(StatusCode, Json<CreatedAppView>), ApiError> {
    // Refuse bad input before spending the step-up.
    let scopes: Scopes =
        body.scopes.join(" ").parse().map_err(|e| ApiError::invalid_request(format!("{e}")))?;
    if scopes.is_empty() {
        return Err(AppAdminError::NoScopes.into());
    }
    if !is_valid_app_name(&body.name) {
        return Err(AppAdminError::InvalidName.into());
    }
    let action = StepUpAction::on("create_app", Some(&body.name));
    state.admin.sessions.consume_step_up(&admin, &action).await?;
    let (app, key) = manage::create_app(&state, admin.actor(), &body.name, scopes).await?;
    let scopes = app.scopes.to_string().split(' ').map(str::to_owned).collect();
    let view = CreatedAppView { name: app.name, scopes, api_key: key.expose_secret().to_owned() };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Auth: admin session (admin), CSRF token, a fresh step-up taken for this change (spent). Revokes an app's key at
/// once. Keyless apps (OIDC clients', Keycloak realms', the help desk's) are refused.
#[utoipa::path(
    post, path = "/admin/api/apps/{name}/revoke", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, body = RevokedView),
        (status = 403, description = "`step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 404, description = "`app_not_found`", body = ErrorBody),
        (status = 409, description = "`keyless_app`", body = ErrorBody),
    )
)]
async fn revoke_app(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RevokedView>, ApiError> {
    manage::check_revocable_app(&state, &name).await?;
    state.admin.sessions.consume_step_up(&admin, &StepUpAction::on("revoke_app", Some(&name))).await?;
    let app = manage::revoke_app(&state, admin.actor(), &name).await?;
    Ok(Json(RevokedView { name: app.name, revoked: true }))
}

/// An OIDC client to register (the fields of `countersign clients create`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientBody {
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`.
    pub auth_method: String,
    /// For `private_key_jwt`: the client's public keys, as a JWK set.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// For `private_key_jwt`: where the client publishes its keys.
    pub jwks_uri: Option<String>,
    /// `ES256` (the default) or `RS256`.
    pub id_token_alg: Option<String>,
    /// `poll` or `ping`: the client may ask for decoupled sign-ins (CIBA).
    pub ciba: Option<String>,
    /// For `ciba: "ping"`.
    pub notification_endpoint: Option<String>,
}

/// A registered client; its secret (secret-based methods only) is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedClientView {
    pub client_id: String,
    pub name: String,
    pub auth_method: String,
    pub client_secret: Option<String>,
}

fn new_client(body: NewClientBody) -> Result<NewClient, ClientAdminError> {
    let auth_method: AuthMethod = body.auth_method.parse()?;
    let keys = match (body.jwks, body.jwks_uri) {
        (Some(_), Some(_)) => {
            return Err(ClientAdminError::Invalid(clients::ClientRuleError::Jwks(
                "send `jwks` or `jwks_uri`, not both".to_owned(),
            )));
        }
        (Some(jwks), None) => ClientKeys::Inline(clients::validate_jwks(&jwks.to_string())?),
        (None, Some(uri)) => ClientKeys::Uri(uri),
        (None, None) => ClientKeys::None,
    };
    let id_token_alg: IdTokenAlg = body.id_token_alg.as_deref().unwrap_or("ES256").parse()?;
    let ciba = clients::ciba_delivery(body.ciba.as_deref(), body.notification_endpoint)?;
    let new = NewClient {
        name: body.name,
        redirect_uris: body.redirect_uris,
        auth_method,
        keys,
        id_token_alg,
        ciba,
    };
    clients::validate_name(&new.name)?;
    clients::validate_flows(&new.redirect_uris, new.auth_method, new.ciba.as_ref())?;
    clients::validate_keys(new.auth_method, &new.keys)?;
    Ok(new)
}

/// Auth: admin session (admin), CSRF token, a fresh step-up taken for this change (spent). Registers an OIDC client;
/// a secret-based client's secret is shown once.
#[utoipa::path(
    post, path = "/admin/api/clients", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    request_body = NewClientBody,
    responses(
        (status = 201, body = CreatedClientView),
        (status = 403, description = "`step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 422, description = "A field the client rules refuse", body = ErrorBody),
    )
)]
async fn create_client(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiJson(body): ApiJson<NewClientBody>,
) -> Result<(StatusCode, Json<CreatedClientView>), ApiError> {
    let new = new_client(body)?;
    // The client id is drawn at creation, so the step-up names the verb alone.
    state.admin.sessions.consume_step_up(&admin, &StepUpAction::on("create_client", None)).await?;
    let created = manage::create_client(&state, admin.actor(), new).await?;
    let client = created.client;
    let view = CreatedClientView {
        client_id: client.client_id.to_string(),
        name: client.name,
        auth_method: client.auth_method.as_str().to_owned(),
        client_secret: created.secret.map(|s| s.expose_secret().to_owned()),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Auth: admin session (admin), CSRF token, a fresh step-up taken for this change (spent). Revokes an OIDC client at
/// once: it can no longer authenticate or start a sign-in.
#[utoipa::path(
    post, path = "/admin/api/clients/{id}/revoke", tag = "admin",
    security(("admin_session" = []), ("csrf" = [])),
    params(("id" = String, Path)),
    responses(
        (status = 200, body = RevokedView),
        (status = 403, description = "`step_up_required`, `admin_role_required`", body = ErrorBody),
        (status = 404, description = "`client_not_found`", body = ErrorBody),
    )
)]
async fn revoke_client(
    State(state): State<AppState>,
    admin: AdminSession<AdminOnly>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RevokedView>, ApiError> {
    let id = ClientId(id);
    manage::check_revocable_client(&state, &id).await?;
    let action = StepUpAction::on("revoke_client", Some(&id.0));
    state.admin.sessions.consume_step_up(&admin, &action).await?;
    let client = manage::revoke_client(&state, admin.actor(), &id).await?;
    Ok(Json(RevokedView { name: client.name, revoked: true }))
}

/// The app and client management routes of the admin API.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_app))
        .routes(routes!(revoke_app))
        .routes(routes!(create_client))
        .routes(routes!(revoke_client))
}
