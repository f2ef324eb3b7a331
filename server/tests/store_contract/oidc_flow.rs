//! The OIDC authorization code flow: the app a client acts as (one per client, however many
//! instances race to make it), pushed requests, sign-ins, codes and access tokens. Every step is
//! used once, only by its client, only before it expires, with its audit event and the record
//! it yields in the same transaction; the purge deletes only what ended, children first, and
//! never what a replay must still find.

use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::{AppId, AuthorizationId, ChallengeId};
use countersign::oidc::client_admin::{self, NewClient};
use countersign::oidc::clients::{AuthMethod, ClientId, ClientKeys, IdTokenAlg};
use countersign::store::{
    AccessTokenRecord, AppRecord, AuthorizationRecord, AuthorizationSwitch, ChallengeRecord, CodeRecord,
    Conflict, PushedRequest, Store, StoreError, UserRecord,
};
use countersign_e2e::{Engine, break_audit_writes_sql, exec_sql};
use time::Duration;

use super::support::{Fixture, fixture};

const PUSHED_TTL: Duration = Duration::seconds(90);
const SIGN_IN_TTL: Duration = Duration::minutes(10);
const CODE_TTL: Duration = Duration::seconds(60);
const TOKEN_TTL: Duration = Duration::hours(1);
const RACERS: usize = 8;

/// A fixture with two registered clients and Alice, with a pending challenge her sign-ins use.
struct Flow {
    f: Fixture,
    client: ClientId,
    other: ClientId,
    alice: UserRecord,
    challenge: ChallengeRecord,
}

async fn flow(engine: Engine) -> Flow {
    let f = fixture(engine).await;
    let client = register(&f, "Keycloak").await;
    let other = register(&f, "Grafana").await;
    let app = f.app("web").await;
    let alice = f.user("alice").await;
    let challenge = f.challenge(&app, &alice).await;
    Flow { f, client, other, alice, challenge }
}

async fn register(f: &Fixture, name: &str) -> ClientId {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![format!("https://{}.example.com/callback", name.to_lowercase())],
        auth_method: AuthMethod::ClientSecretBasic,
        keys: ClientKeys::None,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    };
    client_admin::create_client(f.store.as_ref(), &f.clock, Actor::Cli, new).await.unwrap().client.client_id
}

/// A 32-byte hash, distinct per `tag`.
fn hash(tag: &str) -> Vec<u8> {
    let mut bytes = tag.as_bytes().to_vec();
    bytes.resize(32, 0xa5);
    bytes
}

impl Flow {
    fn store(&self) -> &dyn Store {
        self.f.store.as_ref()
    }

    fn event(&self, action: Action, subject: Subject) -> AuditEvent {
        self.f.event(action, subject)
    }

    /// A fresh app for `client`, named as the flow names it, with an id and key of its own.
    fn client_app_record(&self, client: &ClientId) -> AppRecord {
        AppRecord {
            id: AppId::random(),
            name: format!("oidc-client.{client}"),
            key_id: uuid::Uuid::new_v4().simple().to_string(),
            key_hash: uuid::Uuid::new_v4().as_bytes().repeat(2),
            scopes: Default::default(),
            created_at: self.f.now(),
            revoked_at: None,
        }
    }

    async fn create_client_app(&self, client: &ClientId, app: AppRecord) -> Result<AppId, StoreError> {
        let event = self.event(Action::AppCreated, Subject::App(app.id));
        self.store().create_oidc_client_app(client, app, event).await
    }

