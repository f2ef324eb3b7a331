//! The `[push]` configuration section and its validation into ready clients.
//!
//! ```toml
//! [push.apns]
//! key_file = "/run/secrets/AuthKey_ABC123DEFG.p8"   # EC P-256 PKCS#8 PEM from Apple
//! key_id = "ABC123DEFG"
//! team_id = "DEF123GHIJ"
//! topic = "com.example.countersign"                 # the app's bundle id
//! # base_url = "https://api.push.apple.com"        sandbox_base_url = "https://api.sandbox.push.apple.com"
//!
//! [push.fcm]
//! service_account_file = "/run/secrets/firebase-service-account.json"
//! # base_url = "https://fcm.googleapis.com"
//! ```
//!
//! A section that is absent leaves that provider unconfigured (its pushes are
//! [`PushOutcome::NotConfigured`](super::PushOutcome::NotConfigured); phones still poll). A
//! section that is present must be complete: [`PushConfig::build`] names the first key that is
//! missing or wrong, and never quotes key material.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Providers;
use super::apns::{self, ApnsClient, ApnsEndpoints, ApnsSigningKey, InvalidApnsKey};
use super::fcm::{self, FcmClient, InvalidServiceAccount, ServiceAccount};
use super::transport::ProviderUrl;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    pub apns: Option<ApnsConfig>,
    pub fcm: Option<FcmConfig>,
}

/// `[push.apns]`: token-based (`.p8`) authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` auth key file from Apple's developer account.
    pub key_file: Option<PathBuf>,
    /// The key's 10-character id (the `kid` of provider tokens).
    pub key_id: Option<String>,
    /// The developer team's 10-character id (the `iss` of provider tokens).
    pub team_id: Option<String>,
    /// The app's bundle id (`apns-topic`).
    pub topic: Option<String>,
    /// Production endpoint; default [`apns::DEFAULT_BASE_URL`].
    pub base_url: Option<String>,
    /// Endpoint for devices registered with `environment = sandbox`; default
    /// [`apns::DEFAULT_SANDBOX_BASE_URL`].
    pub sandbox_base_url: Option<String>,
}

/// `[push.fcm]`: a Firebase service account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service-account key JSON downloaded from the Firebase console.
    pub service_account_file: Option<PathBuf>,
    /// Default [`fcm::DEFAULT_BASE_URL`].
    pub base_url: Option<String>,
}

/// What is wrong with the `[push]` section; `key` is the full config key to fix.
#[derive(Debug, thiserror::Error)]
pub enum PushConfigError {
    #[error("{key} is required when {section} is set")]
    Missing { key: &'static str, section: &'static str },
    #[error("{key}: cannot read {}: {source}", path.display())]
    Unreadable { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("cannot set up the HTTP client for {provider}: {source}")]
    HttpClient { provider: &'static str, source: reqwest::Error },
}

impl PushConfig {
    /// Reads the key files, validates everything, and builds the configured clients.
    pub fn build(&self) -> Result<Providers, PushConfigError> {
        Ok(Providers {
            apns: self.apns.as_ref().map(ApnsConfig::build).transpose()?,
            fcm: self.fcm.as_ref().map(FcmConfig::build).transpose()?,
        })
    }
}

impl ApnsConfig {
    fn build(&self) -> Result<ApnsClient, PushConfigError> {
        const SECTION: &str = "[push.apns]";
        let key_file = required(&self.key_file, "push.apns.key_file", SECTION)?;
        let with_key = "push.apns.key_file";
        let key_id = required(&self.key_id, "push.apns.key_id", with_key)?;
        let team_id = required(&self.team_id, "push.apns.team_id", with_key)?;
        let topic = required(&self.topic, "push.apns.topic", with_key)?;
        let pem = read("push.apns.key_file", key_file)?;
        let key = ApnsSigningKey::from_pkcs8_pem(&pem, key_id, team_id).map_err(|error| {
            let key = match error {
                InvalidApnsKey::NotP256Pkcs8 => "push.apns.key_file",
                InvalidApnsKey::BadKeyId => "push.apns.key_id",
                InvalidApnsKey::BadTeamId => "push.apns.team_id",
            };
            PushConfigError::Invalid { key, problem: error.to_string() }
        })?;
        // A bundle id, possibly with a `.voip`-style suffix: it goes into a header.
        let is_bundle_id =
            !topic.is_empty() && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !is_bundle_id {
            let problem = "must be the app's bundle id (letters, digits, '-', '.', '_')".to_owned();
            return Err(PushConfigError::Invalid { key: "push.apns.topic", problem });
        }
        let endpoints = ApnsEndpoints {
            production: url("push.apns.base_url", self.base_url.as_deref(), apns::DEFAULT_BASE_URL)?,
            sandbox: url(
                "push.apns.sandbox_base_url",
                self.sandbox_base_url.as_deref(),
                apns::DEFAULT_SANDBOX_BASE_URL,
            )?,
        };
        ApnsClient::new(key, topic.to_owned(), endpoints)
            .map_err(|source| PushConfigError::HttpClient { provider: "apns", source })
    }
}

impl FcmConfig {
    fn build(&self) -> Result<FcmClient, PushConfigError> {
        const KEY: &str = "push.fcm.service_account_file";
        let path = required(&self.service_account_file, KEY, "[push.fcm]")?;
        let text = String::from_utf8(read(KEY, path)?).map_err(|_| PushConfigError::Invalid {
            key: KEY,
            problem: InvalidServiceAccount::NotJson.to_string(),
        })?;
        let account = ServiceAccount::from_json(&text).map_err(|error| PushConfigError::Invalid {
            key: KEY,
            problem: format!("{} {error}", path.display()),
        })?;
        warn_if_cleartext(KEY, account.token_uri());
        let base_url = url("push.fcm.base_url", self.base_url.as_deref(), fcm::DEFAULT_BASE_URL)?;
        FcmClient::new(account, base_url)
            .map_err(|source| PushConfigError::HttpClient { provider: "fcm", source })
    }
}

fn required<'a, T>(
    value: &'a Option<T>,
    key: &'static str,
    section: &'static str,
) -> Result<&'a T, PushConfigError> {
    value.as_ref().ok_or(PushConfigError::Missing { key, section })
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, PushConfigError> {
    std::fs::read(path).map_err(|source| PushConfigError::Unreadable { key, path: path.to_owned(), source })
}

fn url(key: &'static str, configured: Option<&str>, default: &str) -> Result<ProviderUrl, PushConfigError> {
    let url = ProviderUrl::parse(configured.unwrap_or(default))
        .map_err(|error| PushConfigError::Invalid { key, problem: error.to_string() })?;
    warn_if_cleartext(key, &url);
    Ok(url)
}

/// `http://` is for local fakes in tests; anywhere else it would expose credentials.
fn warn_if_cleartext(key: &'static str, url: &ProviderUrl) {
    if url.is_cleartext_remote() {
        tracing::warn!(key, url = %url, "push provider URL is cleartext http:// to a non-loopback host");
    }
}
