//! The fixture the contract modules share: a fresh database on one engine, its store, a clock
//! the database's own (PostgreSQL) follows, and builders for the records most tests need.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use countersign::api_keys::service as api_keys;
use countersign::audit::chain::AuditSealer;
use countersign::audit::{self, Action, Actor, AuditEvent, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::clock::{Clock, ManualClock};
use countersign::fatigue::model::Policy;
use countersign::ids::{ChallengeId, DeviceId, EnrollmentId};
use countersign::store::{
    self, AppRecord, ApprovalProof, ChallengeRecord, ChallengeTransition, DeviceDecision, DeviceRecord,
    EnrollmentRecord, Store, StoreError, StoredPush, UserRecord,
};
use countersign::users::service::{self as users, NewUser};
use countersign_e2e::{Engine, TestDatabase};
use secrecy::SecretString;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Where every test's clock (and the PostgreSQL database's) starts; microseconds on purpose,
/// so timestamps must round-trip to the microsecond.
pub const START: OffsetDateTime = datetime!(2026-11-28 10:00:00.123456 UTC);

/// How long the challenges the builders create stay open.
pub const CHALLENGE_TTL: Duration = Duration::minutes(2);

/// How long an approval may be redeemed after it was given (as the services use it).
pub const REDEEM_WINDOW: Duration = Duration::minutes(5);

pub struct Fixture {
    pub db: TestDatabase,
    pub store: Arc<dyn Store>,
    pub sealer: AuditSealer,
    pub clock: ManualClock,
    /// Device counters only have to increase: one sequence serves every device.
    counter: AtomicI64,
}

pub async fn fixture(engine: Engine) -> Fixture {
    let db = TestDatabase::new(engine).await;
    // PostgreSQL decides what is due by its own clock: it starts where the test's does, set
    // before the store connects since sessions pick the test clock up when they open.
    db.set_clock(START).await;
    let sealer = AuditSealer::new(&[42u8; 32]);
    let store = connect(&db, &sealer).await;
    store.migrate().await.unwrap();
    Fixture { db, store, sealer, clock: ManualClock::new(START), counter: AtomicI64::new(0) }
}

async fn connect(db: &TestDatabase, sealer: &AuditSealer) -> Arc<dyn Store> {
    Arc::from(store::connect(&SecretString::from(db.url.clone()), 5, sealer.clone()).await.unwrap())
}

pub fn scopes(s: &str) -> countersign::api_keys::Scopes {
    s.parse().unwrap()
}

pub fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        display_name: Some("Test User".into()),
        is_privileged: false,
        passkey_required: false,
    }
}

/// A push registration as stored.
pub fn push(provider: &str, token: &str) -> StoredPush {
    StoredPush {
        provider: provider.into(),
        token: Some(token.into()),
        environment: Some("production".into()),
    }
}

pub fn no_push() -> StoredPush {
    StoredPush { provider: "none".into(), token: None, environment: None }
}

