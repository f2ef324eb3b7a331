//! `POST /keycloak/ciba`: the URI Keycloak is started with as its HTTP authentication channel.
//! Keycloak's contract, not Countersign's API, so it stays out of the `/v1` OpenAPI document.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::service::ChannelError;
use super::verify::TokenError;
use super::{CHANNEL_PATH, MAX_BODY_BYTES};
use crate::app::AppState;
use crate::http::{ApiError, Code};

pub fn routes() -> Router<AppState> {
    Router::new().route(CHANNEL_PATH, post(channel)).layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Auth: a Keycloak realm's signed bearer token (its `iss` a configured realm, verified with
/// that realm's published keys). Answers 201 with no body, as Keycloak requires.
async fn channel(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the body is larger than {MAX_BODY_BYTES} bytes");
            return ApiError::new(Code::PayloadTooLarge, message).into_response();
        }
        Err(rejection) => return ApiError::new(Code::InvalidBody, rejection.body_text()).into_response(),
    };
    match state.keycloak.accept(bearer(&headers), &body).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(error) => api_error(error).into_response(),
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn api_error(error: ChannelError) -> ApiError {
    let message = error.to_string();
    match error {
        // Why is for the logs and the audit trail, not for whoever is knocking.
        ChannelError::Token(TokenError::Keys(_)) => ApiError::new(
            Code::KeycloakKeysUnavailable,
            "the realm's signing keys cannot be fetched right now",
        ),
        // The details are in the audit trail; the presenter learns only that it was refused.
        ChannelError::Token(_) => ApiError::new(Code::KeycloakTokenInvalid, "the bearer token is refused"),
        ChannelError::Body(_) => ApiError::new(Code::KeycloakRequestInvalid, message),
        ChannelError::BindingMessage(_) => ApiError::new(Code::InvalidBindingMessage, message),
        ChannelError::Replayed => ApiError::new(Code::KeycloakTokenReplayed, message),
        ChannelError::SubjectPinned => ApiError::new(Code::KeycloakSubjectMismatch, message),
        ChannelError::Store(error) => error.into(),
        ChannelError::Internal(error) => ApiError::internal(&error),
    }
}
