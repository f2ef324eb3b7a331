//! Orchestration of challenges: creation (with idempotency and superseding), long-poll status,
//! redemption, cancellation, and the device side (details, signed responses).
//!
//! The number exists in the clear only in the creation response. Device responses are verified
//! (signature, user, device state) before any state changes; the change itself is one
//! compare-and-set in the store.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use countersign_mobile_protocol::{
    ChallengeDetails, ChallengeOutcome, ChallengeResponse, Decision, ErrorCode, Nonce, PendingChallenges,
    ProtocolError, SignedChallengeDetails, limits, sanitize_display_text,
};
use ring::digest;
use ring::rand::SecureRandom;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::model::{self, ChallengeState, NumberTagger};
use super::waiters::Waiters;
use crate::alerts::AlertKind;
use crate::api_keys::service::AuthenticatedApp;
use crate::audit::{Action, Actor, AuditEvent, Subject};
use crate::clock::Clock;
use crate::devices::refusals::{Refusal, RefusalReason, Throttled, source_network};
use crate::devices::service::{DeviceService, bad_signature, unix_seconds};
use crate::fatigue::policy::PolicyHandle;
use crate::fault::InternalError;
use crate::ids::{ChallengeId, DeviceId};
use crate::secrets::MasterKey;
use crate::skew::ClockSkew;
use crate::store::{
    ChallengeRecord, ChallengeTransition, Conflict, DeviceRecord, Precondition, Store, StoreError,
};
use crate::store::{DeviceDecision, PromptTarget};

impl From<Throttled> for ChallengeError {
    fn from(throttled: Throttled) -> Self {
        ChallengeError::DeviceThrottled { retry_after_secs: throttled.retry_after_secs }
    }
}

/// Tunables, validated by `config`.
#[derive(Debug, Clone)]
pub struct ChallengeSettings {
    pub ttl: Duration,
    pub number_digits: u8,
    /// How long after approval the app may redeem it.
    pub redeem_window: Duration,
    /// Longest long-poll.
    pub max_wait: StdDuration,
    /// Push budget and escalation ladder.
    pub policy: crate::fatigue::model::Policy,
    /// How far this instance's clock may be from the database's before it is not ready.
    pub max_clock_skew: Duration,
}

impl Default for ChallengeSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::seconds(60),
            number_digits: 3,
            redeem_window: Duration::seconds(120),
            max_wait: StdDuration::from_secs(30),
            policy: crate::fatigue::model::Policy::default(),
            max_clock_skew: crate::skew::DEFAULT_MAX_SKEW,
        }
    }
}

/// How many of a user's recent numbers a new one must differ from.
const RECENT_NUMBERS: u32 = 5;
/// Waiters re-read the row at least this often, in case a wake-up was lost.
const RECHECK: StdDuration = StdDuration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("the same Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// Unknown users and users without a device get the same answer: no enumeration.
    #[error("the user has no enrolled device that can answer a challenge")]
    NoDevice,
    #[error("push is frozen for this user ({reason}); use a stronger factor (passkey) or ask an admin")]
    PushFrozen { until: Option<OffsetDateTime>, reason: String },
    #[error("push is locked for this user after too many failures; only an admin can lift it")]
    PushLocked,
    #[error("this user signs in with a passkey only; create the challenge with \"factor\": \"passkey\"")]
    PasskeyRequired,
    #[error("too many prompts for this user; retry later")]
    PushRateLimited { retry_after_secs: u64 },
    #[error("too many users prompted from this network ({network}); it is throttled")]
    SourceRateLimited { network: String, users: u32 },
    /// A requester-chosen number the user was shown recently (`create_with`).
    #[error("the number was used for this user recently; choose another")]
    NumberRecentlyUsed,
    #[error("no such challenge")]
    NotFound,
    #[error("wait must be between 0 and {0} seconds")]
    InvalidWait(u64),
    #[error("the challenge was already redeemed")]
    AlreadyRedeemed,
    #[error("the challenge is {0}, not approved")]
    NotApproved(ChallengeState),
    #[error("the approval is too old to redeem")]
    ApprovalStale,
    #[error("the challenge is {0}, not pending")]
    NotPending(ChallengeState),
    // Device side, with protocol codes.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("signature does not verify")]
    SignatureInvalid,
    #[error("no such challenge for this device")]
    ChallengeNotFound,
    #[error("the challenge is no longer pending")]
    ChallengeNotPending,
    #[error("the challenge has expired")]
    ChallengeExpired,
    #[error("the counter is not above the last accepted one")]
    CounterNotIncreasing,
    #[error("the device has been revoked")]
    DeviceRevoked,
    #[error("too many refused requests for this device or from this network; retry later")]
    DeviceThrottled { retry_after_secs: u64 },
    #[error("internal failure")]
    Internal(#[from] InternalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the app sends to start a challenge.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeContext {
    /// The sign-in's client IP, as the app saw it.
    #[schema(schema_with = ip_address_schema)]
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Shown on the phone; defaults to the calling app's name. Control and bidirectional
    /// formatting characters are removed, and something must remain.
    #[schema(pattern = r"[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")]
    pub app_name: Option<String>,
    /// Approximate place ("Berlin, DE"), if the app knows it.
    pub location: Option<String>,
}

/// `context.ip` in the OpenAPI document: an IPv4 or IPv6 address, or absent.
fn ip_address_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let address = |format| {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)))
    };
    utoipa::openapi::schema::AnyOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// What a requester may fix about a prompt beyond `create`'s arguments.
