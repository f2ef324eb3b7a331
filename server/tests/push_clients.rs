//! The APNs and FCM clients against local fakes that speak the providers' HTTP/2 wire formats
//! (`countersign_e2e::fake_push`): what goes on the wire, how provider credentials are cached
//! and refreshed, how each provider answer maps to a `PushOutcome`, and config validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use countersign::push::config::{ApnsConfig, FcmConfig};
use countersign::push::{
    Providers, PushConfig, PushConfigError, PushMessage, PushOutcome, PushSender, PushTarget,
};
use countersign_e2e::fake_push::{ApnsReply, ApnsTestKey, FakeApns, FakeFcm, FcmReply, FcmTestAccount};
use countersign_mobile_protocol::push::{PUSH_BODY, PUSH_TITLE};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00:00 UTC);
const TOPIC: &str = "com.example.countersign";
const DEVICE: &str = "8f3c2a1b9e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3";
const FCM_DEVICE: &str = "fcm-registration:token_1";
/// Generous bound for anything that must not hang (the clients' own limit is 10 s).
const PROMPT: Duration = Duration::from_secs(5);

fn message(challenge_id: &str) -> PushMessage {
    PushMessage { challenge_id: challenge_id.to_owned(), expires_at: NOW + time::Duration::seconds(120) }
}

fn apns_target() -> PushTarget {
    PushTarget::Apns { token: DEVICE.to_owned(), is_sandbox: false }
}

fn fcm_target() -> PushTarget {
    PushTarget::Fcm { token: FCM_DEVICE.to_owned() }
}

fn at(minutes: i64) -> OffsetDateTime {
    NOW + time::Duration::minutes(minutes)
}

async fn send(
    providers: &Providers,
    target: &PushTarget,
    message: &PushMessage,
    now: OffsetDateTime,
) -> PushOutcome {
    tokio::time::timeout(PROMPT, providers.send(target, message, now)).await.expect("push send hung")
}

/// Production and sandbox APNs fakes and the client configured for them through `[push.apns]`.
struct Apns {
    production: FakeApns,
    sandbox: FakeApns,
    providers: Providers,
    _dir: TempDir,
}

