//! OIDC clients: the store contract (register, read back exactly, list, revoke once, single-use
//! assertion ids) and client authentication end to end through the library with real crypto —
//! Basic, post, `private_key_jwt` with an inline key set and with a `jwks_uri` served over real
//! loopback HTTP, public clients — and every refusal, each audited.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use countersign::audit::{self, Action, Actor, Subject};
use countersign::clock::{Clock, ManualClock};
use countersign::oidc::client_admin::{self, ClientAdminError, CreatedClient, NewClient};
use countersign::oidc::client_auth::{
    ClientAuthError, ClientAuthSettings, ClientAuthenticator, ClientCredentials, JWT_BEARER_ASSERTION,
};
use countersign::oidc::client_jwks::{ClientJwksFetcher, JwksFetchSettings};
use countersign::oidc::clients::{AuthMethod, ClientId, ClientKeys, IdTokenAlg, validate_jwks};
use countersign::oidc::jose::JwtError;
use countersign_e2e::Engine;
use countersign_e2e::jose::{JwksServer, TestKey, jwks_json};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::Duration;

use super::support::{Fixture, START, fixture};

const ISSUER: &str = "https://mfa.example.com";
const TOKEN_ENDPOINT: &str = "https://mfa.example.com/oidc/token";

fn new_client(method: AuthMethod, keys: ClientKeys) -> NewClient {
    NewClient {
        name: "Keycloak".into(),
        redirect_uris: vec!["https://sso.example.com/realms/corp/broker/countersign/endpoint".into()],
        auth_method: method,
        keys,
        id_token_alg: IdTokenAlg::Es256,
        ciba: None,
    }
}

struct Setup {
    f: Fixture,
    clock: Arc<ManualClock>,
    auth: ClientAuthenticator,
}

async fn setup(engine: Engine) -> Setup {
    let f = fixture(engine).await;
    let clock = Arc::new(ManualClock::new(START));
    let fetcher = Arc::new(ClientJwksFetcher::new(clock.clone(), JwksFetchSettings::default()).unwrap());
    let auth = ClientAuthenticator::new(
        Arc::clone(&f.store),
        clock.clone(),
        fetcher,
        ClientAuthSettings::new(ISSUER, TOKEN_ENDPOINT),
    );
    Setup { f, clock, auth }
}

impl Setup {
    async fn register(&self, method: AuthMethod, keys: ClientKeys) -> CreatedClient {
        client_admin::create_client(
            self.f.store.as_ref(),
            self.clock.as_ref(),
            Actor::Cli,
            new_client(method, keys),
        )
        .await
        .unwrap()
    }

    async fn authenticate(&self, credentials: ClientCredentials<'_>) -> Result<AuthMethod, ClientAuthError> {
        self.auth.authenticate(&credentials).await.map(|c| c.method).map_err(|failure| failure.reason)
    }

    /// The `oidc_client.auth_refused` events about a subject, as (reason, details).
    async fn refusals(&self, subject: Subject) -> Vec<Value> {
        audit::flush(self.f.store.as_ref()).await.unwrap();
        let events =
            self.f.store.audit_events_about(&subject, Action::OidcClientAuthRefused, 100).await.unwrap();
        events.iter().map(|e| serde_json::from_str(&e.details).unwrap()).collect()
    }