    fn pushed_record(&self, client: &ClientId, tag: &str) -> PushedRequest {
        PushedRequest {
            request_hash: hash(tag),
            client_id: client.clone(),
            params: format!(r#"{{"state":"{tag}","scope":"openid"}}"#),
            created_at: self.f.now(),
            expires_at: self.f.now() + PUSHED_TTL,
        }
    }

    async fn push(&self, client: &ClientId, tag: &str) -> PushedRequest {
        let record = self.pushed_record(client, tag);
        let event = self.event(Action::OidcRequestPushed, Subject::OidcClient(client.clone()));
        self.store().push_authorization_request(&record, event).await.unwrap();
        record
    }

    /// A sign-in of Alice at `client`, open for [`SIGN_IN_TTL`] (not stored).
    fn authorization_record(&self, client: &ClientId) -> AuthorizationRecord {
        let id = AuthorizationId::random();
        AuthorizationRecord {
            id,
            client_id: client.clone(),
            user_id: self.alice.id,
            request: format!(r#"{{"redirect_uri":"https://sso.example.com/cb","state":"{id}"}}"#),
            challenge_id: self.challenge.id,
            page_secret_sealed: id.0.as_bytes().repeat(3),
            browser_hash: hash(&format!("browser-{id}")),
            created_at: self.f.now(),
            expires_at: self.f.now() + SIGN_IN_TTL,
            finished_at: None,
        }
    }

    async fn authorization(&self, client: &ClientId) -> AuthorizationRecord {
        let record = self.authorization_record(client);
        let event = self.event(Action::OidcSignInStarted, Subject::User(record.user_id));
        self.store().create_authorization(&record, event).await.unwrap();
        record
    }

    /// The code `sign_in` yields, valid [`CODE_TTL`] (not stored).
    fn code_record(&self, sign_in: &AuthorizationRecord, tag: &str) -> CodeRecord {
        CodeRecord {
            code_hash: hash(tag),
            authorization_id: sign_in.id,
            client_id: sign_in.client_id.clone(),
            user_id: sign_in.user_id,
            grant_details: format!(r#"{{"nonce":"{tag}","amr":["mfa"]}}"#),
            created_at: self.f.now(),
            expires_at: self.f.now() + CODE_TTL,
            redeemed_at: None,
        }
    }

    async fn finish(
        &self,
        sign_in: &AuthorizationRecord,
        code: Option<&CodeRecord>,
    ) -> Result<(), StoreError> {
        let event = self.event(Action::OidcSignInFinished, Subject::User(sign_in.user_id));
        self.store().finish_authorization(sign_in.id, self.f.now(), code, event).await
    }

    /// A finished sign-in at `client` and the code it yielded, stored.
    async fn code(&self, client: &ClientId, tag: &str) -> CodeRecord {
        let sign_in = self.authorization(client).await;
        let code = self.code_record(&sign_in, tag);
        self.finish(&sign_in, Some(&code)).await.unwrap();
        code
    }

    /// The access token issued for `code`, valid [`TOKEN_TTL`] (not stored).
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

    async fn redeem(
        &self,
        code: &CodeRecord,
        client: &ClientId,
        token: &AccessTokenRecord,
    ) -> Result<CodeRecord, StoreError> {
        let event = self.event(Action::OidcTokensIssued, Subject::User(code.user_id));
        self.store().redeem_oidc_code(&code.code_hash, client, self.f.now(), token, event).await
    }

    async fn revoke(&self, code: &CodeRecord) -> u64 {
        let event = self.event(Action::OidcCodeRefused, Subject::User(code.user_id));
        self.store().revoke_code_tokens(&code.code_hash, self.f.now(), event).await.unwrap()
    }

    async fn code_now(&self, code: &CodeRecord) -> Option<CodeRecord> {
        self.store().oidc_code(&code.code_hash).await.unwrap()
    }

    async fn token_now(&self, jti: &str) -> Option<AccessTokenRecord> {
        self.store().access_token(jti).await.unwrap()
    }

    /// What moving `sign_in` to a new pending challenge of Alice's would store (the challenge
    /// is stored; the switch is not).
    async fn switch_to(&self, sign_in: &AuthorizationRecord) -> AuthorizationSwitch {
        let app = self.f.app(&format!("switch-{}", uuid::Uuid::new_v4().simple())).await;
        // A passkey sign-in's challenge (no number): outside the push budget.
        let record = ChallengeRecord { number_digits: 0, ..self.f.challenge_record(&app, &self.alice) };
        let challenge = self.f.create_challenge(record, &[], &Default::default()).await.unwrap();
        AuthorizationSwitch {
            challenge_id: challenge.id,
            request: format!(r#"{{"proof":"passkey","state":"{}"}}"#, sign_in.id),
            page_secret_sealed: challenge.id.0.as_bytes().repeat(2),
            expires_at: challenge.expires_at + Duration::seconds(30),
        }
    }

    async fn switch(
        &self,
        sign_in: &AuthorizationRecord,
        from: ChallengeId,
        to: &AuthorizationSwitch,
    ) -> Result<(), StoreError> {
        let event = self.event(Action::OidcSignInSwitched, Subject::User(sign_in.user_id));
        self.store().switch_authorization(sign_in.id, from, to, event).await
    }

    async fn app_count(&self) -> usize {
        self.store().list_apps().await.unwrap().len()
    }
}

/// The first call gives a client its app; any later one (as from another instance that also
/// found none, with an app of the same name) returns that app and adds nothing.
async fn a_client_gets_one_app(engine: Engine) {
    let t = flow(engine).await;
    assert_eq!(t.store().oidc_client_app(&t.client).await.unwrap(), None, "no app before the first sign-in");
    let (apps, events) = (t.app_count().await, t.f.audit_len().await);

    let first = t.client_app_record(&t.client);
    let id = t.create_client_app(&t.client, first.clone()).await.unwrap();
    assert_eq!(id, first.id);
    assert_eq!(t.store().oidc_client_app(&t.client).await.unwrap(), Some(id));
    assert_eq!(
        t.store().app_by_name(&first.name).await.unwrap(),
        Some(first.clone()),
        "the app row as given"
    );
    assert_eq!((t.app_count().await, t.f.audit_len().await), (apps + 1, events + 1));

    let again = t.create_client_app(&t.client, t.client_app_record(&t.client)).await;
    assert_eq!(again.unwrap(), id, "a second app of the same name returns the first");
    let mut renamed = t.client_app_record(&t.client);
    renamed.name = "oidc-client.renamed".into();
    assert_eq!(t.create_client_app(&t.client, renamed).await.unwrap(), id, "so does one of another name");
    assert_eq!(t.store().app_by_name("oidc-client.renamed").await.unwrap(), None, "not added");
    assert_eq!(
        (t.app_count().await, t.f.audit_len().await),
        (apps + 1, events + 1),
        "no second app row, no second audit event"
    );
    assert_eq!(t.store().oidc_client_app(&t.other).await.unwrap(), None, "the other client has none");
}

/// Attack: an operator-made app holds the name a client's app would get. The client is not
/// given that app (nor any): the name conflict stands.
async fn a_client_is_never_given_an_app_it_did_not_make(engine: Engine) {
    let t = flow(engine).await;
    let squatter = t.f.app(&format!("oidc-client.{}", t.client)).await;
    let events = t.f.audit_len().await;
    let result = t.create_client_app(&t.client, t.client_app_record(&t.client)).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::AppName))), "{result:?}");
    assert_eq!(t.store().oidc_client_app(&t.client).await.unwrap(), None, "not linked to {}", squatter.id);
    assert_eq!(t.f.audit_len().await, events, "no event");
}