#[derive(Debug, Clone, Default)]
pub struct PromptOptions {
    /// The number the consumption device shows already (exactly `number_digits` digits);
    /// drawn at random when absent.
    pub number: Option<String>,
    /// The challenge expires no later than this (the requester's own deadline).
    pub expires_at: Option<OffsetDateTime>,
    pub idempotency_key: Option<String>,
    /// The source spray detection counts this prompt under when the context names no address
    /// of the user: a CIBA client prompts from its server, behind whatever proxy, so the client
    /// itself is the source (`oidc-client:<id>`). Never shown on the phone.
    pub source: Option<String>,
}

/// A created challenge with its number, which only the app ever sees.
#[derive(Debug)]
pub struct CreatedChallenge {
    pub record: ChallengeRecord,
    pub number: String,
}

#[derive(Debug)]
pub struct ChallengeService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    tagger: NumberTagger,
    devices: Arc<DeviceService>,
    pub waiters: Arc<Waiters>,
    push_wakeup: Arc<tokio::sync::Notify>,
    /// The database clock decides expiry; its measured offset says when to ask it.
    skew: Arc<ClockSkew>,
    settings: ChallengeSettings,
    /// The fatigue policy in force (`settings.policy` is only where it starts).
    policy: PolicyHandle,
}

fn sealing_context(id: ChallengeId) -> Vec<u8> {
    format!("countersign/v1/challenge-number/{id}").into_bytes()
}

