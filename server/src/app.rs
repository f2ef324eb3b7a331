//! `AppState`, router assembly and the tower layers every request passes through.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::admin::AdminPlane;
use crate::admin::AdminServices;
use crate::admin::accounts::AdminAccounts;
use crate::admin::dashboard::Dashboard;
use crate::admin::feed::AlertFeed;
use crate::admin::helpdesk::HelpDesk;
use crate::admin::model::SessionTimes;
use crate::admin::requests::AdminRequests;
use crate::admin::sessions::AdminSessions;
use crate::challenges::service::{ChallengeService, ChallengeSettings};
use crate::clock::Clock;
use crate::devices::server_key::ServerSigningKey;
use crate::devices::service::{DeviceService, DeviceSettings};
use crate::factors::service::FactorService;
use crate::fatigue::policy::{PolicyHandle, PolicyOrigin};
use crate::fatigue::service::FatigueService;
use crate::http::{ApiError, Code, ErrorBody};
use crate::keycloak::service::KeycloakChannel;
use crate::keycloak::verify::Realms;
use crate::oidc::client_auth::{ClientAuthSettings, ClientAuthenticator};
use crate::oidc::client_jwks::{ClientJwksFetcher, JwksFetchSettings};
use crate::oidc::flow::{Clients, Factors, OidcFlow, OidcSettings, TOKEN_PATH};
use crate::oidc::keys::{KeyTimings, SigningKeys};
use crate::oidc::upstream::{Upstream, UpstreamIssuers};
use crate::passkeys::model::WebauthnSettings;
use crate::passkeys::service::{PasskeyService, SignInSettings};
use crate::secrets::MasterKey;
use crate::startup::StartupError;
use crate::store::{Store, UserStore};
use crate::users::service::UserService;
use crate::{
    admin, api_keys, challenges, devices, factors, fatigue, keycloak, middleware, oidc, pages, passkeys,
    users,
};

/// What the capabilities are configured with.
#[derive(Debug)]
pub struct ServiceSettings {
    pub devices: DeviceSettings,
    pub challenges: ChallengeSettings,
    pub webauthn: Arc<WebauthnSettings>,
    /// OIDC upstream issuers whose `id_token_hint` may name the user to prompt.
    pub upstream: Vec<Upstream>,
    /// Keycloak realms whose CIBA requests the channel answers.
    pub keycloak: Vec<crate::keycloak::config::Realm>,
}

/// Everything a handler may need; cheap to clone. Handlers call the services; the store is
/// here for the edge (the API-key extractor, readiness, metrics) and the background tasks.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<PrometheusHandle>,
    pub users: Arc<UserService>,
    pub devices: Arc<DeviceService>,
    pub challenges: Arc<ChallengeService>,
    pub factors: Arc<FactorService>,
    pub fatigue: Arc<FatigueService>,
    pub passkeys: Arc<PasskeyService>,
    /// The OIDC provider's signing keys and JWKS.
    pub signing_keys: Arc<SigningKeys>,
    /// The OIDC provider's authorization code flow.
    pub oidc: Arc<OidcFlow>,
    /// Keycloak's CIBA HTTP authentication channel.
    pub keycloak: Arc<KeycloakChannel>,
    /// The admin plane: admins' sessions and four-eyes changes.
    pub admin: Arc<AdminPlane>,
}