/// Instances racing to make a client's app on its first sign-ins all get the same one.
async fn concurrent_first_sign_ins_give_a_client_one_app(engine: Engine) {
    let t = flow(engine).await;
    let (apps, events) = (t.app_count().await, t.f.audit_len().await);
    let client = t.client.clone();
    let records: Vec<AppRecord> = (0..RACERS).map(|_| t.client_app_record(&client)).collect();
    let results =
        t.f.race(RACERS, |i, store| {
            let (client, app) = (client.clone(), records[i].clone());
            let event = t.event(Action::AppCreated, Subject::App(app.id));
            async move { store.create_oidc_client_app(&client, app, event).await }
        })
        .await;
    let ids: Vec<AppId> = results.into_iter().map(|r| r.unwrap()).collect();
    let winner = t.store().oidc_client_app(&client).await.unwrap().unwrap();
    assert!(ids.iter().all(|id| *id == winner), "every racer got the client's one app: {ids:?}");
    assert!(records.iter().any(|r| r.id == winner));
    assert_eq!(t.app_count().await, apps + 1, "one app row");
    assert_eq!(t.f.audit_len().await, events + 1, "one audit event");
}

/// A pushed request reads back as pushed, once, and only for the client that pushed it: another
/// client's attempt gets nothing and leaves it usable.
async fn a_pushed_request_is_taken_once_only_by_its_client(engine: Engine) {
    let t = flow(engine).await;
    let events = t.f.audit_len().await;
    let pushed = t.push(&t.client, "par-1").await;
    assert_eq!(t.f.audit_len().await, events + 1, "pushing is audited");
    t.f.advance(Duration::seconds(5)).await;
    let now = t.f.now();

    assert_eq!(t.store().take_pushed_request(&hash("unknown"), &t.client, now).await.unwrap(), None);
    let foreign = t.store().take_pushed_request(&pushed.request_hash, &t.other, now).await.unwrap();
    assert_eq!(foreign, None, "another client cannot take it");
    let taken = t.store().take_pushed_request(&pushed.request_hash, &t.client, now).await.unwrap();
    assert_eq!(taken, Some(pushed.clone()), "its own client can; every field, times to the microsecond");
    assert_eq!(t.store().take_pushed_request(&pushed.request_hash, &t.client, now).await.unwrap(), None);
    assert_eq!(t.f.audit_len().await, events + 1, "taking writes no event");
}

