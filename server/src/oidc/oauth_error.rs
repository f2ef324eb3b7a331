//! OAuth 2.0 errors (RFC 6749 §5.2, OIDC Core §3.1.2.6, RFC 9126, RFC 9101, OpenID CIBA):
//! the stable `error` codes the OIDC endpoints answer with, their HTTP status, and the JSON body
//! `{"error": "...", "error_description": "..."}`. `crate::http::oauth` turns one into a
//! response (`Cache-Control: no-store`, and its `WWW-Authenticate` challenge if it has one).

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
    /// CIBA: the `binding_message` cannot be shown (too long, characters, a number of the wrong
    /// length, a number the user saw lately).
    InvalidBindingMessage,
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
            InvalidBindingMessage => "invalid_binding_message",
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
    /// The `WWW-Authenticate` challenge to send, if any: `Basic` for a client that tried HTTP
    /// Basic (RFC 6749 §5.2), `Bearer error="invalid_token"` for a bad access token (RFC 6750).
    pub www_authenticate: Option<String>,
    /// The token endpoint answers every grant error 400 (RFC 6749 §5.2), `access_denied` too
    /// (CIBA Core §11); elsewhere `access_denied` is 403 (§13).
    pub at_token_endpoint: bool,
}

/// The challenge for a client that tried HTTP Basic.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="countersign""#;

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), www_authenticate: None, at_token_endpoint: false }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, description)
    }

    /// An internal failure `error`, logged; the client learns only that it happened.
    pub fn internal(error: impl fmt::Display) -> Self {
        tracing::error!(error = %error, "an OAuth endpoint failed");
        Self::server_error()
    }

    /// An internal failure: the details go to the logs, not to the client.
    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "the server could not complete the request")
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: impl Into<String>) -> Self {
        self.www_authenticate = Some(challenge.into());
        self
    }

    /// Answered at the token endpoint (see `at_token_endpoint`).
    pub fn from_token_endpoint(mut self) -> Self {
        self.at_token_endpoint = true;
        self
    }

    pub fn status(&self) -> u16 {
        match self.code {
            OAuthErrorCode::AccessDenied if self.at_token_endpoint => 400,
            code => code.status(),
        }
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
