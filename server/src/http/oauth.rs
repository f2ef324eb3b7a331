//! OAuth endpoints' errors as responses: RFC 6749 §5.2 bodies `{"error", "error_description"}`
//! with the code's status, never cached, with the error's `WWW-Authenticate` challenge (`Basic`
//! for a client that tried HTTP Basic, RFC 6749 §5.2). Server errors carry no detail.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oidc::oauth_error::OAuthError;

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.www_authenticate.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::oauth_error::{BASIC_CHALLENGE, OAuthErrorCode};

    #[tokio::test]
    async fn an_oauth_error_renders_as_rfc_6749_json() {
        let response = OAuthError::invalid_client("client authentication failed")
            .with_challenge(BASIC_CHALLENGE)
            .into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], r#"Basic realm="countersign""#);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "invalid_client",
                "error_description": "client authentication failed",
            })
        );
        let bad = OAuthError::new(OAuthErrorCode::InvalidRequest, "two methods").into_response();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