/// A pushed request expires at `expires_at`: one microsecond before, it can be taken; at it, not.
async fn an_expired_pushed_request_cannot_be_taken(engine: Engine) {
    let t = flow(engine).await;
    let (early, late) = (t.push(&t.client, "par-early").await, t.push(&t.client, "par-late").await);
    let just_before = early.expires_at - Duration::microseconds(1);
    let taken = t.store().take_pushed_request(&early.request_hash, &t.client, just_before).await.unwrap();
    assert_eq!(taken, Some(early));
    let expired =
        t.store().take_pushed_request(&late.request_hash, &t.client, late.expires_at).await.unwrap();
    assert_eq!(expired, None, "expired at its expiry time");
}

async fn concurrent_takes_use_a_pushed_request_once(engine: Engine) {
    let t = flow(engine).await;
    let pushed = t.push(&t.client, "par-raced").await;
    let (client, now) = (t.client.clone(), t.f.now());
    let results =
        t.f.race(RACERS, |_, store| {
            let (hash, client) = (pushed.request_hash.clone(), client.clone());
            async move { store.take_pushed_request(&hash, &client, now).await.unwrap() }
        })
        .await;
    let taken: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(taken, [pushed], "exactly one racer took it");
}

/// A sign-in reads back exactly as created, times to the microsecond, with its audit event.
async fn an_authorization_round_trips_every_field(engine: Engine) {
    let t = flow(engine).await;
    assert_eq!(t.store().authorization(AuthorizationId::random()).await.unwrap(), None);
    let events = t.f.audit_len().await;
    let record = t.authorization(&t.client).await;
    assert_eq!(t.store().authorization(record.id).await.unwrap(), Some(record.clone()));
    let since = t.f.audit_since(events).await;
    assert_eq!(since.len(), 1);
    assert_eq!(
        (since[0].0.as_str(), since[0].1.clone()),
        ("oidc.sign_in_started", format!("user:{}", t.alice.id))
    );
}

/// A sign-in finishes once, storing its code in the same change; finishing it again stores no
/// second code and writes no event.
async fn a_sign_in_finishes_once_with_its_code(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    let code = t.code_record(&sign_in, "code-1");
    assert_eq!(t.code_now(&code).await, None);
    t.f.advance(Duration::seconds(3)).await;
    let events = t.f.audit_len().await;
    t.finish(&sign_in, Some(&code)).await.unwrap();
    let finished = t.store().authorization(sign_in.id).await.unwrap().unwrap();
    assert_eq!(finished, AuthorizationRecord { finished_at: Some(t.f.now()), ..sign_in.clone() });
    assert_eq!(t.code_now(&code).await, Some(code.clone()), "the code, every field");
    assert_eq!(t.f.audit_len().await, events + 1);

    t.f.advance(Duration::seconds(1)).await;
    let second = t.code_record(&sign_in, "code-2");
    let again = t.finish(&sign_in, Some(&second)).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    assert_eq!(t.code_now(&second).await, None, "no second code");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), Some(finished), "finished as first");
    assert_eq!(t.f.audit_len().await, events + 1, "no event for the refused finish");
}

/// A sign-in that failed finishes without a code, and then cannot yield one.
async fn a_failed_sign_in_finishes_without_a_code(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    t.finish(&sign_in, None).await.unwrap();
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap().unwrap().finished_at, Some(t.f.now()));
    let late = t.code_record(&sign_in, "late-code");
    assert!(matches!(t.finish(&sign_in, Some(&late)).await, Err(StoreError::NotFound)));
    assert_eq!(t.code_now(&late).await, None);
    let unknown = AuthorizationRecord { id: AuthorizationId::random(), ..sign_in };
    assert!(matches!(t.finish(&unknown, None).await, Err(StoreError::NotFound)), "an unknown sign-in");
}

/// When the code cannot be stored (its hash is taken), the sign-in stays unfinished and no event
/// is written: the finish and its code are one change.
async fn a_finish_whose_code_cannot_be_stored_changes_nothing(engine: Engine) {
    let t = flow(engine).await;
    let taken = t.code(&t.client, "code-taken").await;
    let sign_in = t.authorization(&t.client).await;
    let events = t.f.audit_len().await;
    let clash = CodeRecord { authorization_id: sign_in.id, ..taken.clone() };
    assert!(t.finish(&sign_in, Some(&clash)).await.is_err());
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap().unwrap().finished_at, None, "unfinished");
    assert_eq!(t.code_now(&taken).await, Some(taken), "the other code untouched");
    assert_eq!(t.f.audit_len().await, events, "no event");
    t.finish(&sign_in, Some(&t.code_record(&sign_in, "code-fresh"))).await.unwrap();
}

/// A finish whose audit event cannot be written finishes nothing and stores no code.
async fn a_finish_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let code = t.code_record(&sign_in, "code-unaudited");
    let result = t.finish(&sign_in, Some(&code)).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap().unwrap().finished_at, None);
    assert_eq!(t.code_now(&code).await, None);
}