/// A fresh (random) uncompressed SEC1-shaped public key: the store treats it as opaque bytes.
pub fn public_key() -> Vec<u8> {
    let mut key = vec![4u8];
    for _ in 0..4 {
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key
}

impl Fixture {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Moves time on: the test's clock and the database's (PostgreSQL) together.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.db.set_clock(self.clock.now()).await;
    }

    /// Another instance on the same database.
    pub async fn another_instance(&self) -> Arc<dyn Store> {
        connect(&self.db, &self.sealer).await
    }

    /// Runs `count` tasks at once, alternately on this store and on another instance of it,
    /// and returns their results in order. `task` is given the task's number and its store.
    pub async fn race<T, F, Fut>(&self, count: usize, task: F) -> Vec<T>
    where
        F: Fn(usize, Arc<dyn Store>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let other = self.another_instance().await;
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let store = if i % 2 == 0 { Arc::clone(&self.store) } else { Arc::clone(&other) };
                tokio::spawn(task(i, store))
            })
            .collect();
        let mut results = Vec::with_capacity(count);
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    /// An audit event at the current time, with empty details (the store may add to them).
    pub fn event(&self, action: Action, subject: Subject) -> AuditEvent {
        AuditEvent::new(self.now(), Actor::System, action, subject).with_details(serde_json::json!({}))
    }

    /// How many audit events were recorded so far (chaining what is pending first).
    pub async fn audit_len(&self) -> i64 {
        audit::flush(self.store.as_ref()).await.unwrap();
        self.store.audit_head().await.unwrap().seq
    }

    /// The audit events after `after`, as (action, subject, details).
    pub async fn audit_since(&self, after: i64) -> Vec<(String, String, serde_json::Value)> {
        let head = self.audit_len().await;
        let events = self.store.audit_events(after, head, 10_000).await.unwrap();
        events.into_iter().map(|e| (e.action, e.subject, serde_json::from_str(&e.details).unwrap())).collect()
    }

    pub async fn user(&self, name: &str) -> UserRecord {
        users::create_user(self.store.as_ref(), &self.clock, Actor::System, new_user(name)).await.unwrap()
    }

    pub async fn app(&self, name: &str) -> AppRecord {
        let (app, _) = api_keys::create_app(
            self.store.as_ref(),
            &self.clock,
            Actor::Cli,
            name,
            scopes("challenges:write"),
        )
        .await
        .unwrap();
        app
    }

    pub fn next_counter(&self) -> i64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// An enrollment for `user`, valid ten minutes (not stored).
    pub fn enrollment_record(&self, user: &UserRecord, is_second_device: bool) -> EnrollmentRecord {
        let id = EnrollmentId::random();
        EnrollmentRecord {
            id,
            user_id: user.id,
            code_hash: countersign::devices::model::hash_activation_code(&id.to_string()).to_vec(),
            code_sealed: Some(vec![7u8; 40]),
            is_second_device,
            created_by: "cli".into(),
            created_at: self.now(),
            expires_at: self.now() + Duration::minutes(10),
            used_at: None,
            device_id: None,
        }
    }

    pub async fn enrollment(&self, user: &UserRecord, is_second_device: bool) -> EnrollmentRecord {
        let record = self.enrollment_record(user, is_second_device);
        let event = self.event(Action::EnrollmentCreated, Subject::User(user.id));
        self.store.create_enrollment(record, event).await.unwrap()
    }

    /// A device for `user`, created now (not stored).
    pub fn device_record(&self, user: &UserRecord, push: StoredPush) -> DeviceRecord {
        DeviceRecord {
            id: DeviceId::random(),
            user_id: user.id,
            public_key: public_key(),
            push,
            name: "Test phone".into(),
            platform: "ios".into(),
            created_at: self.now(),
            revoked_at: None,
            last_counter: 0,
        }
    }

    /// Uses `enrollment` for `device`, with the notice the device service writes.
    pub async fn enroll(
        &self,
        enrollment: &EnrollmentRecord,
        device: DeviceRecord,
    ) -> Result<DeviceRecord, StoreError> {
        let notice = serde_json::json!({ "device_id": device.id, "device_name": device.name }).to_string();
        let event = self.event(Action::DeviceEnrolled, Subject::User(device.user_id));
        self.store.enroll_device(enrollment, device, ("device_enrolled", notice), event).await
    }

    /// An enrolled device of `user` (through a second-device enrollment, so any number).
    pub async fn device(&self, user: &UserRecord, push: StoredPush) -> DeviceRecord {
        let enrollment = self.enrollment(user, true).await;
        self.enroll(&enrollment, self.device_record(user, push)).await.unwrap()
    }

    /// A pending challenge of `app` for `user`, created now and open for [`CHALLENGE_TTL`]
    /// (not stored).
    pub fn challenge_record(&self, app: &AppRecord, user: &UserRecord) -> ChallengeRecord {
        let now = self.now();
        ChallengeRecord {
            id: ChallengeId::random(),
            app_id: app.id,
            user_id: user.id,
            state: ChallengeState::Pending,
            number_tag: uuid::Uuid::new_v4().as_bytes().to_vec(),
            number_sealed: vec![1u8; 40],
            number_digits: 2,
            server_nonce: vec![2u8; 32],
            app_name: app.name.clone(),
            ip: "192.0.2.10".into(),
            user_agent: "contract-test".into(),
            location: Some("Testville".into()),
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            decided_at: None,
            decided_by_device: None,
            redeemed_at: None,
            idempotency_key: None,
            request_hash: Some(vec![3u8; 32]),
            is_silent: false,
            source_prefix: None,
        }
    }

    /// Stores `record` with push jobs for `push_devices`, as the challenge service does.
    pub async fn create_challenge(
        &self,
        record: ChallengeRecord,
        push_devices: &[DeviceId],
        policy: &Policy,
    ) -> Result<ChallengeRecord, StoreError> {
        let now = self.now();
        let event = self.event(Action::Challenge(ChallengeState::Pending), Subject::User(record.user_id));
        let superseded = move |old: &ChallengeRecord| {
            AuditEvent::new(
                now,
                Actor::System,
                Action::Challenge(ChallengeState::Cancelled),
                Subject::User(old.user_id),
            )
            .with_details(serde_json::json!({ "challenge_id": old.id, "reason": "superseded" }))
        };
        self.store.create_challenge(record, push_devices, event, &superseded, policy).await
    }

    /// A pending challenge of `app` for `user`, stored (no push, default policy).
    pub async fn challenge(&self, app: &AppRecord, user: &UserRecord) -> ChallengeRecord {
        self.create_challenge(self.challenge_record(app, user), &[], &Policy::default()).await.unwrap()
    }

    /// `device` answers `challenge` with a fresh counter: `pending → to`.
    pub async fn decide(
        &self,
        challenge: &ChallengeRecord,
        device: &DeviceRecord,
        to: ChallengeState,
    ) -> Result<ChallengeRecord, StoreError> {
        let counter = self.next_counter();
        self.decide_with(challenge, device, counter, to).await
    }

    pub async fn decide_with(
        &self,
        challenge: &ChallengeRecord,
        device: &DeviceRecord,
        counter: i64,
        to: ChallengeState,
    ) -> Result<ChallengeRecord, StoreError> {
        let decision = DeviceDecision {
            challenge: challenge.id,
            user: challenge.user_id,
            device: device.id,
            counter,
            to,
        };
        let event = self.event(Action::Challenge(to), Subject::Challenge(challenge.id));
        self.store.decide_challenge(decision, self.now(), event, &Policy::default()).await
    }

    /// An app or timer transition of `challenge`, audited as the state it leads to.
    pub async fn transition(
        &self,
        challenge: &ChallengeRecord,
        transition: ChallengeTransition,
    ) -> Result<ChallengeRecord, StoreError> {
        let to = match transition {
            ChallengeTransition::Redeem { .. } => ChallengeState::Redeemed,
            ChallengeTransition::Cancel { .. } => ChallengeState::Cancelled,
            ChallengeTransition::Expire => ChallengeState::Expired,
        };
        let event = self.event(Action::Challenge(to), Subject::Challenge(challenge.id));
        self.store.transition_challenge(challenge.id, transition, self.now(), event, &Policy::default()).await
    }

    /// Alice, her phone, and her pending challenge from `app`, with the proof naming it (good
    /// for [`REDEEM_WINDOW`] once the phone approves it).
    pub async fn approval_request(
        &self,
        app: &AppRecord,
    ) -> (UserRecord, DeviceRecord, ChallengeRecord, ApprovalProof) {
        let alice = self.user("alice").await;
        let phone = self.device(&alice, no_push()).await;
        let challenge = self.challenge(app, &alice).await;
        let proof =
            ApprovalProof { challenge: challenge.id, app_id: app.id, user: alice.id, window: REDEEM_WINDOW };
        (alice, phone, challenge, proof)
    }

    /// Alice's challenge from `app`, approved on her phone just now, as proof.
    pub async fn approval(&self, app: &AppRecord) -> (UserRecord, ApprovalProof) {
        let (alice, phone, challenge, proof) = self.approval_request(app).await;
        self.decide(&challenge, &phone, ChallengeState::Approved).await.unwrap();
        (alice, proof)
    }

    pub async fn challenge_now(&self, id: ChallengeId) -> ChallengeRecord {
        self.store.challenge_by_id(id).await.unwrap().unwrap()
    }

    pub async fn device_now(&self, id: DeviceId) -> DeviceRecord {
        self.store.device_by_id(id).await.unwrap().unwrap()
    }
}
