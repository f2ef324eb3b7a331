//! The OIDC signing keys: one row per key, a generation unique per algorithm (so concurrent
//! creations add one key), revocation and its replacement in one transaction, and private
//! halves that open only with the master key that sealed them.

use std::sync::Arc;

use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::clock::{Clock, ManualClock};
use countersign::oidc::keys::crypto::CryptoError;
use countersign::oidc::keys::{Jwk, KeyError, KeyTimings, SigningAlg, SigningKeys};
use countersign::secrets::MasterKey;
use countersign::store::{Conflict, Replacement, SigningKeyRecord, SigningKeyStore, Store, StoreError};
use countersign_e2e::{Engine, exec_sql};
use time::Duration;

use super::support::{Fixture, fixture};

const MASTER: [u8; 32] = [7; 32];

/// A key record with opaque key material (the store never looks inside).
fn record(f: &Fixture, kid: &str, alg: SigningAlg, generation: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg,
        generation,
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        sealed_pkcs8: kid.as_bytes().repeat(4),
        created_at: f.now(),
        activates_at: f.now() + Duration::hours(1),
        revoked_at: None,
    }
}

fn created(f: &Fixture, kid: &str) -> AuditEvent {
    f.event(Action::SigningKeyCreated, Subject::SigningKey(kid.into()))
}

/// The key service of an instance on `store`, with its own clock at the fixture's time.
fn service(f: &Fixture, store: Arc<dyn Store>, master: [u8; 32]) -> SigningKeys {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(f.now()));
    let store: Arc<dyn SigningKeyStore> = store;
    SigningKeys::new(store, clock, Arc::new(MasterKey::from_bytes(&master)), KeyTimings::DEFAULT)
}

async fn signing_keys_round_trip_and_one_key_takes_each_generation(engine: Engine) {
    let f = fixture(engine).await;
    let first = record(&f, "k1", SigningAlg::Es256, 1);
    f.store.add_signing_key(&first, created(&f, "k1")).await.unwrap();
    f.store.add_signing_key(&record(&f, "r1", SigningAlg::Rs256, 1), created(&f, "r1")).await.unwrap();
    let events = f.audit_len().await;

    let taken =
        f.store.add_signing_key(&record(&f, "k1-bis", SigningAlg::Es256, 1), created(&f, "k1-bis")).await;
    assert!(matches!(taken, Err(StoreError::Conflict(Conflict::SigningKeyGeneration))), "{taken:?}");
    assert_eq!(f.audit_len().await, events, "a refused key writes no audit event");

    let keys = f.store.signing_keys().await.unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k1", "r1"], "by algorithm, then generation");
    assert_eq!(keys[0], first, "every column round-trips, times to the microsecond");
}

async fn a_revocation_and_its_replacement_are_one_change(engine: Engine) {
    let f = fixture(engine).await;
    f.store.add_signing_key(&record(&f, "k1", SigningAlg::Es256, 1), created(&f, "k1")).await.unwrap();
    f.store.add_signing_key(&record(&f, "k2", SigningAlg::Es256, 2), created(&f, "k2")).await.unwrap();
    let revoke = || f.event(Action::SigningKeyRevoked, Subject::SigningKey("k1".into()));

    // A replacement that cannot be added (its generation is taken) undoes the revocation.
    let clash = Replacement { key: record(&f, "k3", SigningAlg::Es256, 2), audit: created(&f, "k3") };
    let result = f.store.revoke_signing_key("k1", f.now(), revoke(), Some(clash)).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::SigningKeyGeneration))), "{result:?}");
    assert!(f.store.signing_keys().await.unwrap().iter().all(|k| k.revoked_at.is_none()), "no partial write");

    let fresh = Replacement { key: record(&f, "k3", SigningAlg::Es256, 3), audit: created(&f, "k3") };
    let events = f.audit_len().await;
    let revoked = f.store.revoke_signing_key("k1", f.now(), revoke(), Some(fresh)).await.unwrap();
    assert_eq!((revoked.kid.as_str(), revoked.revoked_at), ("k1", Some(f.now())));
    let keys = f.store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 3, "the replacement was added");
    let since = f.audit_since(events).await;
    let actions: Vec<&str> = since.iter().map(|(action, _, _)| action.as_str()).collect();
    assert_eq!(actions, ["signing_key.revoked", "signing_key.created"]);

    let again = f.store.revoke_signing_key("k1", f.now(), revoke(), None).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "revoked once: {again:?}");
    let unknown = f.store.revoke_signing_key("nope", f.now(), revoke(), None).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