async fn concurrent_finishes_finish_a_sign_in_once(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    let codes: Vec<CodeRecord> =
        (0..RACERS).map(|i| t.code_record(&sign_in, &format!("racer-{i}"))).collect();
    let events = t.f.audit_len().await;
    let now = t.f.now();
    let results =
        t.f.race(RACERS, |i, store| {
            let code = codes[i].clone();
            let event = t.event(Action::OidcSignInFinished, Subject::User(code.user_id));
            async move { store.finish_authorization(code.authorization_id, now, Some(&code), event).await }
        })
        .await;
    let winners: Vec<usize> = (0..RACERS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(StoreError::NotFound))), "{results:?}");
    for (i, code) in codes.iter().enumerate() {
        let stored = t.code_now(code).await;
        assert_eq!(stored.is_some(), i == winners[0], "only the winner's code is stored");
    }
    assert_eq!(t.f.audit_len().await, events + 1, "one event");
}

/// A code is redeemed once; the redemption records the access token it issued, and a second
/// redemption records none and writes no event.
async fn a_code_is_redeemed_once_and_records_its_token(engine: Engine) {
    let t = flow(engine).await;
    let code = t.code(&t.client, "code-1").await;
    t.f.advance(Duration::seconds(2)).await;
    let events = t.f.audit_len().await;
    let token = t.token_record(&code, "jti-1");
    let redeemed = t.redeem(&code, &t.client, &token).await.unwrap();
    let expected = CodeRecord { redeemed_at: Some(t.f.now()), ..code.clone() };
    assert_eq!(redeemed, expected, "the code as redeemed");
    assert_eq!(t.code_now(&code).await, Some(expected));
    assert_eq!(t.token_now("jti-1").await, Some(token), "the token, every field");
    assert_eq!(t.f.audit_len().await, events + 1);

    let replay = t.token_record(&code, "jti-2");
    assert!(matches!(t.redeem(&code, &t.client, &replay).await, Err(StoreError::NotFound)));
    assert_eq!(t.token_now("jti-2").await, None, "no token for the replay");
    assert_eq!(t.f.audit_len().await, events + 1, "no event for the refused redemption");
    let unknown = CodeRecord { code_hash: hash("unknown"), ..code };
    assert!(matches!(t.redeem(&unknown, &t.client, &replay).await, Err(StoreError::NotFound)));
}

/// Attack: a client presents a code issued to another client. It is refused, records no
/// token, and the code stays redeemable by its own client.
async fn a_code_is_redeemed_only_by_its_client(engine: Engine) {
    let t = flow(engine).await;
    let code = t.code(&t.client, "code-1").await;
    let events = t.f.audit_len().await;
    let stolen = AccessTokenRecord { client_id: t.other.clone(), ..t.token_record(&code, "jti-stolen") };
    assert!(matches!(t.redeem(&code, &t.other, &stolen).await, Err(StoreError::NotFound)));
    assert_eq!(t.token_now("jti-stolen").await, None);
    assert_eq!(t.code_now(&code).await, Some(code.clone()), "still unredeemed");
    assert_eq!(t.f.audit_len().await, events);
    t.redeem(&code, &t.client, &t.token_record(&code, "jti-own")).await.unwrap();
}

/// A code expires at `expires_at`: at it, redemption is refused and records no token.
async fn an_expired_code_cannot_be_redeemed(engine: Engine) {
    let t = flow(engine).await;
    let (early, late) = (t.code(&t.client, "code-early").await, t.code(&t.client, "code-late").await);
    t.f.advance(CODE_TTL - Duration::microseconds(1)).await;
    t.redeem(&early, &t.client, &t.token_record(&early, "jti-early")).await.unwrap();
    t.f.advance(Duration::microseconds(1)).await;
    let result = t.redeem(&late, &t.client, &t.token_record(&late, "jti-late")).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(t.token_now("jti-late").await, None);
    assert_eq!(t.code_now(&late).await.unwrap().redeemed_at, None);
}

