//! Background work: expiring overdue challenges and draining the push outbox.
//!
//! Every instance runs both loops; on PostgreSQL they share the work through `SKIP LOCKED`
//! leases, on SQLite there is one instance. Retries back off exponentially with jitter, honour
//! the provider's `Retry-After`, and stop at the challenge's expiry: a late push is useless.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;
use time::Duration;
use tokio::sync::Notify;

use super::service::ChallengeService;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::push::{PushMessage, PushOutcome, PushSender, PushTarget};
use crate::store::{PushJob, PushJobResult, Store, StoreError};

/// How long a claimed job is ours before another worker may take it over.
const LEASE: Duration = Duration::seconds(30);
const BATCH: u32 = 32;
const EXPIRY_BATCH: u32 = 500;

#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    challenges: Arc<ChallengeService>,
    sender: Arc<dyn PushSender>,
    rng: SystemRandom,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        challenges: Arc<ChallengeService>,
        sender: Arc<dyn PushSender>,
    ) -> Self {
        Self { store, clock, challenges, sender, rng: SystemRandom::new() }
    }

    /// Runs both loops (expiry, push delivery) until the process ends or they are aborted.
    pub fn spawn(self: Arc<Self>) -> [tokio::task::JoinHandle<()>; 2] {
        let expiry = Arc::clone(&self);
        let expiring = tokio::spawn(async move {
            for round in 0u64.. {
                if let Err(error) = expiry.challenges.expire_due(EXPIRY_BATCH).await {
                    tracing::warn!(%error, "expiring challenges failed");
                }
                if let Err(error) = expiry.store.purge_expired_nonces(expiry.clock.now()).await {
                    tracing::warn!(%error, "purging request nonces failed");
                }
                if let Err(error) = expiry.store.purge_expired_registrations(expiry.clock.now()).await {
                    tracing::warn!(%error, "purging expired passkey registrations failed");
                }
                // OIDC rows outlive their use by their tokens' lifetime (a replayed code must
                // still find what it issued); once a minute is enough.
                if round % 60 == 0
                    && let Err(error) = expiry.store.purge_oidc_flow(expiry.clock.now()).await
                {
                    tracing::warn!(%error, "purging finished OIDC sign-ins failed");
                }
                // A Keycloak request's `jti` must stay spent until its token expires, and a
                // little longer: tokens are taken up to the clock leeway past `exp`.
                let spent_until = expiry.clock.now() - crate::keycloak::verify::LEEWAY - Duration::seconds(1);
                if round % 60 == 0
                    && let Err(error) = expiry.store.purge_keycloak_requests(spent_until).await
                {
                    tracing::warn!(%error, "purging expired Keycloak requests failed");
                }
                tokio::time::sleep(StdDuration::from_secs(1)).await;
            }
        });
        let delivering = tokio::spawn(async move {
            let wakeup: Arc<Notify> = self.challenges.push_wakeup();
            loop {
                let notified = wakeup.notified();
                match self.deliver_due().await {
                    Ok(0) => {
                        let _ = tokio::time::timeout(StdDuration::from_millis(500), notified).await;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "push outbox failed");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
        [expiring, delivering]
    }

    /// Sends every due push once; returns how many jobs it handled.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let jobs = self.store.claim_push_jobs(self.clock.now(), LEASE, BATCH).await?;
        let handled = jobs.len();
        for job in jobs {
            let result = self.deliver(&job).await?;
            if !self.store.finish_push_job(&job, result, self.clock.now()).await? {
                // The lease ran out while this worker was sending: another worker claimed the
                // job and its outcome stands.
                tracing::warn!(
                    job = job.id,
                    "push job lease ran out during delivery; outcome left to its new holder"
                );
            }
        }
        Ok(handled)
    }

    async fn deliver(&self, job: &PushJob) -> Result<PushJobResult, StoreError> {
        let now = self.clock.now();
        if job.expires_at <= now {
            return Ok(PushJobResult::Failed { error: "challenge expired before delivery".into() });
        }
        let target = match (job.push.provider.as_str(), &job.push.token) {
            ("apns", Some(token)) => PushTarget::Apns {
                token: token.clone(),
                is_sandbox: job.push.environment.as_deref() == Some("sandbox"),
            },
            ("fcm", Some(token)) => PushTarget::Fcm { token: token.clone() },
            // The token was disabled or replaced by "none" since the job was queued.
            _ => return Ok(PushJobResult::Failed { error: "device has no push registration".into() }),
        };
        let message = PushMessage { challenge_id: job.challenge_id.to_string(), expires_at: job.expires_at };
        let outcome = self.sender.send(&target, &message, now).await;
        let provider = job.push.provider.clone();
        let label = match &outcome {
            PushOutcome::Delivered => "delivered",
            PushOutcome::TokenInvalid { .. } => "token_invalid",
            PushOutcome::Retry { .. } => "retry",
            PushOutcome::Failed { .. } => "failed",
            PushOutcome::NotConfigured => "not_configured",
        };
        metrics::counter!("countersign_push_attempts_total", "provider" => provider, "outcome" => label)
            .increment(1);
        Ok(match outcome {
            PushOutcome::Delivered => PushJobResult::Sent,
            PushOutcome::TokenInvalid { reason } => {
                let event = AuditEvent::new(
                    now,
                    Actor::System,
                    Action::PushTokenDisabled,
                    Subject::Device(job.device_id),
                )
                .with_details(
                    json!({ "device_id": job.device_id, "provider": job.push.provider, "reason": reason }),
                );
                self.store.disable_push_token(job.device_id, event).await?;
                PushJobResult::Failed { error: format!("token invalid: {reason}") }
            }
            PushOutcome::Retry { after, reason } => {
                let at = now + self.backoff(job.attempts, after);
                if at >= job.expires_at {
                    PushJobResult::Failed { error: format!("gave up at challenge expiry: {reason}") }
                } else {
                    PushJobResult::Retry { at, error: reason }
                }
            }
            PushOutcome::Failed { reason } => PushJobResult::Failed { error: reason },
            PushOutcome::NotConfigured => {
                PushJobResult::Failed { error: format!("no {} client configured", job.push.provider) }
            }
        })
    }

    fn backoff(&self, attempts: i32, retry_after: Option<StdDuration>) -> Duration {
        backoff(&self.rng, attempts, retry_after)
    }
}

/// Exponential backoff (0.5 s doubling, capped at 16 s) with ±25 % jitter, never sooner than
/// the receiver asked: the push outbox's and the callback outbox's.
pub(crate) fn backoff(rng: &SystemRandom, attempts: i32, retry_after: Option<StdDuration>) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 6) - 1).unwrap_or(0);
    let base_ms = 500u64 << exponent;
    let mut byte = [0u8; 1];
    let jitter = if rng.fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 * 0.5 + 0.75 } else { 1.0 };
    let computed = StdDuration::from_millis((base_ms as f64 * jitter) as u64);
    let wait = retry_after.map_or(computed, |after| after.max(computed));
    Duration::try_from(wait).unwrap_or(Duration::seconds(16))
}
