//! Security alerts to a SIEM or chat-ops: freezes, quarantines, locks and push spray, written
//! in the transaction that causes them (see `store`) and delivered in order to one signed
//! webhook, with retries and backoff that survive restarts (the cursor lives in the database).
//!
//! Signature: `Countersign-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! Receivers recompute it over the raw body, compare in constant time, and reject stale `t`.
//!
//! Every delivery also carries `audit_checkpoint`, the sealed head of the audit chain at that
//! moment: kept by the receiver, it lets `countersign audit verify --checkpoint` catch a database
//! rolled back to an older state.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::Duration;

pub mod kind;

pub use kind::AlertKind;

use crate::clock::Clock;
use crate::store::{AlertRecord, Store, StoreError};

pub const SIGNATURE_HEADER: &str = "countersign-signature";

/// `[alerts]`: where alerts go. Without a URL they are still recorded in the database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub webhook_url: Option<String>,
    /// Shared secret for the HMAC signature (at least 32 characters).
    pub webhook_secret: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertsConfigError {
    #[error("alerts.webhook_secret (at least 32 characters) is required with alerts.webhook_url")]
    MissingSecret,
    #[error("alerts.webhook_url must be an http(s) URL")]
    BadUrl,
    #[error("cannot set up the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl AlertsConfig {
    pub fn webhook(&self) -> Result<Option<Webhook>, AlertsConfigError> {
        let Some(url) = &self.webhook_url else { return Ok(None) };
        let url = reqwest::Url::parse(url).map_err(|_| AlertsConfigError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AlertsConfigError::BadUrl);
        }
        let secret = self
            .webhook_secret
            .as_ref()
            .filter(|s| s.expose_secret().len() >= 32)
            .ok_or(AlertsConfigError::MissingSecret)?;
        let client = reqwest::Client::builder()
            .connect_timeout(StdDuration::from_secs(5))
            .timeout(StdDuration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Webhook {
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes()),
            client,
        }))
    }
}

/// A configured webhook endpoint.
pub struct Webhook {
    url: reqwest::Url,
    key: hmac::Key,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("host", &self.url.host_str()).finish_non_exhaustive()
    }
}

/// The signature header value for `body` sent at `timestamp`.
pub fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("t={timestamp},v1={}", hex::encode(hmac::sign(key, &message).as_ref()))
}

/// Delivers alerts in order, one worker at a time across instances.
#[derive(Debug)]
pub struct AlertDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhook: Webhook,
}

const LEASE: Duration = Duration::seconds(30);

impl AlertDelivery {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, webhook: Webhook) -> Self {
        Self { store, clock, webhook }
    }

    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.deliver_next().await {
                    Ok(true) => {}
                    Ok(false) => tokio::time::sleep(StdDuration::from_millis(500)).await,
                    Err(error) => {
                        tracing::warn!(%error, "alert delivery failed");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    /// Tries the next undelivered alert once; `true` if one was delivered.
    pub async fn deliver_next(&self) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let Some(cursor) = self.store.lease_alert_cursor(now, LEASE).await? else { return Ok(false) };
        let Some(alert) = self.store.next_alert(cursor.last_delivered).await? else {
            self.store.release_alert_cursor(&cursor, Some(cursor.last_delivered), None, None).await?;
            return Ok(false);
        };
        let checkpoint = crate::audit::checkpoint(self.store.as_ref(), now).await?;
        match self.post(&alert, &checkpoint, now.unix_timestamp()).await {
            Ok(()) => {
                if !self.store.release_alert_cursor(&cursor, Some(alert.id), None, None).await? {
                    // Delivered after the lease ran out: the worker that took over delivers
                    // from its own cursor, so the receiver may see this alert twice.
                    tracing::warn!(
                        alert = alert.id,
                        "alert lease ran out during delivery; cursor left to its new holder"
                    );
                    return Ok(false);
                }
                metrics::counter!("countersign_alerts_delivered_total", "kind" => alert.kind).increment(1);
                Ok(true)
            }
            Err(error) => {
                // 1 s doubling to 5 minutes; alerts behind this one wait, so order is kept.
                let backoff = Duration::seconds(1 << cursor.attempts.clamp(0, 8)).min(Duration::minutes(5));
                tracing::warn!(alert = alert.id, %error, "webhook refused the alert; will retry");
                if !self.store.release_alert_cursor(&cursor, None, Some(now + backoff), Some(error)).await? {
                    tracing::warn!(
                        alert = alert.id,
                        "alert lease ran out during delivery; cursor left to its new holder"
                    );
                }
                Ok(false)
            }
        }
    }

    async fn post(
        &self,
        alert: &AlertRecord,
        checkpoint: &crate::audit::chain::Checkpoint,
        timestamp: i64,
    ) -> Result<(), String> {
        let details: serde_json::Value =
            serde_json::from_str(&alert.details).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({
            "id": alert.id,
            "kind": alert.kind,
            "subject": alert.subject,
            "details": details,
            "created_at": alert.created_at.unix_timestamp(),
            "audit_checkpoint": checkpoint,
        })
        .to_string();
        let response = self
            .webhook
            .client
            .post(self.webhook.url.clone())
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(&self.webhook.key, timestamp, body.as_bytes()))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", response.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let a = sign(&key, 100, b"{}");
        assert!(a.starts_with("t=100,v1=") && a.len() == "t=100,v1=".len() + 64);
        assert_ne!(a, sign(&key, 101, b"{}"));
        assert_ne!(a, sign(&key, 100, b"{ }"));
    }

    #[test]
    fn a_webhook_needs_a_long_secret() {
        let config = AlertsConfig {
            webhook_url: Some("https://siem.example/hook".into()),
            webhook_secret: Some("short".into()),
        };
        assert!(matches!(config.webhook(), Err(AlertsConfigError::MissingSecret)));
        let config = AlertsConfig { webhook_url: Some("ftp://x".into()), webhook_secret: None };
        assert!(matches!(config.webhook(), Err(AlertsConfigError::BadUrl)));
        assert!(AlertsConfig::default().webhook().unwrap().is_none());
    }
}