/// When the token cannot be recorded (its `jti` is taken), the code stays unredeemed and no
/// event is written: the redemption and its token are one change.
async fn a_redeem_whose_token_cannot_be_recorded_changes_nothing(engine: Engine) {
    let t = flow(engine).await;
    let first = t.code(&t.client, "code-1").await;
    let token = t.token_record(&first, "jti-taken");
    t.redeem(&first, &t.client, &token).await.unwrap();
    let second = t.code(&t.client, "code-2").await;
    let events = t.f.audit_len().await;
    let clash = t.token_record(&second, "jti-taken");
    assert!(t.redeem(&second, &t.client, &clash).await.is_err());
    assert_eq!(t.code_now(&second).await.unwrap().redeemed_at, None, "not redeemed");
    assert_eq!(t.token_now("jti-taken").await, Some(token), "the other token untouched");
    assert_eq!(t.f.audit_len().await, events, "no event");
    t.redeem(&second, &t.client, &t.token_record(&second, "jti-fresh")).await.unwrap();
}

/// A redemption whose audit event cannot be written redeems nothing and records no token.
async fn a_redeem_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let t = flow(engine).await;
    let code = t.code(&t.client, "code-1").await;
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result = t.redeem(&code, &t.client, &t.token_record(&code, "jti-unaudited")).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(t.code_now(&code).await.unwrap().redeemed_at, None);
    assert_eq!(t.token_now("jti-unaudited").await, None);
}

async fn concurrent_redeems_redeem_a_code_once(engine: Engine) {
    let t = flow(engine).await;
    let code = t.code(&t.client, "code-raced").await;
    let tokens: Vec<_> = (0..RACERS).map(|i| t.token_record(&code, &format!("jti-{i}"))).collect();
    let events = t.f.audit_len().await;
    let (client, now) = (t.client.clone(), t.f.now());
    let results =
        t.f.race(RACERS, |i, store| {
            let (token, client) = (tokens[i].clone(), client.clone());
            let event = t.event(Action::OidcTokensIssued, Subject::User(token.user_id));
            async move { store.redeem_oidc_code(&token.code_hash, &client, now, &token, event).await }
        })
        .await;
    let winners: Vec<usize> = (0..RACERS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound))), "{results:?}");
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(t.token_now(&token.jti).await.is_some(), i == winners[0], "only the winner's token");
    }
    assert_eq!(t.f.audit_len().await, events + 1, "one event");
}

/// Attack: a leaked code is presented again. Its live tokens are revoked (counted once), other
/// codes' tokens are not, and every presentation is audited even when nothing was left.
async fn a_replayed_code_revokes_its_live_tokens(engine: Engine) {
    let t = flow(engine).await;
    let (code, bystander) = (t.code(&t.client, "code-1").await, t.code(&t.client, "code-2").await);
    let token = t.token_record(&code, "jti-1");
    t.redeem(&code, &t.client, &token).await.unwrap();
    let kept = t.token_record(&bystander, "jti-2");
    t.redeem(&bystander, &t.client, &kept).await.unwrap();
    t.f.advance(Duration::seconds(10)).await;
    let events = t.f.audit_len().await;
    let revoked_at = t.f.now();

    assert_eq!(t.revoke(&code).await, 1, "one live token");
    assert_eq!(t.token_now("jti-1").await, Some(AccessTokenRecord { revoked_at: Some(revoked_at), ..token }));
    assert_eq!(t.token_now("jti-2").await, Some(kept), "another code's token stays live");
    t.f.advance(Duration::seconds(1)).await;
    assert_eq!(t.revoke(&code).await, 0, "nothing left the second time");
    assert_eq!(t.token_now("jti-1").await.unwrap().revoked_at, Some(revoked_at), "revoked when first");
    let unknown = CodeRecord { code_hash: hash("unknown"), ..code };
    assert_eq!(t.revoke(&unknown).await, 0);
    let since = t.f.audit_since(events).await;
    assert_eq!(since.len(), 3, "audited every time: {since:?}");
    assert!(since.iter().all(|(action, _, _)| action == "oidc.code_refused"));
}

