//! A client's key set fetched from its `jwks_uri`: bounded (timeout, no redirects, size limit,
//! the same validation as an inline set), cached for a TTL, and refetched early — when an
//! assertion names a `kid` the cached set lacks (the client rotated) — at most once per short
//! interval per URI, so a flood of assertions with made-up `kid`s cannot make us hammer the
//! client's server. Times come from the injected clock.
//!
//! The cache lives in this process: it holds public keys the client publishes anyway, so two
//! instances holding different copies only means each fetched once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use super::clients::{ClientJwks, MAX_JWKS_BYTES, published_signing_keys};
use crate::clock::Clock;

/// How the fetcher behaves.
#[derive(Debug, Clone, Copy)]
pub struct JwksFetchSettings {
    /// Whole-request timeout.
    pub timeout: std::time::Duration,
    /// How long a fetched set is used before it is fetched again.
    pub ttl: Duration,
    /// The least time between two fetches of one URI, whatever asks for them.
    pub min_refetch_interval: Duration,
}

impl Default for JwksFetchSettings {
    fn default() -> Self {
        Self {
            timeout: std::time::Duration::from_secs(5),
            ttl: Duration::minutes(10),
            min_refetch_interval: Duration::seconds(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksFetchError {
    #[error("the client's jwks_uri could not be fetched: {0}")]
    Unreachable(String),
    #[error("the client's jwks_uri answered HTTP {0}")]
    Status(u16),
    #[error("the client's key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the client's key set is invalid: {0}")]
    Invalid(String),
    #[error("the client's jwks_uri was fetched moments ago and failed; not fetching again yet")]
    RecentlyFailed,
}

#[derive(Debug, Default)]
struct Entry {
    keys: Option<(Arc<ClientJwks>, OffsetDateTime)>,
    last_attempt: Option<OffsetDateTime>,
    /// Held while deciding and fetching, so concurrent requests wait for one fetch's result
    /// instead of starting their own (or being refused while it is in flight).
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// Fetches and caches client key sets by URI.
#[derive(Debug)]
pub struct ClientJwksFetcher {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    settings: JwksFetchSettings,
    cache: Mutex<HashMap<String, Entry>>,
}

/// What the cache says before any fetch.
enum Plan {
    Use(Arc<ClientJwks>),
    Fetch { stale: Option<Arc<ClientJwks>> },
    RecentlyFailed,
}

impl ClientJwksFetcher {
    pub fn new(clock: Arc<dyn Clock>, settings: JwksFetchSettings) -> Result<Self, JwksFetchError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksFetchError::Unreachable(e.to_string()))?;
        Ok(Self { http, clock, settings, cache: Mutex::new(HashMap::new()) })
    }

    /// The key set at `uri`, holding `kid` if one is wanted and it can be had: from the cache
    /// while fresh and not missing `kid`, else fetched (rate-limited per URI).
    pub async fn keys(&self, uri: &str, kid: Option<&str>) -> Result<Arc<ClientJwks>, JwksFetchError> {
        let gate = self.with_entry(uri, |entry| Arc::clone(&entry.gate));
        let _one_at_a_time = gate.lock().await;
        let now = self.clock.now();
        let plan = self.plan(uri, kid, now);
        let stale = match plan {
            Plan::Use(keys) => return Ok(keys),
            Plan::RecentlyFailed => return Err(JwksFetchError::RecentlyFailed),
            Plan::Fetch { stale } => stale,
        };
        match self.fetch(uri).await {
            Ok(jwks) => {
                let jwks = Arc::new(jwks);
                self.with_entry(uri, |entry| entry.keys = Some((Arc::clone(&jwks), now)));
                Ok(jwks)
            }
            // A failed early refetch keeps the fresh set we had: the token then fails on its kid.
            Err(error) => stale.ok_or(error),
        }
    }

    fn with_entry<T>(&self, uri: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(cache.entry(uri.to_owned()).or_default())
    }

    /// Decides what to do, recording a fetch attempt before it starts.
    fn plan(&self, uri: &str, kid: Option<&str>, now: OffsetDateTime) -> Plan {
        let settings = self.settings;
        self.with_entry(uri, |entry| {
            // Past its TTL a set is never used again: a key the client withdrew stays withdrawn.
            let fresh =
                entry.keys.as_ref().filter(|(_, at)| now < *at + settings.ttl).map(|(k, _)| Arc::clone(k));
            let may_fetch = entry.last_attempt.is_none_or(|at| now >= at + settings.min_refetch_interval);
            match fresh {
                Some(keys) if kid.is_none_or(|kid| keys.has_kid(kid)) || !may_fetch => Plan::Use(keys),
                None if !may_fetch => Plan::RecentlyFailed,
                stale => {
                    entry.last_attempt = Some(now);
                    Plan::Fetch { stale }
                }
            }
        })
    }

    async fn fetch(&self, uri: &str) -> Result<ClientJwks, JwksFetchError> {
        let unreachable = |e: reqwest::Error| JwksFetchError::Unreachable(e.without_url().to_string());
        let mut response = self
            .http
            .get(uri)
            .header(reqwest::header::ACCEPT, "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(JwksFetchError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
            return Err(JwksFetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksFetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| JwksFetchError::Invalid("not UTF-8".to_owned()))?;
        published_signing_keys(&text).map_err(|e| JwksFetchError::Invalid(e.to_string()))
    }
}
