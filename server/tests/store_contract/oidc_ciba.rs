//! CIBA backchannel requests: made in one change with their sign-in, their ping and their audit
//! event (or not at all); polled; redeemed once, only by their client, only before they expire,
//! only when someone was prompted, finishing the sign-in with its code and token in the same
//! change. The builders here also seed the callback suite (a ping is enqueued with its request).

use countersign::audit::{Action, Actor, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::ids::{AuthorizationId, ChallengeId};
use countersign::oidc::client_admin::{self, NewClient};
use countersign::oidc::clients::{AuthMethod, CibaDelivery, ClientId, ClientKeys, IdTokenAlg};
use countersign::store::{
    AccessTokenRecord, AppRecord, AuthorizationRecord, CallbackJob, CallbackKind, ChallengeRecord,
    CibaRequestRecord, CodeRecord, Store, StoreError, UserRecord,
};
use countersign_e2e::{Engine, break_audit_writes_sql, exec_sql};
use time::{Duration, OffsetDateTime};

use super::support::{Fixture, fixture, no_push};

pub const RACERS: usize = 8;
const INTERVAL_SECS: i32 = 5;
const CODE_TTL: Duration = Duration::seconds(60);
const TOKEN_TTL: Duration = Duration::hours(1);
const NOTIFICATION_ENDPOINT: &str = "https://keycloak.example.com/ciba/ping";

/// A fixture with a ping client, a poll client, and the app their prompts come from.
pub struct Ciba {
    pub f: Fixture,
    pub client: ClientId,
    pub other: ClientId,
    pub app: AppRecord,
}

/// What one backchannel request stores, and the challenge its user is prompted with (if any).
#[derive(Debug, Clone)]
pub struct Request {
    pub record: CibaRequestRecord,
    pub sign_in: Option<AuthorizationRecord>,
    pub ping: Option<CallbackJob>,
    pub challenge: Option<ChallengeRecord>,
    pub user: Option<UserRecord>,
}

pub async fn ciba(engine: Engine) -> Ciba {
    let f = fixture(engine).await;
    let ping = CibaDelivery::Ping { notification_endpoint: NOTIFICATION_ENDPOINT.into() };
    let client = register(&f, "Keycloak", ping).await;
    let other = register(&f, "Grafana", CibaDelivery::Poll).await;
    let app = f.app("ciba").await;
    Ciba { f, client, other, app }
}

async fn register(f: &Fixture, name: &str, ciba: CibaDelivery) -> ClientId {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![format!("https://{}.example.com/callback", name.to_lowercase())],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: Some(ciba),
    };
    client_admin::create_client(f.store.as_ref(), &f.clock, Actor::Cli, new).await.unwrap().client.client_id
}

