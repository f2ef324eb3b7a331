//! Device requests (PROTOCOL.md): the raw body whose exact bytes a signature covers, and the
//! signed-request extractor every `/device/v1` route that acts as a device uses, whatever
//! capability owns the route. Rejections carry the protocol's codes.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::StatusCode;
use countersign_mobile_protocol::{ErrorCode, Signature};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::extract::PeerAddr;
use crate::app::AppState;
use crate::store::DeviceRecord;

/// The raw body of a device request (signatures cover its exact bytes), with protocol errors.
#[derive(Debug)]
pub struct DeviceBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for DeviceBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(DeviceBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::protocol(ErrorCode::PayloadTooLarge, "body larger than 16 KiB")
            } else {
                ApiError::protocol(ErrorCode::InvalidRequest, rejection.body_text())
            }
        })
    }
}

/// A request signed by an enrolled, active device (PROTOCOL.md §4): the signed-request headers
/// verified over this exact method, path, query and body, the nonce not seen before, the
/// timestamp within the allowed skew, refused requests limited per device and per network.
/// The body comes along for routes that read it.
#[derive(Debug)]
pub struct SignedDevice {
    pub device: DeviceRecord,
    pub body: Bytes,
}

impl FromRequest<AppState> for SignedDevice {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Ok(OriginalUri(uri)) = OriginalUri::from_request_parts(&mut parts, state).await;
        let Ok(PeerAddr(peer)) = PeerAddr::from_request_parts(&mut parts, state).await;
        let (method, headers) = (parts.method.clone(), parts.headers.clone());
        let DeviceBody(body) = DeviceBody::from_request(Request::from_parts(parts, body), state).await?;
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let device = state.devices.authenticate(method.as_str(), path_and_query, header, &body, peer).await?;
        Ok(SignedDevice { device, body })
    }
}

/// Parses a device request's JSON body: `400 invalid_request` if it does not parse.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::protocol(ErrorCode::InvalidRequest, format!("invalid body: {e}")))
}

/// Parses a JSON body that carries its own `signature` (enrollment, challenge response). A
/// signature that is not base64url DER is `401 signature_invalid`, like one that does not
/// verify (PROTOCOL.md §9); any other malformed body is `400 invalid_request`.
pub fn parse_signed_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_json(body).map_err(|error| {
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let signature = value.as_ref().and_then(|v| v.get("signature")).and_then(|s| s.as_str());
        match signature.map(Signature::from_base64url) {
            Some(Err(malformed)) => ApiError::protocol(ErrorCode::SignatureInvalid, malformed.to_string()),
            _ => error,
        }
    })
}
