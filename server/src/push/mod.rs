//! Push delivery to phones: APNs (HTTP/2 provider API, token auth) and FCM (HTTP v1, OAuth2
//! service account). A push is only a wake-up: it carries the opaque challenge id and generic
//! text, never the user, the app, the place or the number (PROTOCOL.md §8). Approval never
//! depends on it: phones can always pull.
//!
//! This module owns the provider clients and their wire formats. The durable outbox, retries
//! across restarts and token disabling belong to the caller (the challenges worker), which
//! acts on [`PushOutcome`].

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// Where a push goes, from a device's stored registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    Apns { token: String, is_sandbox: bool },
    Fcm { token: String },
}

/// What to deliver: the challenge id (opaque) and when it stops mattering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    pub challenge_id: String,
    /// The challenge's expiry: APNs `apns-expiration`, FCM `ttl` (time left).
    pub expires_at: OffsetDateTime,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The provider says the token is dead (APNs 410 / `BadDeviceToken`, FCM `UNREGISTERED`):
    /// disable it and stop.
    TokenInvalid {
        reason: String,
    },
    /// A transient failure (timeout, 429, 5xx); try again, not before `after` if given.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// A permanent failure for this message (bad request, auth misconfigured); stop.
    Failed {
        reason: String,
    },
    /// No client is configured for this provider.
    NotConfigured,
}

/// Sends one push. Implementations must not retry internally beyond one request: the caller
/// owns the retry schedule (it stops at the challenge's expiry).
#[async_trait]
pub trait PushSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, target: &PushTarget, message: &PushMessage, now: OffsetDateTime) -> PushOutcome;
}

// The clients (`apns`, `fcm`) share `transport` (HTTP/2 client, URLs, bounded bodies) and
// `outcome` (status → PushOutcome, retry-after, logging); `config` turns `[push]` into them.
pub mod apns;
pub mod config;
pub mod fcm;
mod outcome;
pub mod transport;

pub use apns::ApnsClient;
pub use config::{PushConfig, PushConfigError};
pub use fcm::FcmClient;

/// The configured provider clients, routing each push by its target. Built by
/// [`PushConfig::build`]; a provider left unconfigured answers [`PushOutcome::NotConfigured`].
#[derive(Debug, Default)]
pub struct Providers {
    pub apns: Option<ApnsClient>,
    pub fcm: Option<FcmClient>,
}

#[async_trait]
impl PushSender for Providers {
    async fn send(&self, target: &PushTarget, message: &PushMessage, now: OffsetDateTime) -> PushOutcome {
        match (target, &self.apns, &self.fcm) {
            (PushTarget::Apns { token, is_sandbox }, Some(apns), _) => {
                apns.send(token, *is_sandbox, message, now).await
            }
            (PushTarget::Fcm { token }, _, Some(fcm)) => fcm.send(token, message, now).await,
            (PushTarget::Apns { .. }, None, _) => not_configured(outcome::Provider::Apns, message),
            (PushTarget::Fcm { .. }, _, None) => not_configured(outcome::Provider::Fcm, message),
        }
    }
}

fn not_configured(provider: outcome::Provider, message: &PushMessage) -> PushOutcome {
    outcome::record(provider, &message.challenge_id, &PushOutcome::NotConfigured);
    PushOutcome::NotConfigured
}