/// 32 random bytes: a request hash, a code hash.
fn random_hash() -> Vec<u8> {
    [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat()
}

impl Ciba {
    pub fn store(&self) -> &dyn Store {
        self.f.store.as_ref()
    }

    /// A ping reporting on `challenge` (none: due at once), sent until `expires_at` (not stored).
    pub fn ping_record(&self, challenge: Option<ChallengeId>, expires_at: OffsetDateTime) -> CallbackJob {
        CallbackJob {
            id: uuid::Uuid::new_v4(),
            kind: CallbackKind::CibaPing,
            challenge_id: challenge,
            url: NOTIFICATION_ENDPOINT.into(),
            sealed: random_hash(),
            created_at: self.f.now(),
            not_before: self.f.now(),
            expires_at,
        }
    }

    /// A request of `client` for a new user `name`, who is prompted (a pending challenge,
    /// stored) by a sign-in, with a ping for when they answer (request and ping not stored).
    pub async fn prompted_for(&self, client: &ClientId, name: &str) -> Request {
        let user = self.f.user(name).await;
        let challenge = self.f.challenge(&self.app, &user).await;
        let now = self.f.now();
        let sign_in = AuthorizationRecord {
            id: AuthorizationId::random(),
            client_id: client.clone(),
            user_id: user.id,
            request: format!(r#"{{"username":"{name}","scope":["openid"]}}"#),
            challenge_id: challenge.id,
            page_secret_sealed: random_hash(),
            browser_hash: random_hash(),
            created_at: now,
            expires_at: challenge.expires_at,
            finished_at: None,
        };
        let record = CibaRequestRecord {
            request_hash: random_hash(),
            client_id: client.clone(),
            authorization_id: Some(sign_in.id),
            refusal: None,
            interval_secs: INTERVAL_SECS,
            next_poll_at: now,
            created_at: now,
            expires_at: challenge.expires_at,
            redeemed_at: None,
        };
        let ping = self.ping_record(Some(challenge.id), challenge.expires_at);
        Request {
            record,
            sign_in: Some(sign_in),
            ping: Some(ping),
            challenge: Some(challenge),
            user: Some(user),
        }
    }

    pub async fn prompted(&self, name: &str) -> Request {
        self.prompted_for(&self.client, name).await
    }

    /// A request nobody could be prompted for, with the ping telling the client at once.
    pub fn refused(&self) -> Request {
        let now = self.f.now();
        let expires_at = now + Duration::minutes(2);
        let record = CibaRequestRecord {
            request_hash: random_hash(),
            client_id: self.client.clone(),
            authorization_id: None,
            refusal: Some("no_device".into()),
            interval_secs: INTERVAL_SECS,
            next_poll_at: now,
            created_at: now,
            expires_at,
            redeemed_at: None,
        };
        let ping = self.ping_record(None, expires_at);
        Request { record, sign_in: None, ping: Some(ping), challenge: None, user: None }
    }

    pub async fn create(&self, r: &Request) -> Result<(), StoreError> {
        let event = self.f.event(Action::OidcCibaRequested, Subject::OidcClient(r.record.client_id.clone()));
        self.store().create_ciba_request(&r.record, r.sign_in.as_ref(), r.ping.as_ref(), event).await
    }

    /// A request for a new user `name`, stored with its sign-in and ping.
    pub async fn stored(&self, name: &str) -> Request {
        let r = self.prompted(name).await;
        self.create(&r).await.unwrap();
        r
    }

    /// A refused request, stored with its ping.
    pub async fn stored_refusal(&self) -> Request {
        let r = self.refused();
        self.create(&r).await.unwrap();
        r
    }

    /// `r`'s user answers its prompt on a new phone.
    pub async fn answer(&self, r: &Request, to: ChallengeState) {
        let (user, challenge) = (r.user.as_ref().unwrap(), r.challenge.as_ref().unwrap());
        let phone = self.f.device(user, no_push()).await;
        self.f.decide(challenge, &phone, to).await.unwrap();
    }

    /// The code a redemption of `r` stores (`r` has a sign-in; its client redeems).
    fn code_record(&self, r: &Request) -> CodeRecord {
        let sign_in = r.sign_in.as_ref().unwrap();
        CodeRecord {
            code_hash: random_hash(),
            authorization_id: sign_in.id,
            client_id: sign_in.client_id.clone(),
            user_id: sign_in.user_id,
            grant_details: r#"{"proof":"number_matched_push","amr":["mfa"]}"#.into(),
            created_at: self.f.now(),
            expires_at: self.f.now() + CODE_TTL,
            redeemed_at: None,
        }
    }

    fn token_record(&self, code: &CodeRecord, jti: &str) -> AccessTokenRecord {
        AccessTokenRecord {
            jti: jti.into(),
            code_hash: code.code_hash.clone(),
            client_id: code.client_id.clone(),
            user_id: code.user_id,
            expires_at: self.f.now() + TOKEN_TTL,
            revoked_at: None,
        }
    }

    /// A code and token for `r`, named `jti` (not stored).
    fn grant(&self, r: &Request, jti: &str) -> (CodeRecord, AccessTokenRecord) {
        let code = self.code_record(r);
        let token = self.token_record(&code, jti);
        (code, token)
    }

    async fn redeem_as(
        &self,
        r: &Request,
        client: &ClientId,
        at: OffsetDateTime,
        (code, token): &(CodeRecord, AccessTokenRecord),
    ) -> Result<(), StoreError> {
        let event = self.f.event(Action::OidcTokensIssued, Subject::User(code.user_id));
        self.store().redeem_ciba_request(&r.record.request_hash, client, at, code, token, event).await
    }

    async fn redeem(&self, r: &Request, grant: &(CodeRecord, AccessTokenRecord)) -> Result<(), StoreError> {
        self.redeem_as(r, &r.record.client_id, self.f.now(), grant).await
    }

    async fn request_now(&self, r: &Request) -> Option<CibaRequestRecord> {
        self.store().ciba_request(&r.record.request_hash).await.unwrap()
    }

    async fn sign_in_now(&self, r: &Request) -> Option<AuthorizationRecord> {
        self.store().authorization(r.sign_in.as_ref().unwrap().id).await.unwrap()
    }

    /// Whether the grant's code and token are stored.
    async fn granted(&self, (code, token): &(CodeRecord, AccessTokenRecord)) -> (bool, bool) {
        (
            self.store().oidc_code(&code.code_hash).await.unwrap().is_some(),
            self.store().access_token(&token.jti).await.unwrap().is_some(),
        )
    }

    /// `r` as stored before any redemption: unredeemed, its sign-in unfinished, no code, no token.
    async fn assert_unredeemed(&self, r: &Request, grant: &(CodeRecord, AccessTokenRecord)) {
        assert_eq!(self.request_now(r).await, Some(r.record.clone()), "the request unchanged");
        if r.sign_in.is_some() {
            assert_eq!(self.sign_in_now(r).await, r.sign_in, "the sign-in unfinished");
        }
        assert_eq!(self.granted(grant).await, (false, false), "no code, no token");
    }
}

/// A request reads back exactly as made, times to the microsecond, with its sign-in, its ping
/// (queued, never tried) and one audit event; an unknown hash finds nothing.
async fn a_ciba_request_is_stored_with_its_sign_in_and_ping(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.prompted("alice").await;
    let events = t.f.audit_len().await;
    t.create(&r).await.unwrap();
    assert_eq!(t.request_now(&r).await, Some(r.record.clone()));
    assert_eq!(t.sign_in_now(&r).await, r.sign_in);
    let jobs = t.store().callbacks_for_challenge(r.challenge.as_ref().unwrap().id).await.unwrap();
    let ping = r.ping.as_ref().unwrap();
    assert_eq!(
        jobs.iter().map(|j| (j.id, j.kind, j.state.as_str(), j.attempts)).collect::<Vec<_>>(),
        [(ping.id, CallbackKind::CibaPing, "queued", 0)]
    );
    let since = t.f.audit_since(events).await;
    assert_eq!(
        since.iter().map(|e| (e.0.as_str(), e.1.clone())).collect::<Vec<_>>(),
        [("oidc.ciba_requested", format!("oidc_client:{}", t.client))]
    );
    assert_eq!(t.store().ciba_request(&random_hash()).await.unwrap(), None);

    let refused = t.refused();
    t.create(&refused).await.unwrap();
    assert_eq!(t.request_now(&refused).await, Some(refused.record.clone()), "a refusal, without sign-in");
}

/// Attack: a token request replays an `auth_req_id`. The first redemption finishes the sign-in
/// with its code (stored already redeemed) and records the token, with one event; the second
/// is `NotFound` and stores no second code or token, and writes no event.
async fn a_ciba_request_is_redeemed_once(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored("alice").await;
    t.answer(&r, ChallengeState::Approved).await;
    t.f.advance(Duration::seconds(7)).await;
    let now = t.f.now();
    let events = t.f.audit_len().await;
    let grant = t.grant(&r, "jti-1");
    t.redeem(&r, &grant).await.unwrap();

    let redeemed = CibaRequestRecord { redeemed_at: Some(now), ..r.record.clone() };
    assert_eq!(t.request_now(&r).await, Some(redeemed.clone()));
    let finished = AuthorizationRecord { finished_at: Some(now), ..r.sign_in.clone().unwrap() };
    assert_eq!(t.sign_in_now(&r).await, Some(finished.clone()));
    let code = t.store().oidc_code(&grant.0.code_hash).await.unwrap();
    assert_eq!(code, Some(CodeRecord { redeemed_at: Some(now), ..grant.0.clone() }), "redeemed as made");
    assert_eq!(t.store().access_token("jti-1").await.unwrap(), Some(grant.1.clone()));
    assert_eq!(t.f.audit_len().await, events + 1);

    t.f.advance(Duration::seconds(1)).await;
    let again = t.grant(&r, "jti-2");
    let result = t.redeem(&r, &again).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(t.granted(&again).await, (false, false), "no second code or token");
    assert_eq!(t.request_now(&r).await, Some(redeemed), "redeemed when first");
    assert_eq!(t.sign_in_now(&r).await, Some(finished));
    assert_eq!(t.f.audit_len().await, events + 1, "no event for the refused redemption");
}

/// Attack: another client presents a stolen `auth_req_id`. Nothing is redeemed for it, and the
/// request stays redeemable by its own client.
async fn a_ciba_request_is_redeemed_only_by_its_client(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored("alice").await;
    let events = t.f.audit_len().await;
    let stolen = t.grant(&r, "jti-stolen");
    let result = t.redeem_as(&r, &t.other, t.f.now(), &stolen).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    t.assert_unredeemed(&r, &stolen).await;
    assert_eq!(t.f.audit_len().await, events, "no event");
    t.redeem(&r, &t.grant(&r, "jti-own")).await.unwrap();
}

/// A request expires at `expires_at`: one microsecond before, it can be redeemed; at it, not.
async fn an_expired_ciba_request_cannot_be_redeemed(engine: Engine) {
    let t = ciba(engine).await;
    let (early, late) = (t.stored("alice").await, t.stored("bob").await);
    let just_before = early.record.expires_at - Duration::microseconds(1);
    t.redeem_as(&early, &t.client, just_before, &t.grant(&early, "jti-early")).await.unwrap();
    let grant = t.grant(&late, "jti-late");
    let result = t.redeem_as(&late, &t.client, late.record.expires_at, &grant).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "expired at its expiry time: {result:?}");
    t.assert_unredeemed(&late, &grant).await;
}

/// A request nobody was prompted for (refused at once) has no sign-in to finish: redeeming it
/// is `NotFound`, like an unknown one, and marks it nothing.
async fn a_refused_ciba_request_cannot_be_redeemed(engine: Engine) {
    let t = ciba(engine).await;
    let refused = t.stored_refusal().await;
    // A code naming a real sign-in, as an attacker would need one; the refusal has none.
    let bystander = t.stored("alice").await;
    let grant = t.grant(&bystander, "jti-refused");
    let events = t.f.audit_len().await;
    let result = t.redeem(&refused, &grant).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    t.assert_unredeemed(&refused, &grant).await;
    t.assert_unredeemed(&bystander, &grant).await;
    let record = CibaRequestRecord { request_hash: random_hash(), ..refused.record.clone() };
    let unknown = Request { record, ..refused };
    assert!(matches!(t.redeem(&unknown, &grant).await, Err(StoreError::NotFound)), "an unknown request");
    assert_eq!(t.f.audit_len().await, events, "no event");
}

/// Token requests racing with one `auth_req_id`: one redemption wins, with its token; the rest
/// are `NotFound`.
async fn concurrent_redemptions_redeem_a_ciba_request_once(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored("alice").await;
    let grants: Vec<_> = (0..RACERS).map(|i| t.grant(&r, &format!("jti-{i}"))).collect();
    let events = t.f.audit_len().await;
    let (client, now, hash) = (t.client.clone(), t.f.now(), r.record.request_hash.clone());
    let results =
        t.f.race(RACERS, |i, store| {
            let ((code, token), client, hash) = (grants[i].clone(), client.clone(), hash.clone());
            let event = t.f.event(Action::OidcTokensIssued, Subject::User(code.user_id));
            async move { store.redeem_ciba_request(&hash, &client, now, &code, &token, event).await }
        })
        .await;
    let winners: Vec<usize> = (0..RACERS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(StoreError::NotFound))), "{results:?}");
    for (i, grant) in grants.iter().enumerate() {
        let stored = i == winners[0];
        assert_eq!(t.granted(grant).await, (stored, stored), "only the winner's code and token");
    }
    assert_eq!(t.request_now(&r).await.unwrap().redeemed_at, Some(now));
    assert_eq!(t.f.audit_len().await, events + 1, "one event");
}