    /// A client assertion signed by `key` for `client`, valid for a minute from now.
    fn assertion(&self, key: &TestKey, client: &ClientId, jti: &str) -> String {
        let now = self.clock.now().unix_timestamp();
        key.sign(&json!({
            "iss": client.0, "sub": client.0, "aud": TOKEN_ENDPOINT, "jti": jti, "iat": now, "exp": now + 60
        }))
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn assertion_credentials(assertion: &str) -> ClientCredentials<'_> {
    ClientCredentials {
        client_assertion_type: Some(JWT_BEARER_ASSERTION),
        client_assertion: Some(assertion),
        ..Default::default()
    }
}

/// A registered client reads back exactly as registered; only the secret's hash is stored;
/// revocation happens once and is audited once.
async fn a_client_secret_is_stored_only_hashed(engine: Engine) {
    let s = setup(engine).await;
    let created = s.register(AuthMethod::ClientSecretBasic, ClientKeys::None).await;
    let secret = created.secret.as_ref().unwrap().expose_secret().to_owned();
    assert_eq!(secret.len(), 43, "256 random bits");
    let stored = s.f.store.oidc_client(&created.client.client_id).await.unwrap().unwrap();
    assert_eq!(stored, created.client, "read back exactly");
    assert_eq!(stored.created_at, START, "to the microsecond");
    assert_eq!(stored.created_by, "cli");
    let hash = stored.secret_hash.as_deref().unwrap();
    assert_eq!(hash, countersign::api_keys::hash_key(&secret), "the API-key hash scheme");
    assert!(!hash.windows(8).any(|w| secret.as_bytes().windows(8).any(|s| s == w)), "no plaintext");
    let dump = format!("{:?}", s.f.store.list_oidc_clients().await.unwrap());
    assert!(!dump.contains(&secret), "a listing never carries the secret");
    assert!(ClientId::is_well_formed(&created.client.client_id.0));

    let id = created.client.client_id.clone();
    let revoked =
        client_admin::revoke_client(s.f.store.as_ref(), s.clock.as_ref(), Actor::Cli, &id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(START));
    let again = client_admin::revoke_client(s.f.store.as_ref(), s.clock.as_ref(), Actor::Cli, &id).await;
    assert!(matches!(again, Err(ClientAdminError::NotFound(_))), "{again:?}");
    assert_eq!(audit::verify(s.f.store.as_ref(), &s.f.sealer).await.unwrap(), 2, "created + revoked");
}

/// Key sets and jwks_uris round-trip; bad registrations write nothing.
async fn clients_round_trip_keys_and_refuse_bad_registrations(engine: Engine) {
    let s = setup(engine).await;
    let key = TestKey::es256("k1");
    let inline = ClientKeys::Inline(validate_jwks(&jwks_json(&[&key])).unwrap());
    let a = s.register(AuthMethod::PrivateKeyJwt, inline.clone()).await;
    let b =
        s.register(AuthMethod::PrivateKeyJwt, ClientKeys::Uri("https://rp.example.com/jwks".into())).await;
    let c = s.register(AuthMethod::None, ClientKeys::None).await;
    assert!(a.secret.is_none() && b.secret.is_none() && c.secret.is_none());
    assert_eq!(s.f.store.oidc_client(&a.client.client_id).await.unwrap().unwrap().keys, inline);
    assert_eq!(s.f.store.list_oidc_clients().await.unwrap().len(), 3);
    let bad = [
        NewClient {
            redirect_uris: vec!["http://rp.example.com/cb".into()],
            ..new_client(AuthMethod::None, ClientKeys::None)
        },
        NewClient { redirect_uris: vec![], ..new_client(AuthMethod::None, ClientKeys::None) },
        new_client(AuthMethod::PrivateKeyJwt, ClientKeys::None),
        new_client(AuthMethod::ClientSecretPost, inline),
        new_client(AuthMethod::PrivateKeyJwt, ClientKeys::Uri("http://rp.example.com/jwks".into())),
    ];
    for new in bad {
        let result = client_admin::create_client(s.f.store.as_ref(), s.clock.as_ref(), Actor::Cli, new).await;
        assert!(matches!(result, Err(ClientAdminError::Invalid(_))), "{result:?}");
    }
    assert_eq!(s.f.store.list_oidc_clients().await.unwrap().len(), 3, "nothing written");
    assert_eq!(audit::verify(s.f.store.as_ref(), &s.f.sealer).await.unwrap(), 3);
}

/// A jti is accepted once per client until it expires; the replay is audited in the same
/// transaction that refuses it.
async fn an_assertion_jti_is_single_use_until_it_expires(engine: Engine) {
    let s = setup(engine).await;
    let a = s.register(AuthMethod::None, ClientKeys::None).await.client.client_id;
    let b = s.register(AuthMethod::None, ClientKeys::None).await.client.client_id;
    let event = || s.f.event(Action::OidcClientAuthRefused, Subject::OidcClient(a.clone()));
    let (now, exp) = (START, START + Duration::minutes(1));
    assert!(s.f.store.use_client_assertion_jti(&a, "j1", exp, now, event()).await.unwrap());
    assert!(!s.f.store.use_client_assertion_jti(&a, "j1", exp, now, event()).await.unwrap(), "replay");
    assert!(s.f.store.use_client_assertion_jti(&b, "j1", exp, now, event()).await.unwrap(), "per client");
    let later = exp + Duration::seconds(1);
    assert!(
        s.f.store
            .use_client_assertion_jti(&a, "j1", later + Duration::minutes(1), later, event())
            .await
            .unwrap(),
        "forgotten once expired"
    );
    assert_eq!(s.refusals(Subject::OidcClient(a)).await.len(), 1, "only the replay was audited");
}

async fn basic_and_post_authenticate_with_the_right_secret_only(engine: Engine) {
    let s = setup(engine).await;
    let basic_client = s.register(AuthMethod::ClientSecretBasic, ClientKeys::None).await;
    let post_client = s.register(AuthMethod::ClientSecretPost, ClientKeys::None).await;
    let (bid, bsecret) =
        (&basic_client.client.client_id.0, basic_client.secret.as_ref().unwrap().expose_secret());
    let (pid, psecret) =
        (&post_client.client.client_id.0, post_client.secret.as_ref().unwrap().expose_secret());

    let header = basic(bid, bsecret);
    let ok =
        s.auth.authenticate(&ClientCredentials { authorization: Some(&header), ..Default::default() }).await;
    let ok = ok.unwrap();
    assert_eq!((ok.method, ok.pkce_required), (AuthMethod::ClientSecretBasic, false));
    let with_id =
        ClientCredentials { authorization: Some(&header), client_id: Some(bid), ..Default::default() };
    assert_eq!(
        s.authenticate(with_id).await.unwrap(),
        AuthMethod::ClientSecretBasic,
        "a matching client_id is fine"
    );
    let post = ClientCredentials { client_id: Some(pid), client_secret: Some(psecret), ..Default::default() };
    assert_eq!(s.authenticate(post).await.unwrap(), AuthMethod::ClientSecretPost);

    // Attack: guessing the secret, or presenting the other client's.
    let wrong = basic(bid, psecret);
    let failure = s
        .auth
        .authenticate(&ClientCredentials { authorization: Some(&wrong), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(failure.reason, ClientAuthError::WrongSecret));
    let oauth = failure.oauth_error();
    assert_eq!(
        (oauth.code.as_str(), oauth.status(), oauth.www_authenticate.as_deref()),
        ("invalid_client", 401, Some(r#"Basic realm="countersign""#))
    );
    let post_wrong =
        ClientCredentials { client_id: Some(pid), client_secret: Some("guess"), ..Default::default() };
    let failure = s.auth.authenticate(&post_wrong).await.unwrap_err();
    assert!(matches!(failure.reason, ClientAuthError::WrongSecret));
    assert_eq!(failure.oauth_error().www_authenticate, None, "no Basic challenge when Basic was not tried");
    let refusals = s.refusals(Subject::OidcClient(basic_client.client.client_id.clone())).await;
    assert_eq!(refusals, vec![json!({ "reason": "wrong_secret", "method": "client_secret_basic" })]);
    assert!(!refusals.iter().any(|r| r.to_string().contains(psecret)), "no secret in the audit trail");
}

/// Attack: a secret client authenticating by another method than registered (a post client
/// using Basic, a secret client posing as public with its id alone).
async fn the_registered_method_is_the_only_one_accepted(engine: Engine) {
    let s = setup(engine).await;
    let created = s.register(AuthMethod::ClientSecretPost, ClientKeys::None).await;
    let (id, secret) = (&created.client.client_id.0, created.secret.as_ref().unwrap().expose_secret());
    let header = basic(id, secret);
    let as_basic =
        s.authenticate(ClientCredentials { authorization: Some(&header), ..Default::default() }).await;
    assert!(matches!(
        as_basic,
        Err(ClientAuthError::WrongMethod { registered: AuthMethod::ClientSecretPost, .. })
    ));
    let as_public = s.authenticate(ClientCredentials { client_id: Some(id), ..Default::default() }).await;
    assert!(
        matches!(as_public, Err(ClientAuthError::WrongMethod { used: AuthMethod::None, .. })),
        "{as_public:?}"
    );
    let key = TestKey::es256("k");
    let assertion = s.assertion(&key, &created.client.client_id, "j");
    let as_jwt = s.authenticate(assertion_credentials(&assertion)).await;
    assert!(matches!(as_jwt, Err(ClientAuthError::WrongMethod { used: AuthMethod::PrivateKeyJwt, .. })));
    assert_eq!(s.refusals(Subject::OidcClient(created.client.client_id.clone())).await.len(), 3);
}

/// Two methods in one request, or none, are refused before any lookup.
async fn two_methods_or_none_are_refused(engine: Engine) {
    let s = setup(engine).await;
    let created = s.register(AuthMethod::ClientSecretBasic, ClientKeys::None).await;
    let (id, secret) = (&created.client.client_id.0, created.secret.as_ref().unwrap().expose_secret());
    let header = basic(id, secret);
    let both =
        ClientCredentials { authorization: Some(&header), client_secret: Some(secret), ..Default::default() };
    let failure = s.auth.authenticate(&both).await.unwrap_err();
    assert!(matches!(failure.reason, ClientAuthError::MultipleMethods));
    assert_eq!(failure.oauth_error().code.as_str(), "invalid_request");
    let none = s.auth.authenticate(&ClientCredentials::default()).await.unwrap_err();
    assert_eq!(none.oauth_error().code.as_str(), "invalid_client");
    assert_eq!(s.refusals(Subject::UnknownOidcClients).await.len(), 2, "audited as unknown clients");
}

/// Attack: probing client ids and using revoked clients.
async fn unknown_and_revoked_clients_are_refused(engine: Engine) {
    let s = setup(engine).await;
    let created = s.register(AuthMethod::ClientSecretBasic, ClientKeys::None).await;
    let (id, secret) =
        (created.client.client_id.clone(), created.secret.as_ref().unwrap().expose_secret().to_owned());
    for unknown in ["AAAAAAAAAAAAAAAAAAAAAA", "nope", "' OR 1=1 --", ""] {
        let header = basic(unknown, &secret);
        let result =
            s.authenticate(ClientCredentials { authorization: Some(&header), ..Default::default() }).await;
        assert!(
            matches!(result, Err(ClientAuthError::UnknownClient | ClientAuthError::MalformedBasic)),
            "{unknown}: {result:?}"
        );
    }
    client_admin::revoke_client(s.f.store.as_ref(), s.clock.as_ref(), Actor::Cli, &id).await.unwrap();
    let header = basic(&id.0, &secret);
    let result =
        s.authenticate(ClientCredentials { authorization: Some(&header), ..Default::default() }).await;
    assert!(matches!(result, Err(ClientAuthError::Revoked)), "{result:?}");
    assert_eq!(s.refusals(Subject::UnknownOidcClients).await.len(), 4);
    assert_eq!(
        s.refusals(Subject::OidcClient(id)).await,
        vec![json!({ "reason": "revoked", "method": "client_secret_basic" })]
    );
}

async fn a_public_client_authenticates_by_id_and_must_use_pkce(engine: Engine) {
    let s = setup(engine).await;
    let created = s.register(AuthMethod::None, ClientKeys::None).await;
    let id = &created.client.client_id.0;
    let authed =
        s.auth.authenticate(&ClientCredentials { client_id: Some(id), ..Default::default() }).await.unwrap();
    assert_eq!((authed.method, authed.pkce_required), (AuthMethod::None, true));
    // A public client has no secret to present.
    let with_secret =
        ClientCredentials { client_id: Some(id), client_secret: Some("x"), ..Default::default() };
    assert!(matches!(s.authenticate(with_secret).await, Err(ClientAuthError::WrongMethod { .. })));
}

async fn private_key_jwt_with_an_inline_key_set(engine: Engine) {
    let s = setup(engine).await;
    let (ec, rsa) = (TestKey::es256("ec"), TestKey::rs256("rsa"));
    let keys = ClientKeys::Inline(validate_jwks(&jwks_json(&[&ec, &rsa])).unwrap());
    let client = s.register(AuthMethod::PrivateKeyJwt, keys).await.client.client_id;
    for (key, jti) in [(&ec, "a-1"), (&rsa, "a-2")] {
        let assertion = s.assertion(key, &client, jti);
        assert_eq!(
            s.authenticate(assertion_credentials(&assertion)).await.unwrap(),
            AuthMethod::PrivateKeyJwt
        );
    }
    // `aud` may be the issuer; `client_id` may accompany the assertion if it agrees.
    let now = s.clock.now().unix_timestamp();
    let to_issuer =
        ec.sign(&json!({ "iss": client.0, "sub": client.0, "aud": ISSUER, "jti": "a-3", "exp": now + 60 }));
    let with_id = ClientCredentials { client_id: Some(&client.0), ..assertion_credentials(&to_issuer) };
    assert_eq!(s.authenticate(with_id).await.unwrap(), AuthMethod::PrivateKeyJwt);
}

/// Attack: a captured client assertion presented again (on both engines).
async fn a_replayed_client_assertion_is_refused_and_audited(engine: Engine) {
    let s = setup(engine).await;
    let key = TestKey::es256("k");
    let keys = ClientKeys::Inline(validate_jwks(&jwks_json(&[&key])).unwrap());
    let client = s.register(AuthMethod::PrivateKeyJwt, keys).await.client.client_id;
    let assertion = s.assertion(&key, &client, "once");
    assert!(s.authenticate(assertion_credentials(&assertion)).await.is_ok());
    s.clock.advance(Duration::seconds(20));
    let replay = s.auth.authenticate(&assertion_credentials(&assertion)).await.unwrap_err();
    assert!(matches!(replay.reason, ClientAuthError::ReplayedAssertion));
    assert_eq!(replay.oauth_error().code.as_str(), "invalid_client");
    let refusals = s.refusals(Subject::OidcClient(client)).await;
    assert_eq!(refusals, vec![json!({ "reason": "replayed_assertion", "method": "private_key_jwt" })]);
}

/// Attack: assertions that are forged, addressed elsewhere, for another client, too long-lived,
/// or expired — each refused as `invalid_client` and audited with the verifier's reason.
async fn bad_client_assertions_are_refused(engine: Engine) {
    let s = setup(engine).await;
    let (key, attacker) = (TestKey::es256("k"), TestKey::es256("k"));
    let keys = ClientKeys::Inline(validate_jwks(&jwks_json(&[&key])).unwrap());
    let client = s.register(AuthMethod::PrivateKeyJwt, keys).await.client.client_id;
    let other = s.register(AuthMethod::None, ClientKeys::None).await.client.client_id;
    let now = s.clock.now().unix_timestamp();
    let claims = |jti: &str| json!({ "iss": client.0, "sub": client.0, "aud": TOKEN_ENDPOINT, "jti": jti, "exp": now + 60 });
    let with = |jti: &str, name: &str, value: Value| {
        let mut c = claims(jti);
        c[name] = value;
        c
    };
    let cases: Vec<(String, JwtError)> = vec![
        (attacker.sign(&claims("f1")), JwtError::BadSignature),
        (key.sign(&with("f2", "aud", json!("https://other.example/token"))), JwtError::WrongAudience),
        (key.sign(&with("f3", "iss", json!(other.0))), JwtError::WrongIssuer),
        (key.sign(&with("f4", "exp", json!(now + 3600))), JwtError::LifetimeTooLong),
        (key.sign(&with("f5", "exp", json!(now - 120))), JwtError::Expired),
        (key.sign(&with("f6", "exp", json!((now + 60).to_string()))), JwtError::ClaimType("exp")),
        (
            key.sign_raw(
                &json!({ "alg": "ES256", "kid": "k", "jku": "https://attacker.example/jwks" }),
                &claims("f7"),
            ),
            JwtError::KeyInHeader("jku"),
        ),
        (
            key.sign(&json!({ "iss": client.0, "sub": client.0, "aud": TOKEN_ENDPOINT, "exp": now + 60 })),
            JwtError::MissingClaim("jti"),
        ),
    ];
    for (assertion, expected) in &cases {
        match s.authenticate(assertion_credentials(assertion)).await {
            Err(ClientAuthError::BadAssertion(error)) => assert_eq!(&error, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    // `sub` naming another client finds that client, whose method is not private_key_jwt.
    let as_other = key.sign(&with("f8", "sub", json!(other.0)));
    assert!(matches!(
        s.authenticate(assertion_credentials(&as_other)).await,
        Err(ClientAuthError::WrongMethod { .. })
    ));
    let mismatch = ClientCredentials { client_id: Some(&other.0), ..assertion_credentials(&cases[0].0) };
    assert!(matches!(s.authenticate(mismatch).await, Err(ClientAuthError::ClientIdMismatch)));
    let wrong_type =
        ClientCredentials { client_assertion_type: Some("urn:x"), ..assertion_credentials(&cases[0].0) };
    assert!(matches!(s.authenticate(wrong_type).await, Err(ClientAuthError::BadAssertionType)));
    let refusals = s.refusals(Subject::OidcClient(client)).await;
    assert_eq!(refusals.len(), cases.len());
    assert!(refusals.iter().all(|r| r["reason"] == "bad_assertion"), "{refusals:?}");
    assert!(refusals.iter().any(|r| r["assertion"] == "bad_signature"));
}

/// The key set from a `jwks_uri` over real loopback HTTP: fetched once and cached; a rotated
/// key (unknown kid) triggers one refetch; a flood of unknown kids does not hammer the server;
/// the TTL expires the cache.
async fn private_key_jwt_with_a_jwks_uri(engine: Engine) {
    let s = setup(engine).await;
    let (old, new) = (TestKey::es256("old"), TestKey::rs256("new"));
    let server = JwksServer::start(jwks_json(&[&old])).await;
    let client = s.register(AuthMethod::PrivateKeyJwt, ClientKeys::Uri(server.url())).await.client.client_id;
    for jti in ["u-1", "u-2"] {
        let assertion = s.assertion(&old, &client, jti);
        assert_eq!(
            s.authenticate(assertion_credentials(&assertion)).await.unwrap(),
            AuthMethod::PrivateKeyJwt
        );
    }
    assert_eq!(server.hits(), 1, "cached");

    // The client rotates: a new kid is refetched once.
    s.clock.advance(Duration::minutes(1));
    server.set_body(jwks_json(&[&old, &new]));
    let assertion = s.assertion(&new, &client, "u-3");
    assert!(s.authenticate(assertion_credentials(&assertion)).await.is_ok());
    assert_eq!(server.hits(), 2);

    // Attack: a flood of made-up kids — at most one fetch per interval.
    s.clock.advance(Duration::minutes(1));
    for i in 0..20 {
        let fake = TestKey::es256(&format!("fake-{i}"));
        let assertion = s.assertion(&fake, &client, &format!("x-{i}"));
        let result = s.authenticate(assertion_credentials(&assertion)).await;
        assert!(matches!(result, Err(ClientAuthError::BadAssertion(JwtError::UnknownKey))), "{result:?}");
    }
    assert_eq!(server.hits(), 3, "one refetch for twenty unknown kids");

    // Past the TTL the set is fetched again; a withdrawn key stops working.
    server.set_body(jwks_json(&[&new]));
    s.clock.advance(Duration::minutes(11));
    let withdrawn = s.assertion(&old, &client, "u-4");
    assert!(matches!(
        s.authenticate(assertion_credentials(&withdrawn)).await,
        Err(ClientAuthError::BadAssertion(JwtError::UnknownKey))
    ));
    assert_eq!(server.hits(), 4);

    // An unreachable or oversized jwks_uri refuses (never a server error).
    server.set_body("x".repeat(100 * 1024));
    s.clock.advance(Duration::minutes(11));
    let assertion = s.assertion(&new, &client, "u-5");
    let failure = s.auth.authenticate(&assertion_credentials(&assertion)).await.unwrap_err();
    assert!(matches!(failure.reason, ClientAuthError::KeysUnavailable(_)), "{:?}", failure.reason);
    assert_eq!(failure.oauth_error().code.as_str(), "invalid_client");
}

/// Requests arriving together for a client whose keys are not cached yet share one fetch
/// (none is refused because another's fetch is in flight).
async fn concurrent_assertions_share_one_jwks_fetch(engine: Engine) {
    let s = setup(engine).await;
    let key = TestKey::es256("k");
    let server = JwksServer::start(jwks_json(&[&key])).await;
    let client = s.register(AuthMethod::PrivateKeyJwt, ClientKeys::Uri(server.url())).await.client.client_id;
    let tokens: Vec<String> = (0..4).map(|i| s.assertion(&key, &client, &format!("c-{i}"))).collect();
    let (a, b, c, d) = tokio::join!(
        s.authenticate(assertion_credentials(&tokens[0])),
        s.authenticate(assertion_credentials(&tokens[1])),
        s.authenticate(assertion_credentials(&tokens[2])),
        s.authenticate(assertion_credentials(&tokens[3])),
    );
    for result in [a, b, c, d] {
        assert_eq!(result.unwrap(), AuthMethod::PrivateKeyJwt);
    }
    assert_eq!(server.hits(), 1);
}

on_both_engines!(
    concurrent_assertions_share_one_jwks_fetch,
    a_client_secret_is_stored_only_hashed,
    clients_round_trip_keys_and_refuse_bad_registrations,
    an_assertion_jti_is_single_use_until_it_expires,
    basic_and_post_authenticate_with_the_right_secret_only,
    the_registered_method_is_the_only_one_accepted,
    two_methods_or_none_are_refused,
    unknown_and_revoked_clients_are_refused,
    a_public_client_authenticates_by_id_and_must_use_pkce,
    private_key_jwt_with_an_inline_key_set,
    a_replayed_client_assertion_is_refused_and_audited,
    bad_client_assertions_are_refused,
    private_key_jwt_with_a_jwks_uri,
);
