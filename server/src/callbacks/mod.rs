//! The callback outbox's delivery: HTTP POSTs owed once a challenge is decided.
//!
//! - **CIBA ping** (OpenID CIBA Core 1.0 §10.2): `POST` the client's registered
//!   `backchannel_client_notification_endpoint` with `Authorization: Bearer
//!   <client_notification_token>` and `{"auth_req_id": "…"}`; the client answers 204 (200 is
//!   accepted too) and then fetches its tokens at the token endpoint.
//! - **Keycloak outcome** (Keycloak's CIBA HTTP authentication channel, the `keycloak` module):
//!   `POST` the realm's `…/protocol/openid-connect/ext/ciba/auth/callback` with the bearer token
//!   Keycloak sent and `{"status": "SUCCEED" | "UNAUTHORIZED" | "CANCELLED"}`.
//!
//! Rules shared by both: a job becomes due when its challenge leaves `pending`; redirects are
//! never followed (CIBA §10.2: "the OP MUST NOT follow redirects"); any 2xx ends it delivered;
//! 429, 5xx and a POST that could not be sent are retried with the push outbox's backoff until
//! the request expires; any other answer ends it failed at once (a second POST after an
//! answer could repeat an effect: Keycloak deletes a request that is called back twice). A
//! POST sent but not answered in time is retried for a ping (harmless) but not for Keycloak
//! (given up, audited as perhaps delivered). Jobs are leased
//! for longer than a round takes (POSTs run eight at a time, each within 5 s, 15 s for Keycloak), and
//! ended by compare-and-set, so two workers never both send one; the only repeats possible are
//! a worker dying between the receiver's answer and recording it (after its lease), and a ping
//! re-sent after a timeout.
//! Bearer credentials and `auth_req_id`s are sealed at rest and never logged.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ring::rand::SystemRandom;
use serde_json::json;
use time::Duration;

use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::challenges::model::ChallengeState;
use crate::clock::Clock;
use crate::fault::InternalError;
use crate::secrets::MasterKey;
use crate::store::{CallbackKind, CallbackResult, ClaimedCallback, Store, StoreError};

/// How long a claimed job is ours before another worker may take it over: longer than a
/// round can take (`BATCH / CONCURRENCY` POSTs of at most `KEYCLOAK_TIMEOUT` each, and recording
/// them), so no job is claimed again while it is being sent.
const LEASE: Duration = Duration::seconds(120);
const BATCH: u32 = 32;
/// POSTs in flight at once: one receiver that never answers holds one slot for `TIMEOUT`,
/// not the whole round.
const CONCURRENCY: usize = 8;
/// How often due jobs are looked for.
const POLL_INTERVAL: StdDuration = StdDuration::from_secs(1);
/// Whole-request timeout of one POST.
const TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// A Keycloak callback's: Keycloak notifies a ping-mode client inside it.
const KEYCLOAK_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// What a job carries sealed: the bearer credential and the body's secret part.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSecret {
    pub bearer: String,
    /// A CIBA ping's `auth_req_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_req_id: Option<String>,
}

fn sealing_context(id: uuid::Uuid) -> Vec<u8> {
    format!("countersign/v1/callback/{id}").into_bytes()
}

/// Seals what job `id` will send, bound to that job.
pub fn seal(master: &MasterKey, id: uuid::Uuid, secret: &CallbackSecret) -> Result<Vec<u8>, InternalError> {
    let plain = serde_json::to_vec(secret).map_err(|e| InternalError::caused_by("a callback secret", e))?;
    master
        .encrypt(&sealing_context(id), &plain)
        .map_err(|e| InternalError::caused_by("sealing a callback", e))
}

fn open(master: &MasterKey, id: uuid::Uuid, sealed: &[u8]) -> Result<CallbackSecret, InternalError> {
    let plain = master
        .decrypt(&sealing_context(id), sealed)
        .map_err(|e| InternalError::caused_by("opening a callback", e))?;
    serde_json::from_slice(&plain).map_err(|e| InternalError::caused_by("reading a callback", e))
}

/// What Keycloak is told for a challenge's final state: approved → `SUCCEED`; refused by the
/// user (deny, wrong number, fraud report) → `UNAUTHORIZED`; over without an answer (expired,
/// cancelled, or never prompted) → `CANCELLED`.
pub fn keycloak_status(state: Option<ChallengeState>) -> &'static str {
    match state {
        Some(ChallengeState::Approved | ChallengeState::Redeemed) => "SUCCEED",
        Some(ChallengeState::Denied | ChallengeState::DeniedWrongNumber | ChallengeState::Reported) => {
            "UNAUTHORIZED"
        }
        _ => "CANCELLED",
    }
}

/// How one POST went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Status(u16, Option<StdDuration>),
    /// Not sent: no connection could be made. Retried.
    NotSent(String),
    /// Sent, perhaps received, no answer (timeout, broken connection): a ping is retried (the
    /// client fetches its tokens once however often it is pinged); a Keycloak outcome is not,
    /// as Keycloak drops a request that is called back twice.
    NoAnswer(String),
}

#[derive(Debug)]
pub struct CallbackDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    http: reqwest::Client,
    rng: SystemRandom,
}