/// The redemption, the sign-in's finish, its code and its token are one change: when the token
/// cannot be recorded (its `jti` is taken), or the sign-in was finished already, the request
/// stays unredeemed and nothing else is written.
async fn a_redemption_that_cannot_complete_changes_nothing(engine: Engine) {
    let t = ciba(engine).await;
    let first = t.stored("alice").await;
    t.redeem(&first, &t.grant(&first, "jti-taken")).await.unwrap();
    let r = t.stored("bob").await;
    let events = t.f.audit_len().await;
    let clash = t.grant(&r, "jti-taken");
    assert!(t.redeem(&r, &clash).await.is_err());
    assert_eq!(t.request_now(&r).await, Some(r.record.clone()), "not redeemed");
    assert_eq!(t.sign_in_now(&r).await, r.sign_in, "the sign-in unfinished");
    assert_eq!(t.store().oidc_code(&clash.0.code_hash).await.unwrap(), None, "no code");
    assert_eq!(t.f.audit_len().await, events, "no event");

    // The sign-in ended another way (say its page finished it): the request cannot use it.
    let sign_in = r.sign_in.as_ref().unwrap();
    let event = t.f.event(Action::OidcSignInFinished, Subject::User(sign_in.user_id));
    t.store().finish_authorization(sign_in.id, t.f.now(), None, event).await.unwrap();
    let events = t.f.audit_len().await;
    let grant = t.grant(&r, "jti-fresh");
    let result = t.redeem(&r, &grant).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(t.request_now(&r).await, Some(r.record.clone()), "still not redeemed");
    assert_eq!(t.granted(&grant).await, (false, false));
    assert_eq!(t.f.audit_len().await, events, "no event");
}