impl Apns {
    async fn start() -> Self {
        let key = ApnsTestKey::generate();
        let production = FakeApns::start(&key, TOPIC, NOW.unix_timestamp()).await;
        let sandbox = FakeApns::start(&key, TOPIC, NOW.unix_timestamp()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = PushConfig {
            apns: Some(ApnsConfig {
                key_file: Some(key.write_p8(dir.path())),
                key_id: Some(key.key_id.clone()),
                team_id: Some(key.team_id.clone()),
                topic: Some(TOPIC.to_owned()),
                base_url: Some(production.url()),
                sandbox_base_url: Some(sandbox.url()),
            }),
            fcm: None,
        };
        Self { production, sandbox, providers: config.build().unwrap(), _dir: dir }
    }

    fn set_now(&self, now: OffsetDateTime) {
        self.production.set_now(now.unix_timestamp());
        self.sandbox.set_now(now.unix_timestamp());
    }
}

/// The FCM fake and the client configured for it through `[push.fcm]`.
struct Fcm {
    fake: FakeFcm,
    providers: Providers,
    _dir: TempDir,
}

impl Fcm {
    async fn start() -> Self {
        let fake = FakeFcm::start(&FcmTestAccount::new(), NOW.unix_timestamp()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = PushConfig {
            apns: None,
            fcm: Some(FcmConfig {
                service_account_file: Some(fake.write_service_account(dir.path())),
                base_url: Some(fake.url()),
            }),
        };
        Self { providers: config.build().unwrap(), fake, _dir: dir }
    }
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn assert_retry(outcome: &PushOutcome, expected_after: Option<Duration>) {
    match outcome {
        PushOutcome::Retry { after, .. } => assert_eq!(*after, expected_after, "{outcome:?}"),
        other => panic!("expected Retry, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// APNs

#[tokio::test]
async fn apns_delivers_with_provider_headers_a_valid_jwt_and_only_the_challenge_id() {
    let apns = Apns::start().await;
    let msg = message("ch_123");

    assert_eq!(send(&apns.providers, &apns_target(), &msg, NOW).await, PushOutcome::Delivered);

    let requests = apns.production.requests();
    assert_eq!(requests.len(), 1);
    assert!(apns.sandbox.requests().is_empty());
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", &*format!("/3/device/{DEVICE}")));
    assert_eq!(request.status, 200);
    assert_eq!(request.header("apns-topic"), Some(TOPIC));
    assert_eq!(request.header("apns-push-type"), Some("alert"));
    assert_eq!(request.header("apns-priority"), Some("10"));
    let expiry = msg.expires_at.unix_timestamp().to_string();
    assert_eq!(request.header("apns-expiration"), Some(expiry.as_str()));
    // The fake verified the signature; check the claims Apple requires and nothing more.
    let jwt = request.bearer().unwrap();
    assert_eq!(jwt_part(jwt, 0), json!({ "alg": "ES256", "typ": "JWT", "kid": "KEY1234567" }));
    assert_eq!(jwt_part(jwt, 1), json!({ "iss": "TEAM123456", "iat": NOW.unix_timestamp() }));
    // Exactly the challenge id and the generic text: no number, user, app, IP or place.
    assert_eq!(
        request.json(),
        json!({
            "aps": { "alert": { "title": PUSH_TITLE, "body": PUSH_BODY }, "sound": "default" },
            "challenge_id": "ch_123"
        })
    );
}

#[tokio::test]
async fn apns_sandbox_devices_go_to_the_sandbox_host() {
    let apns = Apns::start().await;
    let target = PushTarget::Apns { token: DEVICE.to_owned(), is_sandbox: true };

    assert_eq!(send(&apns.providers, &target, &message("ch_1"), NOW).await, PushOutcome::Delivered);

    assert_eq!(apns.sandbox.requests().len(), 1);
    assert!(apns.production.requests().is_empty());
}

#[tokio::test]
async fn apns_provider_token_is_reused_then_reminted_after_50_minutes() {
    let apns = Apns::start().await;
    for minutes in [0, 1, 49] {
        apns.set_now(at(minutes));
        let msg = PushMessage { expires_at: at(minutes + 2), ..message("ch_1") };
        assert_eq!(send(&apns.providers, &apns_target(), &msg, at(minutes)).await, PushOutcome::Delivered);
    }
    apns.set_now(at(50));
    let msg = PushMessage { expires_at: at(52), ..message("ch_2") };
    assert_eq!(send(&apns.providers, &apns_target(), &msg, at(50)).await, PushOutcome::Delivered);

    let tokens: Vec<String> =
        apns.production.requests().iter().map(|r| r.bearer().unwrap().to_owned()).collect();
    assert!(tokens[..3].iter().all(|token| *token == tokens[0]), "one token for the first 50 minutes");
    assert_ne!(tokens[3], tokens[0]);
    assert_eq!(jwt_part(&tokens[3], 1)["iat"], json!(at(50).unix_timestamp()));
}

#[tokio::test]
async fn apns_dead_tokens_are_reported_as_invalid() {
    let apns = Apns::start().await;
    for reply in [ApnsReply::Unregistered, ApnsReply::BadDeviceToken] {
        apns.production.set_reply(DEVICE, reply.clone());
        let outcome = send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await;
        let PushOutcome::TokenInvalid { reason } = outcome else { panic!("{reply:?}: got {outcome:?}") };
        assert!(!reason.contains(DEVICE), "the reason must not carry the device token: {reason}");
    }
    assert_eq!(apns.production.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [410, 400]);
}

#[tokio::test]
async fn apns_throttling_and_outages_are_retried_honouring_retry_after() {
    let apns = Apns::start().await;
    apns.production.set_reply(DEVICE, ApnsReply::TooManyRequests { retry_after_secs: 30 });
    assert_retry(
        &send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await,
        Some(Duration::from_secs(30)),
    );

    for reply in [ApnsReply::InternalServerError, ApnsReply::ServiceUnavailable] {
        apns.production.set_reply(DEVICE, reply);
        assert_retry(&send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await, None);
    }
}

#[tokio::test]
async fn apns_expired_provider_token_is_reminted_and_retried() {
    let apns = Apns::start().await;
    apns.production.set_reply(DEVICE, ApnsReply::ExpiredProviderToken);
    assert_retry(&send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await, None);

    apns.production.clear_reply(DEVICE);
    let later = NOW + time::Duration::seconds(1);
    apns.set_now(later);
    assert_eq!(send(&apns.providers, &apns_target(), &message("ch_1"), later).await, PushOutcome::Delivered);

    let requests = apns.production.requests();
    assert_ne!(requests[0].bearer(), requests[1].bearer(), "a rejected provider token is not reused");
    assert_eq!(jwt_part(requests[1].bearer().unwrap(), 1)["iat"], json!(later.unix_timestamp()));
}

#[tokio::test]
async fn apns_down_is_a_prompt_retry_not_an_error() {
    let apns = Apns::start().await;
    assert_eq!(send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await, PushOutcome::Delivered);
    apns.production.stop();

    // Twice: once on the pooled connection the fake dropped, once on a refused new one.
    for _ in 0..2 {
        assert_retry(&send(&apns.providers, &apns_target(), &message("ch_1"), NOW).await, None);
    }
}

/// Attack: a device registers a "token" with path characters (`../`, `?`, `#`) so that the
/// server's authenticated APNs request goes to another path of Apple's API. Non-hex tokens are
/// refused before any request is made.
#[tokio::test]
async fn apns_token_cannot_change_the_request_path() {
    let apns = Apns::start().await;
    for token in ["../../3/device/abcd", "abcd?x=1", "abcd#frag", "ab cd", ""] {
        let target = PushTarget::Apns { token: token.to_owned(), is_sandbox: false };
        let outcome = send(&apns.providers, &target, &message("ch_1"), NOW).await;
        assert!(matches!(outcome, PushOutcome::TokenInvalid { .. }), "{token:?}: {outcome:?}");
    }
    assert!(apns.production.requests().is_empty());
}

#[tokio::test]
async fn expired_challenges_are_not_pushed() {
    let apns = Apns::start().await;
    let fcm = Fcm::start().await;
    let msg = message("ch_1");
    for (providers, target) in [(&apns.providers, apns_target()), (&fcm.providers, fcm_target())] {
        let outcome = send(providers, &target, &msg, msg.expires_at).await;
        assert!(matches!(outcome, PushOutcome::Failed { .. }), "{outcome:?}");
    }
    assert!(apns.production.requests().is_empty());
    assert!(fcm.fake.sends().is_empty() && fcm.fake.token_requests().is_empty());
}

#[tokio::test]
async fn unconfigured_providers_say_so() {
    let providers = Providers::default();
    assert_eq!(send(&providers, &apns_target(), &message("ch_1"), NOW).await, PushOutcome::NotConfigured);
    assert_eq!(send(&providers, &fcm_target(), &message("ch_1"), NOW).await, PushOutcome::NotConfigured);
}

// ---------------------------------------------------------------------------------------------
// FCM

#[tokio::test]
async fn fcm_delivers_the_v1_message_with_ttl_until_expiry() {
    let fcm = Fcm::start().await;
    let msg = message("ch_42");
    let now = NOW + time::Duration::seconds(30);
    fcm.fake.set_now(now.unix_timestamp());

    assert_eq!(send(&fcm.providers, &fcm_target(), &msg, now).await, PushOutcome::Delivered);

    let token_requests = fcm.fake.token_requests();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].status, 200);
    let sends = fcm.fake.sends();
    assert_eq!(sends.len(), 1);
    let send = &sends[0];
    assert_eq!(send.path, "/v1/projects/countersign-test/messages:send");
    assert!(send.header("authorization").unwrap().starts_with("Bearer ya29.fake-"));
    // Exactly the challenge id and the generic text; ttl is the time left (120 s - 30 s).
    assert_eq!(
        send.json(),
        json!({ "message": {
            "token": FCM_DEVICE,
            "data": { "challenge_id": "ch_42" },
            "notification": { "title": PUSH_TITLE, "body": PUSH_BODY },
            "android": { "ttl": "90s", "priority": "high" }
        }})
    );
}

#[tokio::test]
async fn fcm_access_token_is_fetched_once_and_refreshed_five_minutes_before_expiry() {
    let fcm = Fcm::start().await;
    // The fake's tokens live 3599 s, so the client refreshes from 54 min 59 s on.
    for minutes in [0, 1, 54, 55] {
        fcm.fake.set_now(at(minutes).unix_timestamp());
        let msg = PushMessage { expires_at: at(minutes + 2), ..message("ch_1") };
        assert_eq!(send(&fcm.providers, &fcm_target(), &msg, at(minutes)).await, PushOutcome::Delivered);
    }

    assert_eq!(fcm.fake.token_requests().len(), 2);
    let bearers: Vec<String> = fcm.fake.sends().iter().map(|r| r.bearer().unwrap().to_owned()).collect();
    assert!(bearers[..3].iter().all(|bearer| *bearer == bearers[0]));
    assert_ne!(bearers[3], bearers[0]);
}

#[tokio::test]
async fn fcm_unauthorized_drops_the_access_token_and_retries() {
    let fcm = Fcm::start().await;
    assert_eq!(send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await, PushOutcome::Delivered);
    fcm.fake.revoke_access_tokens();

    assert_retry(&send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await, None);
    assert_eq!(send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await, PushOutcome::Delivered);

    assert_eq!(fcm.fake.token_requests().len(), 2);
    assert_eq!(fcm.fake.sends().iter().map(|r| r.status).collect::<Vec<_>>(), [200, 401, 200]);
}

#[tokio::test]
async fn fcm_dead_tokens_are_invalid_but_a_bad_request_is_not_blamed_on_the_token() {
    let fcm = Fcm::start().await;
    for reply in [FcmReply::Unregistered, FcmReply::InvalidToken] {
        fcm.fake.set_reply(FCM_DEVICE, reply.clone());
        let outcome = send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await;
        let PushOutcome::TokenInvalid { reason } = outcome else { panic!("{reply:?}: got {outcome:?}") };
        assert!(!reason.contains(FCM_DEVICE), "{reason}");
    }
    fcm.fake.set_reply(FCM_DEVICE, FcmReply::InvalidArgument);
    let outcome = send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await;
    assert!(matches!(outcome, PushOutcome::Failed { .. }), "{outcome:?}");
}

#[tokio::test]
async fn fcm_throttling_and_outages_are_retried_honouring_retry_after() {
    let fcm = Fcm::start().await;
    fcm.fake.set_reply(FCM_DEVICE, FcmReply::QuotaExceeded { retry_after_secs: 30 });
    assert_retry(
        &send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await,
        Some(Duration::from_secs(30)),
    );
    for reply in [FcmReply::Internal, FcmReply::Unavailable] {
        fcm.fake.set_reply(FCM_DEVICE, reply);
        assert_retry(&send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await, None);
    }
}

#[tokio::test]
async fn fcm_down_is_a_prompt_retry_not_an_error() {
    let fcm = Fcm::start().await;
    fcm.fake.stop();
    // The token endpoint is down too: no token, no send, a retry.
    for _ in 0..2 {
        assert_retry(&send(&fcm.providers, &fcm_target(), &message("ch_1"), NOW).await, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn apns_config(dir: &TempDir, key: &ApnsTestKey) -> ApnsConfig {
    ApnsConfig {
        key_file: Some(key.write_p8(dir.path())),
        key_id: Some(key.key_id.clone()),
        team_id: Some(key.team_id.clone()),
        topic: Some(TOPIC.to_owned()),
        base_url: None,
        sandbox_base_url: None,
    }
}

fn build_apns(apns: ApnsConfig) -> Result<Providers, PushConfigError> {
    PushConfig { apns: Some(apns), fcm: None }.build()
}

fn build_fcm(service_account_file: PathBuf, base_url: Option<String>) -> Result<Providers, PushConfigError> {
    PushConfig {
        apns: None,
        fcm: Some(FcmConfig { service_account_file: Some(service_account_file), base_url }),
    }
    .build()
}

/// The config key an error names, from its message.
fn named_key(result: Result<Providers, PushConfigError>) -> String {
    let error = result.expect_err("config should be refused").to_string();
    error.split([' ', ':']).next().unwrap().to_owned()
}

#[test]
fn an_empty_push_section_configures_nothing_and_defaults_build() {
    let providers = PushConfig::default().build().unwrap();
    assert!(providers.apns.is_none() && providers.fcm.is_none());
    let dir = tempfile::tempdir().unwrap();
    let providers = build_apns(apns_config(&dir, &ApnsTestKey::generate())).unwrap();
    assert!(providers.apns.is_some());
}

#[test]
fn apns_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = ApnsTestKey::generate();
    let valid = apns_config(&dir, &key);

    let missing = |apns: ApnsConfig| build_apns(apns).expect_err("refused").to_string();
    assert_eq!(
        missing(ApnsConfig { key_id: None, ..valid.clone() }),
        "push.apns.key_id is required when push.apns.key_file is set"
    );
    assert_eq!(
        missing(ApnsConfig { key_file: None, ..valid.clone() }),
        "push.apns.key_file is required when [push.apns] is set"
    );
    assert_eq!(named_key(build_apns(ApnsConfig { team_id: None, ..valid.clone() })), "push.apns.team_id");
    assert_eq!(named_key(build_apns(ApnsConfig { topic: None, ..valid.clone() })), "push.apns.topic");

    let unreadable = build_apns(ApnsConfig { key_file: Some(dir.path().join("nope.p8")), ..valid.clone() });
    let error = unreadable.expect_err("refused");
    assert!(matches!(error, PushConfigError::Unreadable { key: "push.apns.key_file", .. }), "{error}");

    // An RSA key, a P-384 key and garbage are all "not an EC P-256 PKCS#8 PEM".
    let p384 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    use base64::Engine as _;
    let p384_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(p384.as_ref())
    );
    for (name, contents) in [
        ("rsa.p8", FcmTestAccount::new().private_key_pem),
        ("p384.p8", p384_pem),
        ("garbage.p8", "not a key".to_owned()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        let error =
            build_apns(ApnsConfig { key_file: Some(path), ..valid.clone() }).expect_err(name).to_string();
        assert!(error.starts_with("push.apns.key_file: is not an EC P-256"), "{name}: {error}");
        assert!(!error.contains("PRIVATE KEY"), "errors never quote key material: {error}");
    }

    assert_eq!(
        named_key(build_apns(ApnsConfig { key_id: Some("short".into()), ..valid.clone() })),
        "push.apns.key_id"
    );
    assert_eq!(
        named_key(build_apns(ApnsConfig { topic: Some("a b\n".into()), ..valid.clone() })),
        "push.apns.topic"
    );
    for bad in
        ["ftp://push.example", "api.push.apple.com", "https://u:p@push.example", "https://push.example/?q"]
    {
        let result = build_apns(ApnsConfig { base_url: Some(bad.into()), ..valid.clone() });
        assert_eq!(named_key(result), "push.apns.base_url", "{bad}");
        let result = build_apns(ApnsConfig { sandbox_base_url: Some(bad.into()), ..valid.clone() });
        assert_eq!(named_key(result), "push.apns.sandbox_base_url", "{bad}");
    }
}

#[test]
fn fcm_config_errors_name_the_key_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let account = FcmTestAccount::new();
    let full: Value =
        serde_json::from_str(&account.service_account_json("https://oauth2.googleapis.com/token")).unwrap();
    let write = |name: &str, json: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, json.to_string()).unwrap();
        path
    };
    assert!(build_fcm(write("ok.json", &full), None).unwrap().fcm.is_some());

    for field in ["client_email", "private_key", "token_uri", "project_id"] {
        let mut json = full.clone();
        json.as_object_mut().unwrap().remove(field);
        let error = build_fcm(write("sa.json", &json), None).expect_err(field).to_string();
        assert!(error.starts_with("push.fcm.service_account_file: "), "{error}");
        assert!(error.ends_with(&format!("has no string field \"{field}\"")), "{error}");
    }
    let mut json = full.clone();
    json["private_key"] = json!(ApnsTestKey::generate().pem);
    let error = build_fcm(write("ec.json", &json), None).expect_err("EC key").to_string();
    assert!(error.contains("\"private_key\" is not an RSA private key"), "{error}");
    assert!(!error.contains("PRIVATE KEY"), "{error}");

    assert_eq!(named_key(build_fcm(write("ok.json", &full), Some("gopher://x".into()))), "push.fcm.base_url");
    assert_eq!(named_key(build_fcm(dir.path().join("missing.json"), None)), "push.fcm.service_account_file");
    assert_eq!(
        PushConfig { apns: None, fcm: Some(FcmConfig::default()) }.build().expect_err("refused").to_string(),
        "push.fcm.service_account_file is required when [push.fcm] is set"
    );
}

#[test]
fn unknown_push_settings_are_refused() {
    let error = serde_json::from_value::<PushConfig>(json!({ "apns": { "key_fle": "/x.p8" } })).unwrap_err();
    assert!(error.to_string().contains("key_fle"), "{error}");
    assert!(serde_json::from_value::<PushConfig>(json!({ "webpush": {} })).is_err());
}

// ---------------------------------------------------------------------------------------------
// The fakes check credentials like the providers do

#[tokio::test]
async fn apns_provider_token_signed_with_another_key_is_a_permanent_failure() {
    let fake = FakeApns::start(&ApnsTestKey::generate(), TOPIC, NOW.unix_timestamp()).await;
    let dir = tempfile::tempdir().unwrap();
    let other_key = ApnsTestKey::generate();
    let apns = ApnsConfig { base_url: Some(fake.url()), ..apns_config(&dir, &other_key) };
    let providers = build_apns(apns).unwrap();

    let outcome = send(&providers, &apns_target(), &message("ch_1"), NOW).await;

    assert_eq!(outcome, PushOutcome::Failed { reason: "apns 403 InvalidProviderToken".to_owned() });
}

#[tokio::test]
async fn fcm_assertion_for_another_account_is_refused_by_the_token_endpoint() {
    let fake = FakeFcm::start(&FcmTestAccount::new(), NOW.unix_timestamp()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut impostor = FcmTestAccount::new();
    impostor.client_email = "someone@else.iam.gserviceaccount.com".to_owned();
    let path = dir.path().join("impostor.json");
    std::fs::write(&path, impostor.service_account_json(&fake.token_uri())).unwrap();
    let providers = build_fcm(path, Some(fake.url())).unwrap();

    let outcome = send(&providers, &fcm_target(), &message("ch_1"), NOW).await;

    assert_eq!(outcome, PushOutcome::Failed { reason: "fcm oauth 400 invalid_grant".to_owned() });
    assert!(fake.sends().is_empty());
}
