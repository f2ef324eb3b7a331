//! HTTP transport to one Countersign server: base URL plus relative paths, and the protocol's
//! rules for reading answers.
//!
//! Knows nothing about signatures: [`crate::device`] decides what to send and passes the
//! authentication headers in. This module only guarantees that the bytes handed in are the bytes
//! sent (so a body hash signed by the caller matches), that the path the caller signed is the path
//! requested, and that answers are either the documented success status or the protocol's error
//! body.

use std::time::Duration;

use countersign_mobile_protocol::{ErrorBody, ServerUrl};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Whole-request timeout. Generous for a phone on a bad network, short enough that a hung server
/// fails a test instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!("countersign-authenticator/", env!("CARGO_PKG_VERSION"));

/// HTTP methods the device protocol uses. The same value names the method on the wire and in
/// the signed canonical bytes, so the two cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// Upper-case name, as sent and as signed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Delete => reqwest::Method::DELETE,
        }
    }
}

/// One request to the server.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: Method,
    /// Path (and query) relative to the base URL, starting with `/`; exactly what a signed
    /// request signs.
    pub path: &'a str,
    /// Extra headers, e.g. the four `countersign-*` authentication headers.
    pub headers: &'a [(&'static str, String)],
    /// Exact JSON body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// The one success status the protocol specifies for this endpoint.
    pub expected_status: u16,
}

/// A client bound to one server base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: ServerUrl,
}

impl Client {
    /// A client for `base`.
    ///
    /// Plain `http://` is allowed only when `base` itself is `http://`, which [`ServerUrl`] permits
    /// for loopback hosts only. Redirects are never followed: a redirected request would be sent
    /// to a path (or host) its signature was not made for, and a phone must not be steered
    /// elsewhere by the network.
    pub fn new(base: ServerUrl) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(base.as_str().starts_with("https://"))
            .user_agent(USER_AGENT)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self { http, base })
    }

    /// The server base URL.
    pub fn base(&self) -> &ServerUrl {
        &self.base
    }

    /// Sends `request` to `base + path` and returns the body of the expected success answer.
    ///
    /// Any other status becomes [`Error::Refused`] when the body is the protocol's error body,
    /// else [`Error::UnexpectedStatus`].
    pub async fn send(&self, request: Request<'_>) -> Result<Vec<u8>, Error> {
        let url = format!("{}{}", self.base, request.path);
        let method = request.method.as_str();
        let network = |source| Error::Network { method, url: url.clone(), source };
        let mut builder = self
            .http
            .request(request.method.to_reqwest(), &url)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = request.body {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let response = builder.send().await.map_err(network)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(network)?.to_vec();
        if status == request.expected_status {
            return Ok(body);
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => Err(Error::Refused { status, body: error }),
            Err(_) => Err(Error::UnexpectedStatus {
                method,
                path: request.path.to_owned(),
                status,
                expected: request.expected_status,
            }),
        }
    }
}

/// Parses a success body, naming the endpoint in the error.
pub fn parse_json<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|error| Error::InvalidAnswer { path: path.to_owned(), reason: error.to_string() })
}
