//! Extractors whose rejections are [`ApiError`]s, so bad input gets the same precise JSON error
//! shape as every other failure instead of axum's plain-text defaults.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use countersign_mobile_protocol::{ErrorCode, Signature};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;
use crate::store::DeviceRecord;

/// A JSON request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::invalid_request(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", other.body_text()),
    }
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than this server accepts",
    )
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", rejection.body_text())
}

/// The TCP peer's address, as the server saw the connection (`None` when the router is driven
/// without a connection, as in-process tests do). No forwarding header is trusted: behind a
/// reverse proxy this is the proxy's address.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(PeerAddr(peer.map(|info| info.0.ip())))
    }
}

// ---------------------------------------------------------------------------------------------
// Device requests (PROTOCOL.md): shared by every `/device/v1` route, whatever capability owns it.

/// The raw body of a device request (signatures cover its exact bytes), with protocol errors.
#[derive(Debug)]
pub struct DeviceBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for DeviceBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(DeviceBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge.as_str(),
                    "body larger than 16 KiB",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest.as_str(),
                    rejection.body_text(),
                )
            }
        })
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest.as_str(),
            format!("invalid body: {e}"),
        )
    })
}

/// Parses a JSON body that carries its own `signature` (enrollment, challenge response). A
/// signature that is not base64url DER is `401 signature_invalid`, like one that does not
/// verify (PROTOCOL.md §9); any other malformed body is `400 invalid_request`.
pub fn parse_signed_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_json(body).map_err(|error| {
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let signature = value.as_ref().and_then(|v| v.get("signature")).and_then(|s| s.as_str());
        match signature.map(Signature::from_base64url) {
            Some(Err(malformed)) => ApiError::protocol(ErrorCode::SignatureInvalid, malformed.to_string()),
            _ => error,
        }
    })
}

/// Verifies the signed-request headers over this exact request, from `peer`.
pub async fn signed_device(
    state: &AppState,
    (method, uri, headers): (&Method, &OriginalUri, &HeaderMap),
    body: &[u8],
    PeerAddr(peer): PeerAddr,
) -> Result<DeviceRecord, ApiError> {
    let path_and_query = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok(state.devices.authenticate(method.as_str(), path_and_query, header, body, peer).await?)
}