impl AppState {
    /// Wires the capabilities together; loads (or creates) the server's device-signing key and
    /// the OIDC signing keys (a first start creates an ES256 key).
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        settings: ServiceSettings,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, StartupError> {
        let ServiceSettings {
            devices: device_settings,
            challenges: challenge_settings,
            webauthn,
            upstream,
            keycloak: realms,
        } = settings;
        let server_key =
            Arc::new(ServerSigningKey::load_or_create(store.as_ref(), &master, clock.as_ref()).await?);
        let signing_keys = Arc::new(
            SigningKeys::load(
                Arc::<dyn Store>::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&master),
                KeyTimings::DEFAULT,
            )
            .await?,
        );
        let oidc_settings =
            OidcSettings { issuer: device_settings.public_url.as_str().trim_end_matches('/').to_owned() };
        let admin_times = SessionTimes::default();
        let admin_sessions = AdminSessions::new(Arc::clone(&store), Arc::clone(&clock), &master, admin_times);
        let public_url = device_settings.public_url.as_str().to_owned();
        let fatigue_policy = PolicyHandle::new(challenge_settings.policy.clone());
        // A policy approved at run time (stored) wins over the config file's.
        match fatigue_policy.refresh(store.as_ref()).await.map_err(StartupError::FatiguePolicy)? {
            PolicyOrigin::Config => tracing::info!("fatigue policy: from the config file"),
            PolicyOrigin::Request { request_id, version } => {
                tracing::info!(%request_id, version, "fatigue policy: as changed by an approved request")
            }
        }
        let admin_accounts = AdminAccounts::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&master),
            Arc::clone(&webauthn),
        );
        let devices = Arc::new(DeviceService::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&master),
            server_key,
            device_settings,
        ));
        let fatigue =
            Arc::new(FatigueService::new(Arc::clone(&store), Arc::clone(&clock), fatigue_policy.clone()));
        let admin_requests = AdminRequests::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&fatigue),
            admin_times.step_up,
        );
        let admin_origins = webauthn.origins.clone();
        let sign_in = SignInSettings { ttl: challenge_settings.ttl, waiters: Arc::new(Default::default()) };
        let challenges = Arc::new(
            ChallengeService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&master),
                Arc::clone(&devices),
                challenge_settings,
            )
            .with_policy(fatigue_policy.clone()),
        );
        let user_store: Arc<dyn UserStore> = Arc::<dyn Store>::clone(&store);
        let users = Arc::new(UserService::new(user_store, Arc::clone(&clock)));
        let factors = Arc::new(FactorService::new(Arc::clone(&store), Arc::clone(&clock)));
        let sign_in = SignInSettings { waiters: Arc::clone(&challenges.waiters), ..sign_in };
        let passkeys =
            Arc::new(PasskeyService::new(Arc::clone(&store), Arc::clone(&clock), webauthn, sign_in));
        let helpdesk = HelpDesk::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&challenges),
            Arc::clone(&passkeys),
        );
        let admin_services = AdminServices {
            sessions: admin_sessions,
            audit_check: crate::admin::audit_check::AuditCheck::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                master.audit_sealer(),
            ),
            accounts: admin_accounts,
            requests: admin_requests,
            helpdesk,
            dashboard: Dashboard::new(Arc::clone(&store), Arc::clone(&clock), fatigue_policy),
            feed: AlertFeed::new(Arc::<dyn Store>::clone(&store), crate::admin::feed::POLL_INTERVAL),
        };
        let admin = Arc::new(AdminPlane::new(admin_services, &public_url, &admin_origins));
        let fetcher = Arc::new(ClientJwksFetcher::new(Arc::clone(&clock), JwksFetchSettings::default())?);
        let client_auth = ClientAuthenticator::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&fetcher),
            ClientAuthSettings::new(oidc_settings.issuer.clone(), oidc_settings.endpoint(TOKEN_PATH)),
        );
        let upstream = UpstreamIssuers::new(upstream, Arc::clone(&fetcher));
        let keycloak = Arc::new(KeycloakChannel::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&challenges),
            Arc::clone(&master),
            Realms::new(realms, Arc::clone(&fetcher)),
        ));
        let oidc = Arc::new(OidcFlow::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            master,
            Arc::clone(&signing_keys),
            Clients { auth: client_auth, upstream, jwks: fetcher },
            Factors { challenges: Arc::clone(&challenges), passkeys: Arc::clone(&passkeys) },
            oidc_settings,
        ));
        Ok(Self {
            store,
            clock,
            metrics,
            users,
            devices,
            challenges,
            factors,
            fatigue,
            passkeys,
            signing_keys,
            oidc,
            keycloak,
            admin,
        })
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { body_limit_bytes: 64 * 1024, request_timeout: Duration::from_secs(30) }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign",
        description = "Number-matching MFA push server. Authenticate with `Authorization: Bearer <app API key>`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign device API",
        description = "The phone side, version 1. Requests are signed by the device key: the signing rules, message fields and error codes are in mobile-protocol/PROTOCOL.md."
    ),
    components(schemas(
        ErrorBody,
        devices::api_doc::Nonce,
        devices::api_doc::ChallengeResponseBody,
        devices::api_doc::EnrollmentRequestBody
    ))
)]
struct DeviceApiDoc;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The `/v1` routes (and the OIDC provider's JWKS) together with their OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api_keys::http::routes())
        .merge(users::http::routes())
        .merge(devices::http::routes())
        .merge(challenges::http::routes())
        .merge(factors::http::routes())
        .merge(fatigue::http::routes())
        .merge(passkeys::http::routes())
        .merge(oidc::http::routes());
    crate::openapi::SharedErrorResponses.modify(router.get_openapi_mut());
    router
}