/// A redemption whose audit event cannot be written redeems nothing.
async fn a_redemption_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored("alice").await;
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let grant = t.grant(&r, "jti-unaudited");
    let result = t.redeem(&r, &grant).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    t.assert_unredeemed(&r, &grant).await;
}

/// A request and its sign-in, ping and audit event are one change: when any part cannot be
/// stored — a ping naming no challenge, a request hash already taken, the audit event — no
/// request row, no sign-in and no ping remain.
async fn a_ciba_request_is_made_whole_or_not_at_all(engine: Engine) {
    let t = ciba(engine).await;
    let mut dangling = t.prompted("alice").await;
    let expires_at = dangling.record.expires_at;
    dangling.ping = Some(t.ping_record(Some(ChallengeId::random()), expires_at));
    let events = t.f.audit_len().await;
    assert!(t.create(&dangling).await.is_err(), "the ping names no challenge");
    assert_eq!(t.request_now(&dangling).await, None, "no request row");
    assert_eq!(t.sign_in_now(&dangling).await, None, "no sign-in");
    assert_eq!(t.f.audit_len().await, events, "no event");

    let first = t.stored("bob").await;
    let mut twin = t.prompted("carol").await;
    twin.record.request_hash = first.record.request_hash.clone();
    let events = t.f.audit_len().await;
    assert!(t.create(&twin).await.is_err(), "the request hash is taken");
    assert_eq!(t.request_now(&first).await, Some(first.record.clone()), "the first request untouched");
    assert_eq!(t.sign_in_now(&twin).await, None, "no sign-in for the twin");
    let twin_challenge = twin.challenge.as_ref().unwrap().id;
    assert_eq!(t.store().callbacks_for_challenge(twin_challenge).await.unwrap(), [], "no ping for it");
    assert_eq!(t.f.audit_len().await, events, "no event");

    let unaudited = t.prompted("dave").await;
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result = t.create(&unaudited).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(t.request_now(&unaudited).await, None);
    assert_eq!(t.sign_in_now(&unaudited).await, None);
    let challenge = unaudited.challenge.as_ref().unwrap().id;
    assert_eq!(t.store().callbacks_for_challenge(challenge).await.unwrap(), [], "no ping");
}

