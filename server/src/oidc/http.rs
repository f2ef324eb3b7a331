//! The OpenID Connect provider's HTTP endpoints: the JWKS (in the `/v1` OpenAPI document), and
//! the discovery document, PAR, authorize, the sign-in page, token and userinfo.

use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authorization::{Params, ParamsError};
use super::client_auth::ClientCredentials;
use super::flow::{
    AUTHORIZE_PATH, Answer, AuthorizeFailure, Browser, CIBA_PATH, DISCOVERY_PATH, PAR_PATH, PageFactor,
    SIGN_IN_PATH, SignInError, SwitchError, TOKEN_PATH, USERINFO_PATH, browser_cookie_name, error_location,
};
use super::keys::{JWKS_PATH, JwkSet};
use super::oauth_error::OAuthError;
use crate::app::AppState;
use crate::http::page::{content_security_policy_posting_to, html, shown_time, with_page_headers};
use crate::http::{ApiError, ApiPath, Code, PeerAddr};
use crate::ids::AuthorizationId;
use crate::pages::views::{ErrorPage, OidcFormPostPage, OidcRefusedPage, OidcSignInPage};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// Auth: none (public keys, for relying parties). The published signing keys: the key signing
/// now, a rotation's next key ahead of its first token, and retired keys until their tokens
/// expire. Cacheable for no longer than the publish overlap of a rotation.
#[utoipa::path(
    get,
    path = JWKS_PATH,
    tag = "oidc",
    responses(
        (status = 200, description = "The JWK set (RFC 7517): public members only", body = JwkSet, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=N`, N no longer than a rotation's publish overlap"))),
    )
)]
async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let set = state.signing_keys.jwks().await.map_err(|error| ApiError::internal(&error))?;
    let max_age = state.signing_keys.timings().jwks_max_age.whole_seconds();
    let cache = format!("public, max-age={max_age}");
    Ok(([(header::CACHE_CONTROL, cache)], Json(set)).into_response())
}

/// The authorization code flow's endpoints. They are specified by OpenID Connect (the discovery
/// document is their description), so they stay out of the `/v1` OpenAPI document.
pub fn flow_routes() -> Router<AppState> {
    let pages = Router::new()
        .route(AUTHORIZE_PATH, get(authorize_get).post(authorize_post))
        .route(&format!("{SIGN_IN_PATH}/{{id}}"), get(sign_in_page))
        .route(&format!("{SIGN_IN_PATH}/{{id}}/status"), get(sign_in_status))
        .route(&format!("{SIGN_IN_PATH}/{{id}}/finish"), post(finish))
        .route(&format!("{SIGN_IN_PATH}/{{id}}/passkey"), post(use_passkey_instead));
    Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(PAR_PATH, post(par))
        .route(CIBA_PATH, post(ciba))
        .route(TOKEN_PATH, post(token))
        .route(USERINFO_PATH, get(userinfo).post(userinfo))
        .merge(with_page_headers(pages))
}

/// Auth: none (public metadata). The provider's discovery document.
async fn discovery(State(state): State<AppState>) -> Response {
    let document = super::discovery::document(state.oidc.settings());
    ([(header::CACHE_CONTROL, "public, max-age=3600")], Json(document)).into_response()
}

/// The form fields of a `application/x-www-form-urlencoded` body, each at most once.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded"));
    }
    Params::from_pairs(url::form_urlencoded::parse(body).into_owned())
        .map_err(|e| OAuthError::invalid_request(e.to_string()))
}

fn credentials<'a>(headers: &'a HeaderMap, form: &'a Params) -> ClientCredentials<'a> {
    ClientCredentials {
        authorization: headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        client_id: form.get("client_id"),
        client_secret: form.get("client_secret"),
        client_assertion_type: form.get("client_assertion_type"),
        client_assertion: form.get("client_assertion"),
    }
}

/// Auth: the client (`client_secret_basic`, `client_secret_post`, `private_key_jwt`, or a
/// public client's id). A pushed authorization request (RFC 9126): 201 with its `request_uri`.
async fn par(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let params = form(&headers, &body)?;
    let (request_uri, ttl) = state.oidc.push(&credentials(&headers, &params), params.clone()).await?;
    let body = json!({ "request_uri": request_uri, "expires_in": ttl.whole_seconds() });
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// Auth: a CIBA client (as at the token endpoint). A backchannel authentication request (CIBA
/// Core §7): 200 with `auth_req_id`, `expires_in`, `interval` and, unless the client sent its
/// number as `binding_message`, `countersign_number` to show on the consumption device.
async fn ciba(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = form(&headers, &body)?;
    let acknowledgement =
        state.oidc.backchannel(&credentials(&headers, &params), params.clone(), peer.0).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(acknowledgement)).into_response())
}

/// Auth: the client (as at PAR). Exchanges a code (or, with the CIBA grant, an approved
/// `auth_req_id`) for an ID token and an access token.
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = form(&headers, &body)?;
    let tokens = state.oidc.token(&credentials(&headers, &params), &params).await?;
    Ok(([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(tokens)).into_response())
}

/// Auth: an access token from `/oidc/token` (`Authorization: Bearer`). The signed-in user's
/// claims.
async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, OAuthError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let claims = state.oidc.userinfo(authorization).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(claims)).into_response())
}

/// Auth: none (the browser). An authorization request by query: begins the sign-in.
async fn authorize_get(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    let params = Params::from_pairs(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    begin(&state, peer, &headers, params).await
}

/// Auth: none (the browser). An authorization request by form post (OIDC Core §3.1.2.1).
async fn authorize_post(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_pairs(url::form_urlencoded::parse(&body).into_owned());
    begin(&state, peer, &headers, params).await
}

/// Auth: none (the browser; see the authorize handlers). Begins the sign-in, or says why not:
/// a page for a request that cannot go back to its client, else a redirect with the error.
async fn begin(
    state: &AppState,
    peer: PeerAddr,
    headers: &HeaderMap,
    params: Result<Params, ParamsError>,
) -> Result<Response, ApiError> {
    let params = match params {
        Ok(params) => params,
        Err(error) => return oidc_error_page(StatusCode::BAD_REQUEST, "invalid_request", &error.to_string()),
    };
    let browser = Browser {
        ip: peer.0,
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let issuer = state.oidc.settings().issuer.clone();
    match state.oidc.authorize(params, browser).await {
        Ok(started) => {
            let max_age = (started.expires_at - state.clock.now()).whole_seconds().max(1);
            let cookie = format!(
                "{}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}",
                browser_cookie_name(started.id),
                started.browser_secret
            );
            let location = format!("{SIGN_IN_PATH}/{}", started.id);
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location), (header::SET_COOKIE, cookie)])
                .into_response())
        }
        Err(AuthorizeFailure::Page(error)) => {
            oidc_error_page(StatusCode::BAD_REQUEST, "invalid_request", &error.to_string())
        }
        Err(AuthorizeFailure::RequestUri) => oidc_error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request_uri",
            "This sign-in link has expired or was used already. Start again from the application.",
        ),
        Err(AuthorizeFailure::RequestObject(error)) => {
            oidc_error_page(StatusCode::BAD_REQUEST, "invalid_request_object", &error.description)
        }
        Err(AuthorizeFailure::Redirect(redirect)) => {
            answer_response(redirect.answer(&issuer).map_err(|e| ApiError::internal(&e))?, None)
        }
        Err(AuthorizeFailure::Refused { message, back }) if back.form_post => {
            let answer = back.answer(&issuer).map_err(|e| ApiError::internal(&e))?;
            let mut response = answer_response(answer, Some(message))?;
            *response.status_mut() = StatusCode::FORBIDDEN;
            Ok(response)
        }
        Err(AuthorizeFailure::Refused { message, back }) => {
            let back = error_location(back.as_ref(), &issuer).map_err(|e| ApiError::internal(&e))?;
            html(StatusCode::FORBIDDEN, &OidcRefusedPage { message, back })
        }
        Err(AuthorizeFailure::Internal(error)) => Err(ApiError::internal(&error)),
    }
}

/// The secret this browser holds for sign-in `id` (its cookie), if any.
fn browser_secret(headers: &HeaderMap, id: AuthorizationId) -> Option<String> {
    crate::http::cookie(headers, &browser_cookie_name(id)).map(str::to_owned)
}

fn sign_in_error(error: SignInError) -> Result<Response, ApiError> {
    match error {
        SignInError::NotFound => {
            oidc_error_page(StatusCode::NOT_FOUND, "sign_in_not_found", &error.to_string())
        }
        SignInError::Finished => oidc_error_page(StatusCode::GONE, "sign_in_finished", &error.to_string()),
        SignInError::Pending => oidc_error_page(StatusCode::CONFLICT, "sign_in_pending", &error.to_string()),
        SignInError::Internal(error) => Err(ApiError::internal(&error)),
    }
}

/// An answer to the client as a response: a 303, or a page posting the form to the client
/// (its policy allows posting there and nowhere else) — with `message`, the user sends it.
fn answer_response(answer: Answer, message: Option<String>) -> Result<Response, ApiError> {
    match answer {
        Answer::Redirect(location) => {
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
        }
        Answer::FormPost { action, fields } => {
            let origin = url::Url::parse(&action)
                .map(|url| url.origin().ascii_serialization())
                .map_err(|e| ApiError::internal(&e))?;
            let mut response = html(StatusCode::OK, &OidcFormPostPage { action, fields, message })?;
            let policy = HeaderValue::from_str(&content_security_policy_posting_to(&origin))
                .map_err(|e| ApiError::internal(&e))?;
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy);
            Ok(response)
        }
    }
}

fn oidc_error_page(status: StatusCode, code: &'static str, message: &str) -> Result<Response, ApiError> {
    let title = if status == StatusCode::GONE { "This sign-in is over" } else { "Cannot continue" };
    html(status, &ErrorPage { code, title, message: message.to_owned() })
}

/// Auth: the browser that started the sign-in (its `__Host-` cookie). The page with the number
/// to type on the phone, or the passkey button.
async fn sign_in_page(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<AuthorizationId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = match state.oidc.sign_in_view(id, browser_secret(&headers, id).as_deref()).await {
        Ok(view) => view,
        Err(error) => return sign_in_error(error),
    };
    let (expires_at, expires_at_text) = shown_time(view.expires_at);
    let (number, passkey_token) = match view.factor {
        PageFactor::Push { number } => (Some(number), None),
        PageFactor::Passkey { token } => (None, Some(token)),
    };
    // The finish form's answer is a 303 to the client, and browsers hold a form's redirects to
    // the page's `form-action` too: allow that one origin (a scheme for a native app's URI).
    let form_action = match url::Url::parse(&view.redirect_uri) {
        Ok(url) if url.origin().is_tuple() => format!("'self' {}", url.origin().ascii_serialization()),
        Ok(url) => format!("'self' {}:", url.scheme()),
        Err(error) => return Err(ApiError::internal(&error)),
    };
    let page = OidcSignInPage {
        sign_in_path: format!("{SIGN_IN_PATH}/{id}"),
        client_name: view.client_name,
        username: view.username,
        number,
        passkey_token,
        passkey_instead: view.passkey_instead,
        expires_at,
        expires_at_text,
    };
    let mut response = html(StatusCode::OK, &page)?;
    let policy = HeaderValue::from_str(&content_security_policy_posting_to(&form_action))
        .map_err(|e| ApiError::internal(&e))?;
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy);
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    wait: Option<u64>,
}

/// Auth: the browser that started the sign-in (its cookie). `{"state": …}` once the challenge
/// leaves `pending`, or after `wait` seconds.
async fn sign_in_status(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<AuthorizationId>,
    Query(query): Query<StatusQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = browser_secret(&headers, id);
    match state.oidc.sign_in_status(id, secret.as_deref(), query.wait.unwrap_or(0)).await {
        Ok(challenge) => Ok(Json(json!({ "state": challenge.as_str() })).into_response()),
        Err(SignInError::NotFound) => Err(ApiError::new(Code::NotFound, "no such sign-in in this browser")),
        Err(SignInError::Finished) => Err(ApiError::new(Code::SignInFinished, "this sign-in is over")),
        Err(SignInError::Pending) => Err(ApiError::new(Code::SignInFinished, "this sign-in is over")),
        Err(SignInError::Internal(error)) => Err(ApiError::internal(&error)),
    }
}

/// Auth: the browser that started the sign-in (its cookie, which `SameSite=Lax` keeps off
/// cross-site posts, and a same-origin `Origin`). Ends the sign-in: 303 back to the client with
/// a code or `access_denied`.
async fn finish(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<AuthorizationId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(refused) = cross_origin(&state, &headers) {
        return refused;
    }
    match state.oidc.finish(id, browser_secret(&headers, id).as_deref()).await {
        Ok(answer) => {
            let expired =
                format!("{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0", browser_cookie_name(id));
            let mut response = answer_response(answer, None)?;
            if let Ok(value) = HeaderValue::from_str(&expired) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(error) => sign_in_error(error),
    }
}

/// A form post from another site's page, refused. Our own forms post from the issuer's origin
/// or a page origin of the WebAuthn settings (`localhost` for a loopback server, where the
/// passkeys live), or send `Origin: null` from a `no-referrer` page (the `SameSite=Lax` cookie
/// keeps other sites' posts out then).
fn cross_origin(state: &AppState, headers: &HeaderMap) -> Option<Result<Response, ApiError>> {
    let issuer = &state.oidc.settings().issuer;
    let pages = &state.passkeys.settings().origins;
    let ours = |origin: &str| origin == issuer || origin == "null" || pages.iter().any(|o| o == origin);
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    origin.is_some_and(|origin| !ours(origin)).then(|| {
        oidc_error_page(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "This form may only be sent from its own page.",
        )
    })
}

/// Auth: the browser that started the sign-in (its cookie, and a same-origin `Origin`, as for
/// finish). "Use a passkey instead": cancels the push and moves the sign-in to a passkey
/// sign-in, then 303 back to its page, which runs the passkey ceremony; a page saying why not
/// when the phone answered already or the user has no passkey.
async fn use_passkey_instead(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<AuthorizationId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(refused) = cross_origin(&state, &headers) {
        return refused;
    }
    match state.oidc.use_passkey_instead(id, browser_secret(&headers, id).as_deref()).await {
        Ok(()) => {
            let location = format!("{SIGN_IN_PATH}/{id}");
            Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
        }
        Err(SwitchError::SignIn(error)) => sign_in_error(error),
        Err(SwitchError::Refused(message)) => {
            oidc_error_page(StatusCode::CONFLICT, "passkey_switch_refused", message)
        }
    }
}