/// The OpenAPI document for every `/v1` route (and `/oidc/jwks`), as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The `/device/v1` routes (PROTOCOL.md) together with their OpenAPI description.
fn device_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(DeviceApiDoc::openapi())
        .merge(devices::http::device_routes())
        .merge(challenges::http::device_routes())
}

/// The OpenAPI document for every `/device/v1` route, as served at `/device/v1/openapi.json`.
pub fn device_openapi() -> utoipa::openapi::OpenApi {
    device_routes().into_openapi()
}

/// Serves an OpenAPI document, rendered once.
fn json_document(doc: &utoipa::openapi::OpenApi) -> axum::routing::MethodRouter<AppState> {
    let json: Arc<str> = Arc::from(doc.to_json().unwrap_or_else(|_| "{}".to_owned()));
    get(move || {
        let body = Arc::clone(&json);
        async move { ([(header::CONTENT_TYPE, "application/json")], body.to_string()) }
    })
}

/// Builds the whole service. Tests call this with their own state.
pub fn build_app(state: AppState, limits: HttpLimits) -> Router {
    let timeouts = route_timeouts(&state, limits);
    let (api, openapi) = api_routes().split_for_parts();
    let (device_api, device_openapi) = device_routes().split_for_parts();
    let (admin_api, admin_openapi) = admin::http::api_routes().split_for_parts();
    let admin_plane = Router::new()
        .merge(admin_api)
        .merge(crate::http::page::with_page_headers(admin::http::page_routes()))
        .merge(admin::http::auth_pages::routes())
        .route("/admin/api/openapi.json", json_document(&admin_openapi))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::http::admin_session::guard));
    Router::new()
        .merge(api)
        .merge(device_api)
        .route("/v1/openapi.json", json_document(&openapi))
        .route("/device/v1/openapi.json", json_document(&device_openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(pages::http::routes())
        .merge(oidc::http::flow_routes())
        // No realm configured, no channel: nobody can knock on it (and fill the audit trail).
        .merge(if state.keycloak.serves_realms() { keycloak::http::routes() } else { Router::new() })
        .merge(crate::http::page::with_page_headers(passkeys::http::page_routes()))
        .merge(admin_plane)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(Arc::new(timeouts), middleware::timeout))
        .layer(axum::middleware::from_fn(middleware::request_context))
}

/// How long a long-poll may run beyond its longest wait (the final read and the response).
const LONG_POLL_MARGIN: Duration = Duration::from_secs(5);

/// Per-route limits: the long-poll waits up to `max_wait` by design, so its limit is that plus
/// a margin; every other route keeps the configured request timeout.
fn route_timeouts(state: &AppState, limits: HttpLimits) -> middleware::RouteTimeouts {
    let long_poll = state.challenges.settings().max_wait + LONG_POLL_MARGIN;
    middleware::RouteTimeouts::uniform(limits.request_timeout)
        .with_route(axum::http::Method::GET, challenges::http::LONG_POLL_ROUTE, long_poll)
        .with_route(axum::http::Method::GET, admin::http::VERIFICATION_ROUTE, long_poll)
}

/// Auth: none. The process is up and serving.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Auth: none. The database answers, the schema is current, and this instance's clock is
/// within the bound of the database's.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(error) = state.challenges.clock_skew().check() {
        tracing::warn!(%error, "not ready");
        return ApiError::new(Code::NotReady, error.to_string()).into_response();
    }
    match state.store.check_ready().await {
        Ok(()) => {
            Json(json!({ "status": "ready", "database": state.store.engine().to_string() })).into_response()
        }
        Err(error) => {
            tracing::warn!(error = %error, cause = ?std::error::Error::source(&error).map(ToString::to_string), "not ready");
            ApiError::new(Code::NotReady, error.to_string()).into_response()
        }
    }
}

/// Auth: none (expose it on an internal network only). Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::new(Code::MetricsUnavailable, "no metrics recorder is installed").into_response();
    };
    let pool = state.store.pool_stats();
    let engine = state.store.engine().to_string();
    metrics::gauge!("countersign_db_pool_connections", "engine" => engine.clone()).set(f64::from(pool.size));
    metrics::gauge!("countersign_db_pool_idle_connections", "engine" => engine).set(pool.idle as f64);
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(Code::MethodNotAllowed, "this endpoint does not accept that method")
}