/// A token request records when the next may come and the interval from then on; only that
/// request changes.
async fn ciba_polled_records_the_next_poll_and_interval(engine: Engine) {
    let t = ciba(engine).await;
    let (r, bystander) = (t.stored("alice").await, t.stored("bob").await);
    t.f.advance(Duration::seconds(3)).await;
    let next = t.f.now() + Duration::seconds(10);
    t.store().ciba_polled(&r.record.request_hash, next, 10).await.unwrap();
    let polled = CibaRequestRecord { next_poll_at: next, interval_secs: 10, ..r.record.clone() };
    assert_eq!(t.request_now(&r).await, Some(polled), "to the microsecond");
    assert_eq!(t.request_now(&bystander).await, Some(bystander.record.clone()), "another request unchanged");

    let later = next + Duration::microseconds(15_000_001);
    t.store().ciba_polled(&r.record.request_hash, later, 15).await.unwrap();
    let polled = t.request_now(&r).await.unwrap();
    assert_eq!((polled.next_poll_at, polled.interval_secs), (later, 15));
}

/// The flow's purge deletes requests that expired before the cutoff, before the sign-ins they
/// name (which they would otherwise hold by foreign key); a redeemed request's sign-in stays
/// while its code does. A live request stays.
async fn purge_deletes_expired_ciba_requests_before_their_sign_ins(engine: Engine) {
    let t = ciba(engine).await;
    let (unanswered, redeemed) = (t.stored("alice").await, t.stored("bob").await);
    let grant = t.grant(&redeemed, "jti-1");
    t.redeem(&redeemed, &grant).await.unwrap();
    let after = unanswered.record.expires_at + Duration::microseconds(1);
    t.f.advance(after - t.f.now()).await;
    let live = t.stored("carol").await;

    assert_eq!(t.store().purge_oidc_flow(unanswered.record.expires_at).await.unwrap(), 0, "at, not before");
    assert_eq!(t.store().purge_oidc_flow(after).await.unwrap(), 3, "two requests and the unanswered sign-in");
    assert_eq!((t.request_now(&unanswered).await, t.sign_in_now(&unanswered).await), (None, None));
    assert_eq!(t.request_now(&redeemed).await, None);
    assert!(t.sign_in_now(&redeemed).await.is_some(), "kept for its code");
    assert_eq!(t.granted(&grant).await, (true, true));
    assert_eq!(t.request_now(&live).await, Some(live.record.clone()));
    assert_eq!(t.sign_in_now(&live).await, live.sign_in);
}

on_both_engines!(
    a_ciba_request_is_stored_with_its_sign_in_and_ping,
    a_ciba_request_is_redeemed_once,
    a_ciba_request_is_redeemed_only_by_its_client,
    an_expired_ciba_request_cannot_be_redeemed,
    a_refused_ciba_request_cannot_be_redeemed,
    concurrent_redemptions_redeem_a_ciba_request_once,
    a_redemption_that_cannot_complete_changes_nothing,
    a_redemption_whose_audit_event_fails_changes_nothing,
    a_ciba_request_is_made_whole_or_not_at_all,
    ciba_polled_records_the_next_poll_and_interval,
    purge_deletes_expired_ciba_requests_before_their_sign_ins,
);
