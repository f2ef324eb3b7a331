//! The one place where failures become HTTP responses.
//!
//! Every error body is `{"error": "<stable_snake_case_code>", "message": "…", "request_id": "…"}`.
//! Codes are a contract with clients and tests, listed with their statuses in [`super::codes`];
//! messages are for people. Internal failures are logged here, once, with their cause chain,
//! and reach the client only as `internal_error`. Each capability maps its own error enum to an
//! `ApiError` in its `http.rs`; the API-key errors are mapped by their extractor (`app_key`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::codes::Code;
use crate::store::StoreError;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_json`.
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Quote this when reporting a problem; it is in the server's logs.
    pub request_id: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    www_authenticate: Option<&'static str>,
    retry_after_secs: Option<u64>,
}

const INTERNAL_MESSAGE: &str = "internal error; quote the request id when reporting it";

impl ApiError {
    /// An error with a stable `/v1` code; its status comes from the code table.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let status = code.status();
        Self {
            status,
            code: code.as_str(),
            message: message.into(),
            // A 401 says how to authenticate (RFC 9110 §15.5.2); on `/v1` that is the API key.
            www_authenticate: (status == StatusCode::UNAUTHORIZED).then_some("Bearer"),
            retry_after_secs: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, message)
    }

    /// An unexpected failure: logged with its cause chain, opaque to the client.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::opaque()
    }

    /// The 500 a client sees for any fault, whatever its cause.
    pub fn opaque() -> Self {
        Self::new(Code::InternalError, INTERNAL_MESSAGE)
    }

    /// A device-protocol error: the stable code and the status PROTOCOL.md gives it.
    pub fn protocol(code: countersign_mobile_protocol::ErrorCode, message: impl Into<String>) -> Self {
        match code {
            countersign_mobile_protocol::ErrorCode::InternalError => Self::opaque(),
            code => {
                let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                Self {
                    status,
                    code: code.as_str(),
                    message: message.into(),
                    www_authenticate: None,
                    retry_after_secs: None,
                }
            }
        }
    }

    /// Adds `Retry-After` (seconds) to the response.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code, message: self.message, request_id: current_request_id() };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(challenge) = self.www_authenticate {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<countersign_mobile_protocol::ProtocolError> for ApiError {
    fn from(error: countersign_mobile_protocol::ProtocolError) -> Self {
        match error.error_code() {
            countersign_mobile_protocol::ErrorCode::InternalError => ApiError::internal(&error),
            code => ApiError::protocol(code, error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    /// Conflicts and absences are mapped by each capability into its own error first; a store
    /// error that reaches the edge unmapped is a server fault.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Contended => {
                ApiError::new(Code::Busy, "too many concurrent changes for this user; try again")
                    .with_retry_after(1)
            }
            other => ApiError::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_a_retryable_busy_or_an_opaque_internal_error() {
        let busy = ApiError::from(StoreError::Contended);
        assert_eq!((busy.status, busy.code), (StatusCode::SERVICE_UNAVAILABLE, "busy"));
        assert_eq!(busy.retry_after_secs, Some(1));
        let internal = ApiError::from(StoreError::Corrupt("bad row".into()));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("bad row"), "causes stay in the logs: {}", internal.message);
    }

    #[test]
    fn statuses_come_from_the_code_table_and_every_401_names_its_scheme() {
        for code in Code::ALL {
            let error = ApiError::new(*code, "m");
            assert_eq!((error.status, error.code), (code.status(), code.as_str()));
            assert_eq!(error.www_authenticate.is_some(), code.status() == StatusCode::UNAUTHORIZED, "{code}");
        }
        let device = ApiError::protocol(countersign_mobile_protocol::ErrorCode::SignatureInvalid, "m");
        assert_eq!((device.status, device.www_authenticate), (StatusCode::UNAUTHORIZED, None));
    }
}