/// A key made before certificates gets its certificate once: its public JWK is replaced only
/// while it is still what the caller read (compare-and-set).
async fn a_public_jwk_is_replaced_only_while_unchanged(engine: Engine) {
    let f = fixture(engine).await;
    let key = record(&f, "k1", SigningAlg::Es256, 1);
    f.store.add_signing_key(&key, created(&f, "k1")).await.unwrap();
    let (first, second) = (r#"{"kid":"k1","x5c":["AA=="]}"#, r#"{"kid":"k1","x5c":["AQ=="]}"#);
    assert!(f.store.replace_signing_key_jwk("k1", &key.public_jwk, first).await.unwrap());
    assert!(!f.store.replace_signing_key_jwk("k1", &key.public_jwk, second).await.unwrap(), "read before");
    assert!(!f.store.replace_signing_key_jwk("k2", &key.public_jwk, second).await.unwrap(), "no such key");
    let stored = f.store.signing_keys().await.unwrap();
    assert_eq!(stored, [SigningKeyRecord { public_jwk: first.into(), ..key }], "only the first, only there");
}

/// Several instances meet a key stored before certificates at once: one certificate is
/// stored, and every instance serves that one.
async fn instances_certifying_an_old_key_at_once_serve_one_certificate(engine: Engine) {
    let f = fixture(engine).await;
    service(&f, Arc::clone(&f.store), MASTER)
        .sign(SigningAlg::Es256, "JWT", &serde_json::json!({}))
        .await
        .unwrap();
    let key = f.store.signing_keys().await.unwrap().remove(0);
    let made: Jwk = serde_json::from_str(&key.public_jwk).unwrap();
    assert!(made.x5c.is_some(), "a new key has its certificate");
    let old = Jwk { x5c: None, x5t: None, x5t_s256: None, ..made.clone() };
    let old = serde_json::to_string(&old).unwrap();
    assert!(f.store.replace_signing_key_jwk(&key.kid, &key.public_jwk, &old).await.unwrap());

    let now = f.now();
    let served = f
        .race(6, move |_, store| async move {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
            let store: Arc<dyn SigningKeyStore> = store;
            let keys =
                SigningKeys::new(store, clock, Arc::new(MasterKey::from_bytes(&MASTER)), KeyTimings::DEFAULT);
            keys.jwks().await.unwrap().keys.remove(0)
        })
        .await;
    assert!(served.windows(2).all(|pair| pair[0] == pair[1]), "one certificate for all: {served:?}");
    assert!(served[0].x5c.is_some() && served[0].x5c != made.x5c, "a new one: {:?}", served[0]);
    let stored: Jwk = serde_json::from_str(&f.store.signing_keys().await.unwrap()[0].public_jwk).unwrap();
    assert_eq!(stored, served[0]);
}

/// Several instances share one database and start at once: exactly one ES256 key is created,
/// and every instance signs with it.
async fn instances_starting_at_once_create_one_signing_key(engine: Engine) {
    let f = fixture(engine).await;
    let now = f.now();
    let kids = f
        .race(6, move |_, store| async move {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
            let store: Arc<dyn SigningKeyStore> = store;
            let keys = SigningKeys::load(
                store,
                clock,
                Arc::new(MasterKey::from_bytes(&MASTER)),
                KeyTimings::DEFAULT,
            )
            .await
            .unwrap();
            let set = keys.jwks().await.unwrap();
            assert_eq!(set.keys.len(), 1, "{set:?}");
            set.keys[0].kid.clone()
        })
        .await;
    assert!(kids.windows(2).all(|pair| pair[0] == pair[1]), "one key for all: {kids:?}");
    assert_eq!(f.store.signing_keys().await.unwrap().len(), 1);
    let events = f.audit_since(0).await;
    assert_eq!(events.len(), 1, "one creation audited: {events:?}");
    assert_eq!(events[0].0, "signing_key.created");
    assert_eq!(events[0].2["reason"], "no_signing_key");
}

/// Attack: someone with a copy of the database wants the signing key. The column holds the
/// PKCS#8 sealed (not the key), it opens only under the master key that sealed it, and a
/// sealed key moved into another row does not open either.
async fn the_private_key_column_is_sealed_and_opens_only_with_its_master_key(engine: Engine) {
    let f = fixture(engine).await;
    let keys = service(&f, Arc::clone(&f.store), MASTER);
    keys.sign(SigningAlg::Es256, "JWT", &serde_json::json!({ "sub": "alice" })).await.unwrap();
    let stored = f.store.signing_keys().await.unwrap().remove(0);
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    assert!(
        ring::signature::EcdsaKeyPair::from_pkcs8(alg, &stored.sealed_pkcs8, &rng).is_err(),
        "the column is not a PKCS#8 key"
    );
    let jwk: serde_json::Value = serde_json::from_str(&stored.public_jwk).unwrap();
    assert!(jwk.get("d").is_none(), "no private member in the public JWK: {jwk}");

    let thief = service(&f, Arc::clone(&f.store), [8; 32]);
    let signed = thief.sign(SigningAlg::Es256, "JWT", &serde_json::json!({ "sub": "mallory" })).await;
    assert!(matches!(signed, Err(KeyError::Crypto(CryptoError::Sealed { .. }))), "fails closed: {signed:?}");
    assert!(thief.jwks().await.is_err(), "nothing is published from keys that do not open");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(f.now()));
    let store: Arc<dyn SigningKeyStore> = Arc::clone(&f.store) as _;
    let start =
        SigningKeys::load(store, clock, Arc::new(MasterKey::from_bytes(&[8; 32])), KeyTimings::DEFAULT).await;
    assert!(start.is_err(), "a server with another master key does not start");

    // A second key's sealed private half copied into the first key's row.
    let rotated = keys.rotate(SigningAlg::Es256, Actor::Cli).await.unwrap();
    let copy = format!(
        "UPDATE oidc_signing_keys SET sealed_pkcs8 = (SELECT sealed_pkcs8 FROM oidc_signing_keys WHERE kid = '{}')
         WHERE kid = '{}'",
        rotated.kid, stored.kid
    );
    exec_sql(&f.db, &copy).await.unwrap();
    let fresh = service(&f, Arc::clone(&f.store), MASTER);
    let signed = fresh.sign(SigningAlg::Es256, "JWT", &serde_json::json!({})).await;
    assert!(matches!(signed, Err(KeyError::Crypto(CryptoError::Sealed { .. }))), "{signed:?}");
}

on_both_engines!(
    signing_keys_round_trip_and_one_key_takes_each_generation,
    a_revocation_and_its_replacement_are_one_change,
    instances_starting_at_once_create_one_signing_key,
    a_public_jwk_is_replaced_only_while_unchanged,
    instances_certifying_an_old_key_at_once_serve_one_certificate,
    the_private_key_column_is_sealed_and_opens_only_with_its_master_key,
);