impl CallbackDelivery {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
    ) -> Result<Self, InternalError> {
        // No proxy from the environment: a callback goes to the registered URL, nowhere else.
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InternalError::caused_by("the callback HTTP client", e))?;
        Ok(Self { store, clock, master, http, rng: SystemRandom::new() })
    }

    /// Delivers due jobs until the process ends or the task is aborted.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for round in 0u64.. {
                if let Err(error) = self.deliver_due().await {
                    tracing::warn!(%error, "delivering callbacks failed");
                }
                if round % 300 == 0 {
                    let before = self.clock.now() - Duration::hours(1);
                    if let Err(error) = self.store.purge_callbacks(before).await {
                        tracing::warn!(%error, "purging ended callbacks failed");
                    }
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
    }

    /// One round: claims the due jobs and tries each once. Returns how many were tried.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        use futures_util::stream::{self, StreamExt};
        let claimed = self.store.claim_callbacks(self.clock.now(), LEASE, BATCH).await?;
        let tried = claimed.len();
        let failures = std::sync::Mutex::new(Vec::new());
        stream::iter(claimed)
            .for_each_concurrent(CONCURRENCY, |job| {
                let failures = &failures;
                async move {
                    let (result, audit) = self.attempt(&job).await;
                    match self.store.finish_callback(&job, result, self.clock.now(), audit).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(callback = %job.job.id, "callback claim ran out; another worker has it");
                        }
                        Err(error) => failures.lock().unwrap_or_else(|p| p.into_inner()).push(error),
                    }
                }
            })
            .await;
        match failures.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().next() {
            Some(error) => Err(error),
            None => Ok(tried),
        }
    }

    async fn attempt(&self, claimed: &ClaimedCallback) -> (CallbackResult, Option<AuditEvent>) {
        let job = &claimed.job;
        let now = self.clock.now();
        if now >= job.expires_at {
            return self.failed(claimed, "the request expired before the callback could be delivered", None);
        }
        let secret = match open(&self.master, job.id, &job.sealed) {
            Ok(secret) => secret,
            Err(error) => return self.failed(claimed, &error.to_string(), None),
        };
        let body = match job.kind {
            CallbackKind::CibaPing => json!({ "auth_req_id": secret.auth_req_id }),
            CallbackKind::KeycloakOutcome => json!({ "status": keycloak_status(claimed.challenge_state) }),
        };
        // Keycloak pings its own client inside the callback request: give it time.
        let timeout = match job.kind {
            CallbackKind::CibaPing => TIMEOUT,
            CallbackKind::KeycloakOutcome => KEYCLOAK_TIMEOUT,
        };
        let answer = self.post(&job.url, &secret.bearer, &body, timeout).await;
        let retry = |reason: String, after: Option<StdDuration>| {
            let at = now + crate::challenges::worker::backoff(&self.rng, claimed.attempts, after);
            if at >= job.expires_at {
                self.failed(claimed, &format!("gave up at the request's expiry: {reason}"), None)
            } else {
                tracing::warn!(callback = %job.id, kind = job.kind.as_str(), %reason, "callback not delivered; will retry");
                (CallbackResult::Retry { at, error: reason }, None)
            }
        };
        match answer {
            Reply::Status(status, _) if (200..300).contains(&status) => {
                let event = self.event(claimed, Action::CallbackDelivered, json!({ "status": status }));
                (CallbackResult::Delivered, Some(event))
            }
            Reply::Status(status, after) if status == 429 || status >= 500 => {
                retry(format!("the receiver answered HTTP {status}"), after)
            }
            Reply::Status(status, _) => {
                self.failed(claimed, &format!("the receiver refused it: HTTP {status}"), Some(status))
            }
            Reply::NotSent(reason) => retry(reason, None),
            Reply::NoAnswer(reason) => match job.kind {
                CallbackKind::CibaPing => retry(reason, None),
                CallbackKind::KeycloakOutcome => self.failed(
                    claimed,
                    &format!("{reason}; perhaps delivered, so not sent again (a second callback would make Keycloak drop the request)"),
                    None,
                ),
            },
        }
    }

    fn failed(
        &self,
        claimed: &ClaimedCallback,
        reason: &str,
        status: Option<u16>,
    ) -> (CallbackResult, Option<AuditEvent>) {
        tracing::warn!(callback = %claimed.job.id, kind = claimed.job.kind.as_str(), %reason, "callback given up");
        let event =
            self.event(claimed, Action::CallbackFailed, json!({ "reason": reason, "status": status }));
        (CallbackResult::Failed { error: reason.to_owned() }, Some(event))
    }

    fn event(&self, claimed: &ClaimedCallback, action: Action, details: serde_json::Value) -> AuditEvent {
        let job = &claimed.job;
        let subject = job.challenge_id.map_or(Subject::Network(job.url.clone()), Subject::Challenge);
        let mut details = details;
        details["callback_id"] = json!(job.id);
        details["kind"] = json!(job.kind.as_str());
        details["url"] = json!(job.url);
        details["attempts"] = json!(claimed.attempts);
        AuditEvent::new(self.clock.now(), Actor::System, action, subject).with_details(details)
    }

    async fn post(&self, url: &str, bearer: &str, body: &serde_json::Value, timeout: StdDuration) -> Reply {
        let sent = self.http.post(url).bearer_auth(bearer).json(body).timeout(timeout).send().await;
        match sent {
            Ok(response) => {
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| StdDuration::from_secs(secs.min(300)));
                Reply::Status(response.status().as_u16(), after)
            }
            // The error's text may hold the URL, never the bearer or body.
            Err(error) if error.is_connect() => Reply::NotSent(format!("not sent: {}", error.without_url())),
            Err(error) => Reply::NoAnswer(format!("no answer: {}", error.without_url())),
        }
    }
}