impl ChallengeService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        devices: Arc<DeviceService>,
        settings: ChallengeSettings,
    ) -> Self {
        let tagger = NumberTagger::new(&master.derive_key(b"countersign/v1/number-tag"));
        let skew = Arc::new(ClockSkew::new(settings.max_clock_skew));
        Self {
            store,
            clock,
            master,
            tagger,
            devices,
            waiters: Arc::new(Waiters::default()),
            push_wakeup: Arc::new(tokio::sync::Notify::new()),
            skew,
            policy: PolicyHandle::new(settings.policy.clone()),
            settings,
        }
    }

    /// Reads the fatigue policy through `handle` (shared with the other services), so a
    /// four-eyes policy change applies here at once.
    pub fn with_policy(mut self, handle: PolicyHandle) -> Self {
        self.policy = handle;
        self
    }

    /// This instance's clock against the database's (measured by `startup`, read by `/readyz`).
    pub fn clock_skew(&self) -> &Arc<ClockSkew> {
        &self.skew
    }

    /// The database's time as this instance estimates it: when to ask it whether a challenge is
    /// due. The asking (a conditional UPDATE) is decided by the database itself.
    fn database_now(&self) -> OffsetDateTime {
        self.skew.database_now(self.clock.now())
    }

    /// Notified whenever a challenge queues pushes, so the worker sends them at once.
    pub fn push_wakeup(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.push_wakeup)
    }

    pub fn settings(&self) -> &ChallengeSettings {
        &self.settings
    }

    /// `POST /v1/challenges`.
    pub async fn create(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        context: ChallengeContext,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedChallenge, ChallengeError> {
        let options =
            PromptOptions { idempotency_key: idempotency_key.map(str::to_owned), ..Default::default() };
        self.create_with(app, username, context, options).await
    }

    /// A challenge as `create` makes it, with the requester's number and deadline (CIBA, the
    /// Keycloak channel: the consumption device already shows the number).
    pub async fn create_with(
        &self,
        app: &AuthenticatedApp,
        username: &str,
        context: ChallengeContext,
        options: PromptOptions,
    ) -> Result<CreatedChallenge, ChallengeError> {
        let idempotency_key = options.idempotency_key.as_deref();
        if let Some(number) = &options.number {
            let digits = usize::from(self.settings.number_digits);
            if number.len() != digits || !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ChallengeError::InvalidInput(format!("the number must be {digits} digits")));
            }
        }
        let context = clean_context(context, &app.name)?;
        let normalized = crate::users::model::normalize_username(username).ok();
        let request_hash = request_hash(normalized.as_deref().unwrap_or(username), &context);
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ChallengeError::InvalidInput(
                    "Idempotency-Key must be 1-128 visible ASCII characters".into(),
                ));
            }
            if let Some(existing) = self.store.challenge_by_idempotency_key(app.id, key).await? {
                return self.replay(existing, &request_hash);
            }
        }
        // Unknown and device-less users take the same path (one read) and answer the same way.
        let target = match &normalized {
            Some(name) => self.store.prompt_target(name, RECENT_NUMBERS).await?,
            None => None,
        };
        let Some(PromptTarget { user, devices, recent_tags: recent }) =
            target.filter(|t| t.devices.iter().any(DeviceRecord::is_active))
        else {
            return Err(ChallengeError::NoDevice);
        };
        let now = self.clock.now();
        if crate::users::model::passkey_required(&user) {
            // Before any budget or ladder: the policy, not an attack, refuses this prompt.
            let event = AuditEvent::new(now, app.actor(), Action::PromptRefused, Subject::User(user.id))
                .with_details(
                    json!({ "username": user.username, "ip": context.ip, "reason": "passkey_required" }),
                );
            self.store.record_audit(event).await?;
            metrics::counter!("countersign_prompts_refused_total", "reason" => "passkey_required")
                .increment(1);
            return Err(ChallengeError::PasskeyRequired);
        }
        let devices: Vec<DeviceRecord> = devices.into_iter().filter(DeviceRecord::is_active).collect();
        let rng = model::rng();
        let is_recent =
            |candidate: &str| recent.iter().any(|tag| self.tagger.matches(&user.id.0, candidate, tag));
        let number = match options.number {
            // A number the user saw lately is refused, so a requester cannot pin one number
            // and train the user to type it without looking.
            Some(chosen) if is_recent(&chosen) => return Err(ChallengeError::NumberRecentlyUsed),
            Some(chosen) => chosen,
            None => model::draw_number(self.settings.number_digits, &rng, is_recent)
                .map_err(|e| InternalError::caused_by("drawing the number", e))?,
        };
        let expires_at =
            options.expires_at.map_or(now + self.settings.ttl, |at| at.min(now + self.settings.ttl));
        if expires_at <= now {
            return Err(ChallengeError::InvalidInput("the request has expired already".into()));
        }
        let mut nonce = [0u8; 32];
        rng.fill(&mut nonce).map_err(|_| InternalError::new("the system random number generator failed"))?;
        let id = ChallengeId::random();
        let context_ip = context.ip.clone();
        let record = ChallengeRecord {
            id,
            app_id: app.id,
            user_id: user.id,
            state: ChallengeState::Pending,
            number_tag: self.tagger.tag(&user.id.0, &number),
            number_sealed: self
                .master
                .encrypt(&sealing_context(id), number.as_bytes())
                .map_err(|e| InternalError::caused_by("sealing the number", e))?,
            number_digits: i16::from(self.settings.number_digits),
            server_nonce: nonce.to_vec(),
            app_name: context.app_name,
            ip: context.ip,
            user_agent: context.user_agent,
            location: context.location,
            created_at: now,
            expires_at,
            decided_at: None,
            decided_by_device: None,
            redeemed_at: None,
            idempotency_key: idempotency_key.map(str::to_owned),
            request_hash: Some(request_hash.to_vec()),
            is_silent: false,
            source_prefix: match options.source {
                Some(source) if context_ip.is_empty() => Some(source),
                _ => crate::fatigue::model::source_prefix(&context_ip),
            },
        };
        let push_devices: Vec<DeviceId> =
            devices.iter().filter(|d| d.push.provider != "none").map(|d| d.id).collect();
        let event = AuditEvent::new(
            now,
            app.actor(),
            Action::Challenge(ChallengeState::Pending),
            Subject::User(user.id),
        )
        .with_details(json!({
            "challenge_id": id,
            "username": user.username,
            "ip": record.ip,
            "user_agent": record.user_agent,
            "app_name": record.app_name,
            "location": record.location,
            "push_devices": push_devices.len(),
        }));
        let superseded_ids = Mutex::new(Vec::new());
        let superseded = |old: &ChallengeRecord| {
            superseded_ids.lock().unwrap_or_else(|p| p.into_inner()).push(old.id);
            AuditEvent::new(
                now,
                Actor::System,
                Action::Challenge(ChallengeState::Cancelled),
                Subject::User(old.user_id),
            )
            .with_details(json!({ "challenge_id": old.id, "reason": "superseded", "superseded_by": id }))
        };
        let created = match self
            .store
            .create_challenge(record, &push_devices, event, &superseded, &self.policy.current())
            .await
        {
            Ok(created) => created,
            Err(StoreError::Refused(refusal)) => {
                return Err(self.refused(app, &user, &context_ip, refusal, now).await?);
            }
            Err(StoreError::Conflict(Conflict::IdempotencyKey)) => {
                // A concurrent retry with the same key won the insert.
                let key = idempotency_key.unwrap_or_default();
                let existing = self
                    .store
                    .challenge_by_idempotency_key(app.id, key)
                    .await?
                    .ok_or(ChallengeError::NotFound)?;
                return self.replay(existing, &request_hash);
            }
            Err(other) => return Err(other.into()),
        };
        for old in superseded_ids.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.waiters.notify(old);
        }
        if !push_devices.is_empty() {
            self.push_wakeup.notify_one();
        }
        metrics::counter!("countersign_challenges_created_total").increment(1);
        Ok(CreatedChallenge { record: created, number })
    }

    /// Records a refused prompt (the bombing attempt itself is evidence) and says why.
    async fn refused(
        &self,
        app: &AuthenticatedApp,
        user: &crate::store::UserRecord,
        ip: &str,
        refusal: crate::store::Refusal,
        now: OffsetDateTime,
    ) -> Result<ChallengeError, ChallengeError> {
        use crate::fatigue::model::Availability;
        let (error, kind) = match refusal {
            crate::store::Refusal::BudgetExhausted { retry_at } => (
                ChallengeError::PushRateLimited {
                    retry_after_secs: (retry_at - now).whole_seconds().max(1) as u64,
                },
                "budget_exhausted",
            ),
            crate::store::Refusal::PushUnavailable(Availability::HardLocked) => {
                (ChallengeError::PushLocked, "hard_locked")
            }
            crate::store::Refusal::PushUnavailable(Availability::Frozen { until, reason }) => {
                (ChallengeError::PushFrozen { until, reason }, "frozen")
            }
            crate::store::Refusal::SourceThrottled { network, users } => {
                (ChallengeError::SourceRateLimited { network, users }, "source_throttled")
            }
            crate::store::Refusal::PushUnavailable(Availability::Available) => {
                return Err(InternalError::new("a prompt was refused while push was available").into());
            }
        };
        metrics::counter!("countersign_prompts_refused_total", "reason" => kind).increment(1);
        if let ChallengeError::SourceRateLimited { network, users } = &error {
            let details = json!({ "network": network, "users_prompted": users, "app": app.name });
            self.store
                .raise_alert(
                    AlertKind::PushSpray,
                    &Subject::Network(network.clone()),
                    &details.to_string(),
                    now,
                )
                .await?;
        }
        let event = AuditEvent::new(now, app.actor(), Action::PromptRefused, Subject::User(user.id))
            .with_details(
                json!({ "username": user.username, "ip": ip, "reason": kind, "detail": error.to_string() }),
            );
        match error {
            // Someone is prompting this user faster than any real sign-in does: an attack
            // incident on the user's standing (listed, prompts silent, one alert per incident).
            ChallengeError::PushRateLimited { .. } | ChallengeError::SourceRateLimited { .. } => {
                self.store.record_refused_prompt(user.id, kind, now, event, &self.policy.current()).await?;
            }
            _ => self.store.record_audit(event).await?,
        }
        Ok(error)
    }

    /// Answers an idempotent retry exactly as the first request was answered.
    fn replay(
        &self,
        existing: ChallengeRecord,
        request_hash: &[u8; 32],
    ) -> Result<CreatedChallenge, ChallengeError> {
        if existing.request_hash.as_deref() != Some(request_hash.as_slice()) {
            return Err(ChallengeError::IdempotencyKeyReused);
        }
        let number = self
            .master
            .decrypt(&sealing_context(existing.id), &existing.number_sealed)
            .map_err(|e| InternalError::caused_by("opening the sealed number", e))?;
        let number = String::from_utf8(number)
            .map_err(|e| InternalError::caused_by("reading the sealed number", e))?;
        Ok(CreatedChallenge { record: existing, number })
    }

    /// The app's own challenge, expired on read if its time is up.
    async fn load_for_app(
        &self,
        app: &AuthenticatedApp,
        id: ChallengeId,
    ) -> Result<ChallengeRecord, ChallengeError> {
        let challenge = self
            .store
            .challenge_by_id(id)
            .await?
            .filter(|c| c.app_id == app.id)
            .ok_or(ChallengeError::NotFound)?;
        self.expire_if_due(challenge).await
    }

    async fn expire_if_due(&self, challenge: ChallengeRecord) -> Result<ChallengeRecord, ChallengeError> {
        if challenge.state != ChallengeState::Pending || challenge.expires_at > self.database_now() {
            return Ok(challenge);
        }
        self.expire(challenge).await
    }

    /// Asks the store to expire a pending challenge; the store's clock decides whether it is due
    /// (if not, the challenge comes back as it is).
    async fn expire(&self, challenge: ChallengeRecord) -> Result<ChallengeRecord, ChallengeError> {
        let now = self.clock.now();
        let event = expired_event(&challenge, now);
        match self
            .store
            .transition_challenge(
                challenge.id,
                ChallengeTransition::Expire,
                now,
                event,
                &self.policy.current(),
            )
            .await
        {
            Ok(expired) => {
                self.waiters.decided(&expired);
                Ok(expired)
            }
            // Someone else moved it first: read what they wrote.
            Err(StoreError::NotFound) => {
                self.store.challenge_by_id(challenge.id).await?.ok_or(ChallengeError::NotFound)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// `GET /v1/challenges/{id}?wait=N`: returns once the challenge leaves `pending` or after
    /// `wait` seconds.
    pub async fn status(
        &self,
        app: &AuthenticatedApp,
        id: ChallengeId,
        wait: u64,
    ) -> Result<ChallengeRecord, ChallengeError> {
        if wait > self.settings.max_wait.as_secs() {
            return Err(ChallengeError::InvalidWait(self.settings.max_wait.as_secs()));
        }
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(wait);
        let waiter = self.waiters.register(id);
        loop {
            // Arm the wake-up before reading, so a decision between read and wait is not missed.
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A decision committed by this instance arrives with its record: no read-back.
            let challenge = match waiter.decided() {
                Some(decided) if decided.app_id == app.id => decided,
                _ => self.load_for_app(app, id).await?,
            };
            let now = tokio::time::Instant::now();
            if challenge.state != ChallengeState::Pending || now >= deadline {
                return Ok(challenge);
            }
            let until_expiry = (challenge.expires_at - self.database_now()).unsigned_abs();
            let nap = RECHECK.min(deadline - now).min(until_expiry + StdDuration::from_millis(5));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    /// `POST /v1/challenges/{id}/redeem`: consumes an approval exactly once.
    pub async fn redeem(
        &self,
        app: &AuthenticatedApp,
        id: ChallengeId,
    ) -> Result<ChallengeRecord, ChallengeError> {
        let now = self.clock.now();
        let transition = ChallengeTransition::Redeem { app_id: app.id, window: self.settings.redeem_window };
        let event = AuditEvent::new(
            now,
            app.actor(),
            Action::Challenge(ChallengeState::Redeemed),
            Subject::Challenge(id),
        )
        .with_details(json!({ "challenge_id": id }));
        match self.store.transition_challenge(id, transition, now, event, &self.policy.current()).await {
            Ok(redeemed) => Ok(redeemed),
            Err(StoreError::NotFound) => {
                let challenge = self.load_for_app(app, id).await?;
                let refusal = match challenge.state {
                    ChallengeState::Redeemed => ChallengeError::AlreadyRedeemed,
                    ChallengeState::Approved => ChallengeError::ApprovalStale,
                    other => ChallengeError::NotApproved(other),
                };
                // A second redeem is what a replayed session looks like: record it.
                let event = AuditEvent::new(now, app.actor(), Action::ChallengeRedeemRefused, Subject::User(challenge.user_id))
                    .with_details(json!({ "challenge_id": id, "state": challenge.state.as_str(), "reason": refusal.to_string() }));
                self.store.record_audit(event).await?;
                Err(refusal)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// `POST /v1/challenges/{id}/cancel`.
    pub async fn cancel(
        &self,
        app: &AuthenticatedApp,
        id: ChallengeId,
    ) -> Result<ChallengeRecord, ChallengeError> {
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            app.actor(),
            Action::Challenge(ChallengeState::Cancelled),
            Subject::Challenge(id),
        )
        .with_details(json!({ "challenge_id": id, "reason": "cancelled_by_app" }));
        match self
            .store
            .transition_challenge(
                id,
                ChallengeTransition::Cancel { app_id: app.id },
                now,
                event,
                &self.policy.current(),
            )
            .await
        {
            Ok(cancelled) => {
                self.waiters.decided(&cancelled);
                Ok(cancelled)
            }
            Err(StoreError::NotFound) => {
                Err(ChallengeError::NotPending(self.load_for_app(app, id).await?.state))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Details signed for one device; never the number.
    fn signed_details(
        &self,
        challenge: &ChallengeRecord,
        device: &DeviceRecord,
    ) -> Result<SignedChallengeDetails, ChallengeError> {
        let details = ChallengeDetails {
            challenge_id: countersign_mobile_protocol::ChallengeId::new(challenge.id.to_string())?,
            server_nonce: Nonce::from_bytes(&challenge.server_nonce)?,
            app_name: challenge.app_name.clone(),
            ip: challenge.ip.clone(),
            user_agent: challenge.user_agent.clone(),
            location: challenge.location.clone(),
            created_at: unix_seconds(challenge.created_at),
            expires_at: unix_seconds(challenge.expires_at),
        };
        let device_id = countersign_mobile_protocol::DeviceId::new(device.id.to_string())?;
        let key = self.devices.server_key();
        Ok(details.sign(
            &self.devices.server_id().map_err(|e| InternalError::caused_by("naming the server", e))?,
            &device_id,
            key.key_pair(),
            key.rng(),
        )?)
    }

    /// `GET /device/v1/challenges`: the pull path that works with no push provider at all.
    pub async fn pending_for_device(
        &self,
        device: &DeviceRecord,
    ) -> Result<PendingChallenges, ChallengeError> {
        let pending = self.store.pending_challenges(device.user_id, self.clock.now()).await?;
        // Passkey sign-ins are answered in the browser, never on a phone.
        let challenges = pending
            .iter()
            .filter(|c| c.is_push())
            .map(|c| self.signed_details(c, device))
            .collect::<Result<_, _>>()?;
        Ok(PendingChallenges { challenges })
    }

    /// `GET /device/v1/challenges/{id}`.
    pub async fn details_for_device(
        &self,
        device: &DeviceRecord,
        id: ChallengeId,
    ) -> Result<SignedChallengeDetails, ChallengeError> {
        let challenge = self
            .store
            .challenge_by_id(id)
            .await?
            .filter(|c| c.user_id == device.user_id && c.is_push())
            .ok_or(ChallengeError::ChallengeNotFound)?;
        let challenge = self.expire_if_due(challenge).await?;
        match challenge.state {
            ChallengeState::Pending => self.signed_details(&challenge, device),
            ChallengeState::Expired => Err(ChallengeError::ChallengeExpired),
            _ => Err(ChallengeError::ChallengeNotPending),
        }
    }

    /// `POST /device/v1/challenges/{id}/response`: verify everything, then one compare-and-set.
    /// `peer` is the TCP peer's address: refusals are limited per source network and device id.
    pub async fn respond(
        &self,
        id: ChallengeId,
        response: ChallengeResponse,
        peer: Option<IpAddr>,
    ) -> Result<ChallengeOutcome, ChallengeError> {
        let network = source_network(peer);
        self.devices.refusals().check_network(&network).map_err(ChallengeError::from)?;
        // Nothing about the device or the challenge is told before the signature verifies: an
        // unknown device id is checked against the unknown-device key (same work, same answer),
        // and an unknown or another user's challenge is only reported to a verified device.
        let (device, challenge) = match uuid::Uuid::parse_str(response.answer.device_id.as_str()) {
            Ok(device_id) => self.store.device_and_challenge(DeviceId(device_id), id).await?,
            Err(_) => (None, None),
        };
        let key = self
            .devices
            .verification_key(device.as_ref())
            .map_err(|e| InternalError::caused_by("loading the device key", e))?;
        let refuse = |device: Option<&DeviceRecord>, reason, error| {
            let claimed_id = Some(response.answer.device_id.as_str());
            let refusal = Refusal { network: &network, claimed_id, device, reason };
            self.devices.refusals().refused(refusal).map_or(error, ChallengeError::from)
        };
        match response.verify_signature(&key) {
            Err(error) if error.error_code() == ErrorCode::SignatureInvalid => {
                return Err(refuse(
                    device.as_ref(),
                    bad_signature(device.as_ref()),
                    ChallengeError::SignatureInvalid,
                ));
            }
            Err(other) => return Err(ChallengeError::Protocol(other)),
            Ok(_) => {}
        }
        // Verified under the unknown-device key, which nobody can sign for: still unknown.
        let Some(device) = device else {
            return Err(refuse(None, RefusalReason::UnknownDevice, ChallengeError::SignatureInvalid));
        };
        // Another user's challenge looks like no challenge at all.
        // A passkey sign-in is not a phone's to answer: it looks like no challenge at all.
        let challenge = challenge
            .filter(|c| c.user_id == device.user_id && c.is_push())
            .ok_or(ChallengeError::ChallengeNotFound)?;
        let path_id = countersign_mobile_protocol::ChallengeId::new(id.to_string())?;
        let nonce = Nonce::from_bytes(&challenge.server_nonce)?;
        let answer = response.check_binding(&path_id, &nonce)?;
        if !device.is_active() {
            return Err(refuse(Some(&device), RefusalReason::Revoked, ChallengeError::DeviceRevoked));
        }
        let is_number_correct = match answer.decision {
            Decision::Approve => {
                let digits = usize::try_from(challenge.number_digits).unwrap_or(0);
                if answer.number.len() != digits || !answer.number.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ChallengeError::Protocol(ProtocolError::InvalidField {
                        field: "number",
                        reason: "must have exactly the digits shown on the login screen",
                    }));
                }
                self.tagger.matches(&challenge.user_id.0, &answer.number, &challenge.number_tag)
            }
            Decision::Deny | Decision::Report => false,
        };
        let to = model::outcome(answer.decision, is_number_correct);
        let counter = i64::try_from(answer.counter).map_err(|_| ChallengeError::CounterNotIncreasing)?;
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            Actor::Device { id: device.id },
            Action::Challenge(to),
            Subject::User(challenge.user_id),
        )
        .with_details(json!({
            "challenge_id": id,
            "device_id": device.id,
            "counter": counter,
            "seconds_to_decide": (now - challenge.created_at).as_seconds_f64(),
            "ip": challenge.ip,
            "user_agent": challenge.user_agent,
            "app_name": challenge.app_name,
        }));
        match self
            .store
            .decide_challenge(
                DeviceDecision { challenge: id, user: challenge.user_id, device: device.id, counter, to },
                now,
                event,
                &self.policy.current(),
            )
            .await
        {
            Ok(decided) => {
                self.waiters.decided(&decided);
                metrics::counter!("countersign_challenge_decisions_total", "outcome" => to.as_str())
                    .increment(1);
                Ok(match to {
                    ChallengeState::Approved => ChallengeOutcome::Approved,
                    ChallengeState::DeniedWrongNumber => ChallengeOutcome::DeniedWrongNumber,
                    ChallengeState::Reported => ChallengeOutcome::Reported,
                    _ => ChallengeOutcome::Denied,
                })
            }
            Err(StoreError::PreconditionFailed(Precondition::CounterNotIncreasing)) => {
                Err(self.counter_refused(&device, &challenge, counter, now).await?)
            }
            Err(StoreError::PreconditionFailed(Precondition::DeviceInactive)) => {
                Err(ChallengeError::DeviceRevoked)
            }
            Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending)) => {
                let current =
                    self.store.challenge_by_id(id).await?.ok_or(ChallengeError::ChallengeNotFound)?;
                // Still pending, yet refused: the database's clock says it is over.
                let current = match current.state {
                    ChallengeState::Pending => self.expire(current).await?,
                    _ => current,
                };
                Err(if current.state == ChallengeState::Expired {
                    ChallengeError::ChallengeExpired
                } else {
                    ChallengeError::ChallengeNotPending
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A correctly signed answer whose counter is not above the device's last accepted one. A
    /// phone re-sending the answer that decided this very challenge (a network retry) is told
    /// it is over; anything else means a second holder of the device key (a cloned or restored
    /// key): audited and alerted as `possible_clone`, and refused all the same.
    async fn counter_refused(
        &self,
        device: &DeviceRecord,
        challenge: &ChallengeRecord,
        counter: i64,
        now: OffsetDateTime,
    ) -> Result<ChallengeError, ChallengeError> {
        let current =
            self.store.challenge_by_id(challenge.id).await?.ok_or(ChallengeError::ChallengeNotFound)?;
        if current.state != ChallengeState::Pending && current.decided_by_device == Some(device.id) {
            return Ok(ChallengeError::ChallengeNotPending);
        }
        let last = self.store.device_by_id(device.id).await?.map_or(device.last_counter, |d| d.last_counter);
        let details = json!({
            "device_id": device.id,
            "challenge_id": challenge.id,
            "counter": counter,
            "last_accepted_counter": last,
        });
        let event = AuditEvent::new(
            now,
            Actor::Device { id: device.id },
            Action::PossibleClone,
            Subject::User(device.user_id),
        )
        .with_details(details.clone());
        let subject = Subject::User(device.user_id);
        self.store
            .record_signal(event, (AlertKind::PossibleClone, &subject, &details.to_string()), now)
            .await?;
        metrics::counter!("countersign_possible_clones_total").increment(1);
        Ok(ChallengeError::CounterNotIncreasing)
    }

    /// Expires overdue challenges (run periodically by the worker); returns how many.
    pub async fn expire_due(&self, limit: u32) -> Result<usize, ChallengeError> {
        let now = self.clock.now();
        let event = |c: &ChallengeRecord| expired_event(c, now);
        let expired = self.store.expire_due_challenges(now, limit, &event, &self.policy.current()).await?;
        for challenge in &expired {
            self.waiters.decided(challenge);
        }
        Ok(expired.len())
    }
}

fn expired_event(challenge: &ChallengeRecord, now: OffsetDateTime) -> AuditEvent {
    AuditEvent::new(
        now,
        Actor::System,
        Action::Challenge(ChallengeState::Expired),
        Subject::User(challenge.user_id),
    )
    .with_details(json!({ "challenge_id": challenge.id }))
}

/// Validated, display-safe context (the phone shows it; it is signed as display text).
pub(crate) struct CleanContext {
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    pub(crate) app_name: String,
    pub(crate) location: Option<String>,
}

pub(crate) fn clean_context(
    context: ChallengeContext,
    app_name: &str,
) -> Result<CleanContext, ChallengeError> {
    let ip = match context.ip {
        Some(ip) => ip
            .parse::<std::net::IpAddr>()
            .map_err(|_| {
                ChallengeError::InvalidInput(format!("context.ip `{}` is not an IP address", truncate(&ip)))
            })?
            .to_string(),
        None => String::new(),
    };
    let app_name =
        sanitize_display_text(context.app_name.as_deref().unwrap_or(app_name), limits::MAX_APP_NAME_LEN);
    if app_name.is_empty() {
        return Err(ChallengeError::InvalidInput("context.app_name must not be empty".into()));
    }
    let user_agent =
        sanitize_display_text(context.user_agent.as_deref().unwrap_or(""), limits::MAX_USER_AGENT_LEN);
    let location = context
        .location
        .map(|l| sanitize_display_text(&l, limits::MAX_LOCATION_LEN))
        .filter(|l| !l.is_empty());
    Ok(CleanContext { ip, user_agent, app_name, location })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// What identifies "the same request" for idempotency: the user and the cleaned context.
fn request_hash(username: &str, context: &CleanContext) -> [u8; 32] {
    let canonical =
        json!([username, context.ip, context.user_agent, context.app_name, context.location]).to_string();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
    out
}