/// The purge deletes exactly what expired before the cutoff (not what expires at it): pushed
/// requests, sign-ins without a code, codes without tokens, tokens — children first.
async fn purge_deletes_only_what_expired_before_the_cutoff(engine: Engine) {
    let t = flow(engine).await;
    // Ended early: an unused pushed request, an unfinished sign-in, a never-redeemed code (with
    // its sign-in), and a redeemed code with its token, which ends last of them.
    t.push(&t.client, "par-old").await;
    let abandoned = t.authorization(&t.client).await;
    let unredeemed = t.code(&t.client, "code-old").await;
    let redeemed = t.code(&t.client, "code-redeemed").await;
    let old_token = t.token_record(&redeemed, "jti-old");
    t.redeem(&redeemed, &t.client, &old_token).await.unwrap();

    // Still live: one of each, started one token lifetime later.
    t.f.advance(TOKEN_TTL).await;
    let live_push = t.push(&t.client, "par-live").await;
    let open = t.authorization(&t.client).await;
    let live_code = t.code(&t.client, "code-live").await;

    // At the token's expiry time, the token is not yet "expired before": it keeps its code and
    // that code's sign-in; the rest of what ended early goes.
    let purged = t.store().purge_oidc_flow(old_token.expires_at).await.unwrap();
    assert_eq!(purged, 4, "a pushed request, a code and two sign-ins");
    assert_eq!(t.code_now(&unredeemed).await, None);
    for gone in [abandoned.id, unredeemed.authorization_id] {
        assert_eq!(t.store().authorization(gone).await.unwrap(), None);
    }
    let old = t.pushed_record(&t.client, "par-old");
    let event = t.event(Action::OidcRequestPushed, Subject::OidcClient(t.client.clone()));
    t.store().push_authorization_request(&old, event).await.expect("its hash is free again: it was deleted");
    assert_eq!(t.token_now("jti-old").await.map(|t| t.jti), Some("jti-old".into()), "expires at, not before");
    assert!(t.code_now(&redeemed).await.is_some());

    let cutoff = old_token.expires_at + Duration::microseconds(1);
    assert_eq!(t.store().purge_oidc_flow(cutoff).await.unwrap(), 3, "the token, then its code and sign-in");
    assert_eq!((t.token_now("jti-old").await, t.code_now(&redeemed).await), (None, None));
    assert_eq!(t.store().authorization(redeemed.authorization_id).await.unwrap(), None);

    assert_eq!(t.store().authorization(open.id).await.unwrap(), Some(open));
    assert_eq!(t.code_now(&live_code).await, Some(live_code.clone()));
    assert!(t.store().authorization(live_code.authorization_id).await.unwrap().is_some());
    let taken = t.store().take_pushed_request(&live_push.request_hash, &t.client, t.f.now()).await.unwrap();
    assert_eq!(taken, Some(live_push));
    assert_eq!(t.store().purge_oidc_flow(cutoff).await.unwrap(), 0, "nothing more");
}

/// A redeemed code stays while any token it issued is there, so a replay still finds the code
/// and revokes its tokens; its sign-in stays with it. Both go once the token is purged.
async fn purge_keeps_a_code_while_its_tokens_remain(engine: Engine) {
    let t = flow(engine).await;
    let code = t.code(&t.client, "code-1").await;
    let token = t.token_record(&code, "jti-1");
    t.redeem(&code, &t.client, &token).await.unwrap();
    let sign_in_ends = t.store().authorization(code.authorization_id).await.unwrap().unwrap().expires_at;
    let after_sign_in = sign_in_ends + Duration::seconds(1);
    assert!(after_sign_in < token.expires_at);

    assert_eq!(t.store().purge_oidc_flow(after_sign_in).await.unwrap(), 0, "code and sign-in expired, kept");
    assert!(t.code_now(&code).await.is_some(), "a replay still finds the code");
    assert!(t.store().authorization(code.authorization_id).await.unwrap().is_some());
    t.f.advance(SIGN_IN_TTL + Duration::seconds(1)).await;
    assert_eq!(t.revoke(&code).await, 1, "and revokes the token");

    let after_token = token.expires_at + Duration::seconds(1);
    assert_eq!(t.store().purge_oidc_flow(after_token).await.unwrap(), 3, "token, code, sign-in");
    assert_eq!((t.token_now("jti-1").await, t.code_now(&code).await), (None, None));
    assert_eq!(t.store().authorization(code.authorization_id).await.unwrap(), None);
}

/// A sign-in stays while its code is there, even past its own expiry (a code issued at the
/// end of a sign-in outlives it).
async fn purge_keeps_a_sign_in_whose_code_remains(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    t.f.advance(SIGN_IN_TTL - Duration::seconds(1)).await;
    let code = t.code_record(&sign_in, "code-late");
    t.finish(&sign_in, Some(&code)).await.unwrap();
    assert!(code.expires_at > sign_in.expires_at);

    let between = sign_in.expires_at + Duration::seconds(1);
    assert_eq!(t.store().purge_oidc_flow(between).await.unwrap(), 0);
    assert!(t.store().authorization(sign_in.id).await.unwrap().is_some(), "kept for its code");
    assert_eq!(t.code_now(&code).await, Some(code.clone()));

    let after = code.expires_at + Duration::seconds(1);
    assert_eq!(t.store().purge_oidc_flow(after).await.unwrap(), 2, "the code, then its sign-in");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), None);
}

