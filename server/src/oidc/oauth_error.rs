//! OAuth 2.0 errors (RFC 6749 §5.2, OIDC Core §3.1.2.6, RFC 9126, RFC 9101, OpenID CIBA):
//! the stable `error` codes the OIDC endpoints answer with, their HTTP status, and the JSON body
//! `{"error": "...", "error_description": "..."}`. `crate::http::oauth` turns one into a
//! response (`Cache-Control: no-store`, `WWW-Authenticate: Basic` when Basic was tried).

use std::fmt;

use serde_json::{Value, json};

/// An RFC 6749 (and extensions') error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    InvalidRequestObject,
    InvalidRequestUri,
    RequestNotSupported,
    RequestUriNotSupported,
    LoginRequired,
    InteractionRequired,
    /// CIBA poll: not decided yet.
    AuthorizationPending,
    /// CIBA poll: polled too fast.
    SlowDown,
    ExpiredToken,
    InvalidToken,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        use OAuthErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidScope => "invalid_scope",
            AccessDenied => "access_denied",
            UnsupportedResponseType => "unsupported_response_type",
            InvalidRequestObject => "invalid_request_object",
            InvalidRequestUri => "invalid_request_uri",
            RequestNotSupported => "request_not_supported",
            RequestUriNotSupported => "request_uri_not_supported",
            LoginRequired => "login_required",
            InteractionRequired => "interaction_required",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            ExpiredToken => "expired_token",
            InvalidToken => "invalid_token",
            ServerError => "server_error",
            TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status a direct (back-channel) response carries.
    pub fn status(self) -> u16 {
        use OAuthErrorCode::*;
        match self {
            InvalidClient | InvalidToken => 401,
            AccessDenied => 403,
            ServerError => 500,
            TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error an OAuth endpoint answers with. The description is for the client's developer:
/// precise about what was wrong with the request, never about secrets or which check failed
/// inside a credential (an attacker probing a secret learns only `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    /// The client tried HTTP Basic: a 401 must then challenge with `WWW-Authenticate: Basic`.
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), basic_challenge: false }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, description)
    }

    /// An internal failure: the details go to the logs, not to the client.
    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "the server could not complete the request")
    }

    pub fn with_basic_challenge(mut self, basic: bool) -> Self {
        self.basic_challenge = basic;
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body (RFC 6749 §5.2).
    pub fn body(&self) -> Value {
        json!({ "error": self.code.as_str(), "error_description": self.description })
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}
