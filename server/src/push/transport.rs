//! The HTTP plumbing both provider clients share: base URLs, the reqwest client (HTTP/2,
//! timeouts, no redirects) and bounded reading of error bodies.
//!
//! Both APNs and FCM are reached over HTTP/2. Against `https://` URLs (the real providers) the
//! protocol is negotiated with TLS ALPN as usual. Against `http://` URLs there is no ALPN, so
//! the client speaks HTTP/2 with prior knowledge (h2c): that is only for local fakes that
//! speak the providers' wire formats in tests, and a warning is logged at start-up when a
//! cleartext URL points anywhere but loopback.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

/// Time allowed to open a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, response body included. A hung provider costs at most
/// this much per attempt; the caller's retry schedule does the rest.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Provider bodies (errors, OAuth tokens) are small JSON documents; anything longer is cut
/// rather than buffered.
const MAX_BODY: usize = 16 * 1024;

/// An absolute `http://` or `https://` URL without credentials, query or fragment, kept
/// without a trailing slash so request paths can be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUrl {
    text: String,
    is_cleartext: bool,
    is_loopback: bool,
}

/// Why a string is not a usable provider URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an http:// or https:// URL with a host and no credentials, query or fragment")]
pub struct InvalidProviderUrl;

impl ProviderUrl {
    pub fn parse(text: &str) -> Result<Self, InvalidProviderUrl> {
        let url = Url::parse(text).map_err(|_| InvalidProviderUrl)?;
        let is_cleartext = match url.scheme() {
            "https" => false,
            "http" => true,
            _ => return Err(InvalidProviderUrl),
        };
        let has_credentials = !url.username().is_empty() || url.password().is_some();
        if url.host().is_none() || has_credentials || url.query().is_some() || url.fragment().is_some() {
            return Err(InvalidProviderUrl);
        }
        let host = url.host_str().unwrap_or_default();
        let is_loopback = host.eq_ignore_ascii_case("localhost")
            || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let text = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { text, is_cleartext, is_loopback })
    }

    /// This URL followed by `path` (which starts with `/`, or is empty).
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.text)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `http://` to something other than loopback: credentials would cross a network in clear.
    pub fn is_cleartext_remote(&self) -> bool {
        self.is_cleartext && !self.is_loopback
    }
}

impl fmt::Display for ProviderUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The client for one provider URL: HTTP/2 (ALPN for https, prior knowledge for http), the
/// timeouts above, and no redirects (a provider never redirects; following one would carry
/// our bearer credentials elsewhere).
pub fn client_for(url: &ProviderUrl) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")));
    let builder = if url.is_cleartext { builder.http2_prior_knowledge() } else { builder };
    builder.build()
}

/// An `authorization` header value (`scheme` as each provider documents it: the scheme is
/// case-insensitive), marked sensitive so HTTP/2 never indexes it and `Debug` never prints it.
/// `None` if the token holds bytes a header cannot.
pub fn authorization(scheme: &str, token: &str) -> Option<reqwest::header::HeaderValue> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("{scheme} {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Reads at most [`MAX_BODY`] bytes of a response body; a broken body reads as what arrived
/// (for errors the status alone still decides the outcome; a cut token response fails to parse).
/// What a provider answered when it did not accept a push.
#[derive(Debug)]
pub struct Rejection {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends one provider request: `Ok(None)` when accepted (200), `Ok(Some(_))` with the
/// provider's refusal for the caller to interpret, `Err(_)` when it could not be sent at all.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Option<Rejection>, super::PushOutcome> {
    let response = request.send().await.map_err(super::outcome::from_request_error)?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        return Ok(None);
    }
    let headers = response.headers().clone();
    Ok(Some(Rejection { status, headers, body: read_body(response).await }))
}

pub async fn read_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_and_drops_the_trailing_slash() {
        let url = ProviderUrl::parse("https://api.push.apple.com/").unwrap();
        assert_eq!(url.join("/3/device/ab"), "https://api.push.apple.com/3/device/ab");
        assert!(!url.is_cleartext_remote());
        let local = ProviderUrl::parse("http://127.0.0.1:4000").unwrap();
        assert!(!local.is_cleartext_remote());
        assert!(ProviderUrl::parse("http://push.internal:80").unwrap().is_cleartext_remote());
    }

    #[test]
    fn refuses_other_schemes_credentials_queries_and_fragments() {
        for text in [
            "ftp://example.com",
            "api.push.apple.com",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
            "https://example.com/#x",
            "file:///etc/passwd",
            "",
        ] {
            assert_eq!(ProviderUrl::parse(text), Err(InvalidProviderUrl), "{text}");
        }
    }
}