/// "Use a passkey instead" moves an unfinished sign-in to its new challenge by compare-and-set:
/// challenge, request, page secret and expiry change with one event, everything else stays; a
/// second switch from the old challenge changes nothing and writes no event.
async fn a_sign_in_switches_its_challenge_once(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    let to = t.switch_to(&sign_in).await;
    let events = t.f.audit_len().await;
    t.switch(&sign_in, sign_in.challenge_id, &to).await.unwrap();
    let switched = AuthorizationRecord {
        challenge_id: to.challenge_id,
        request: to.request.clone(),
        page_secret_sealed: to.page_secret_sealed.clone(),
        expires_at: to.expires_at,
        ..sign_in.clone()
    };
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), Some(switched.clone()));
    let since = t.f.audit_since(events).await;
    assert_eq!(
        since.iter().map(|e| (e.0.as_str(), e.1.clone())).collect::<Vec<_>>(),
        [("oidc.sign_in_switched", format!("user:{}", t.alice.id))]
    );

    let again = t.switch_to(&sign_in).await;
    let events = t.f.audit_len().await;
    let result = t.switch(&sign_in, sign_in.challenge_id, &again).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "moved on already: {result:?}");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), Some(switched));
    assert_eq!(t.f.audit_len().await, events, "no event for the refused switch");
}

/// A finished sign-in, and an unknown one, cannot switch.
async fn a_finished_sign_in_cannot_switch(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    t.finish(&sign_in, None).await.unwrap();
    let finished = t.store().authorization(sign_in.id).await.unwrap();
    let to = t.switch_to(&sign_in).await;
    let result = t.switch(&sign_in, sign_in.challenge_id, &to).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), finished, "unchanged");
    let unknown = AuthorizationRecord { id: AuthorizationId::random(), ..sign_in };
    assert!(matches!(t.switch(&unknown, unknown.challenge_id, &to).await, Err(StoreError::NotFound)));
}

/// A switch whose audit event cannot be written switches nothing.
async fn a_switch_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    let to = t.switch_to(&sign_in).await;
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result = t.switch(&sign_in, sign_in.challenge_id, &to).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(t.store().authorization(sign_in.id).await.unwrap(), Some(sign_in));
}

/// Two tabs switching at once: one switch wins, one event.
async fn concurrent_switches_switch_a_sign_in_once(engine: Engine) {
    let t = flow(engine).await;
    let sign_in = t.authorization(&t.client).await;
    let mut targets = Vec::new();
    for _ in 0..RACERS {
        targets.push(t.switch_to(&sign_in).await);
    }
    let events = t.f.audit_len().await;
    let results =
        t.f.race(RACERS, |i, store| {
            let to = targets[i].clone();
            let event = t.event(Action::OidcSignInSwitched, Subject::User(sign_in.user_id));
            let (id, from) = (sign_in.id, sign_in.challenge_id);
            async move { store.switch_authorization(id, from, &to, event).await }
        })
        .await;
    let winners: Vec<usize> = (0..RACERS).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(StoreError::NotFound))), "{results:?}");
    let now = t.store().authorization(sign_in.id).await.unwrap().unwrap();
    assert_eq!(now.challenge_id, targets[winners[0]].challenge_id);
    assert_eq!(t.f.audit_len().await, events + 1, "one event");
}

on_both_engines!(
    a_client_gets_one_app,
    a_client_is_never_given_an_app_it_did_not_make,
    concurrent_first_sign_ins_give_a_client_one_app,
    a_pushed_request_is_taken_once_only_by_its_client,
    an_expired_pushed_request_cannot_be_taken,
    concurrent_takes_use_a_pushed_request_once,
    an_authorization_round_trips_every_field,
    a_sign_in_finishes_once_with_its_code,
    a_failed_sign_in_finishes_without_a_code,
    a_finish_whose_code_cannot_be_stored_changes_nothing,
    a_finish_whose_audit_event_fails_changes_nothing,
    concurrent_finishes_finish_a_sign_in_once,
    a_code_is_redeemed_once_and_records_its_token,
    a_code_is_redeemed_only_by_its_client,
    an_expired_code_cannot_be_redeemed,
    a_redeem_whose_token_cannot_be_recorded_changes_nothing,
    a_redeem_whose_audit_event_fails_changes_nothing,
    concurrent_redeems_redeem_a_code_once,
    a_replayed_code_revokes_its_live_tokens,
    purge_deletes_only_what_expired_before_the_cutoff,
    purge_keeps_a_code_while_its_tokens_remain,
    purge_keeps_a_sign_in_whose_code_remains,
    a_sign_in_switches_its_challenge_once,
    a_finished_sign_in_cannot_switch,
    a_switch_whose_audit_event_fails_changes_nothing,
    concurrent_switches_switch_a_sign_in_once,
);
