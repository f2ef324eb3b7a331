//! Keycloak's CIBA channel: a delegation token's `jti` is admitted once however many instances
//! race; a realm user is pinned to the first Countersign user it names, and a request naming
//! anyone else changes nothing; finishing a request records its challenge, its callback job and
//! its audit event together or not at all; a realm gets one app; the purge keeps unexpired jtis.

use countersign::audit::{Action, Subject};
use countersign::ids::{AppId, ChallengeId, UserId};
use countersign::store::{
    Admission, AppRecord, CallbackJob, CallbackKind, KeycloakRequestRecord, RequestOutcome, StoreError,
};
use countersign_e2e::{Engine, break_audit_writes_sql, exec_sql};
use time::Duration;

use super::support::{Fixture, fixture};

const REALM: &str = "https://kc.example.com/realms/acme";
const SUB: &str = "4a1f6c2e-7d3b-4e55-9a0c-1b2d3e4f5a6b";
const RACERS: usize = 8;

fn request(f: &Fixture, jti: &str, user: Option<UserId>) -> KeycloakRequestRecord {
    KeycloakRequestRecord {
        realm_issuer: REALM.into(),
        jti: jti.into(),
        subject: SUB.into(),
        client_id: "kiosk".into(),
        user_id: user,
        challenge_id: None,
        outcome: RequestOutcome::Admitted,
        created_at: f.now(),
        expires_at: f.now() + Duration::seconds(120),
    }
}

fn job(f: &Fixture, challenge: Option<ChallengeId>) -> CallbackJob {
    CallbackJob {
        id: uuid::Uuid::new_v4(),
        kind: CallbackKind::KeycloakOutcome,
        challenge_id: challenge,
        url: format!("{REALM}/protocol/openid-connect/ext/ciba/auth/callback"),
        sealed: vec![1, 2, 3],
        created_at: f.now(),
        not_before: f.now(),
        expires_at: f.now() + Duration::seconds(120),
    }
}

async fn a_jti_is_admitted_once_however_many_instances_race(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let record = request(&f, "jti-1", Some(alice.id));
    let results = f
        .race(RACERS, |_, store| {
            let record = record.clone();
            async move { store.admit_keycloak_request(&record).await.unwrap() }
        })
        .await;
    let admitted = results.iter().filter(|r| **r == Admission::Admitted).count();
    assert_eq!(admitted, 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Admission::Admitted | Admission::Replayed)), "{results:?}");
    let stored = f.store.keycloak_request(REALM, "jti-1").await.unwrap().unwrap();
    assert_eq!(stored, record);
    // The same jti from another realm is another request.
    let other_realm = KeycloakRequestRecord { realm_issuer: format!("{REALM}2"), ..record };
    assert_eq!(f.store.admit_keycloak_request(&other_realm).await.unwrap(), Admission::Admitted);
}

async fn a_realm_user_is_pinned_to_the_first_user_it_names(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    assert_eq!(
        f.store.admit_keycloak_request(&request(&f, "jti-1", Some(alice.id))).await.unwrap(),
        Admission::Admitted
    );
    for (jti, user) in [("jti-2", Some(bob.id)), ("jti-3", None)] {
        let admission = f.store.admit_keycloak_request(&request(&f, jti, user)).await.unwrap();
        assert_eq!(admission, Admission::PinnedToOther);
        assert_eq!(
            f.store.keycloak_request(REALM, jti).await.unwrap(),
            None,
            "a refused request changes nothing"
        );
    }
    assert_eq!(
        f.store.admit_keycloak_request(&request(&f, "jti-4", Some(alice.id))).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(f.store.keycloak_subject(REALM, SUB).await.unwrap(), Some(alice.id));
    assert_eq!(f.store.keycloak_subject(REALM, "another-sub").await.unwrap(), None);
}

async fn concurrent_first_requests_pin_one_user(engine: Engine) {
    let f = fixture(engine).await;
    let users = [f.user("alice").await.id, f.user("bob").await.id];
    let records: Vec<_> = (0..RACERS).map(|i| request(&f, &format!("jti-{i}"), Some(users[i % 2]))).collect();
    let results = f
        .race(RACERS, |i, store| {
            let record = records[i].clone();
            async move { store.admit_keycloak_request(&record).await.unwrap() }
        })
        .await;
    let pinned = f.store.keycloak_subject(REALM, SUB).await.unwrap().unwrap();
    for (record, result) in records.iter().zip(&results) {
        let expected =
            if record.user_id == Some(pinned) { Admission::Admitted } else { Admission::PinnedToOther };
        assert_eq!(*result, expected, "{results:?}");
    }
}

async fn finishing_a_request_records_its_challenge_callback_and_event_once(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, app) = (f.user("alice").await, f.app("keycloak.Acme").await);
    let challenge = f.challenge(&app, &alice).await;
    f.store.admit_keycloak_request(&request(&f, "jti-1", Some(alice.id))).await.unwrap();
    let events = f.audit_len().await;
    let event = f.event(Action::KeycloakRequestAccepted, Subject::User(alice.id));
    let prompted = job(&f, Some(challenge.id));
    let finished =
        f.store.finish_keycloak_request(REALM, "jti-1", Some(challenge.id), Some(&prompted), event.clone());
    finished.await.unwrap();
    let stored = f.store.keycloak_request(REALM, "jti-1").await.unwrap().unwrap();
    assert_eq!((stored.outcome, stored.challenge_id), (RequestOutcome::Prompted, Some(challenge.id)));
    assert_eq!(f.store.callbacks_for_challenge(challenge.id).await.unwrap().len(), 1);
    assert_eq!(f.audit_len().await, events + 1);
    let again = f.store.finish_keycloak_request(REALM, "jti-1", None, Some(&job(&f, None)), event).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    let due = f.store.claim_callbacks(f.now(), Duration::seconds(1), 10).await.unwrap();
    assert!(due.is_empty(), "no second job; the first waits for its challenge: {due:?}");
    assert_eq!(f.audit_len().await, events + 1);
    // Nobody prompted: cancelled, its job due at once.
    f.store
        .admit_keycloak_request(&KeycloakRequestRecord {
            subject: "other".into(),
            ..request(&f, "jti-2", None)
        })
        .await
        .unwrap();
    let event = f.event(Action::KeycloakRequestRefused, Subject::KeycloakRealm(REALM.into()));
    f.store.finish_keycloak_request(REALM, "jti-2", None, Some(&job(&f, None)), event).await.unwrap();
    let stored = f.store.keycloak_request(REALM, "jti-2").await.unwrap().unwrap();
    assert_eq!((stored.outcome, stored.challenge_id), (RequestOutcome::Cancelled, None));
    assert_eq!(f.store.claim_callbacks(f.now(), Duration::seconds(1), 10).await.unwrap().len(), 1);
}

async fn a_finish_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    f.store.admit_keycloak_request(&request(&f, "jti-1", Some(alice.id))).await.unwrap();
    exec_sql(&f.db, break_audit_writes_sql(engine)).await.unwrap();
    let event = f.event(Action::KeycloakRequestRefused, Subject::User(alice.id));
    let result = f.store.finish_keycloak_request(REALM, "jti-1", None, Some(&job(&f, None)), event).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    let stored = f.store.keycloak_request(REALM, "jti-1").await.unwrap().unwrap();
    assert_eq!(stored.outcome, RequestOutcome::Admitted);
    assert!(f.store.claim_callbacks(f.now(), Duration::seconds(1), 10).await.unwrap().is_empty(), "no job");
}

async fn a_realm_gets_one_app_however_many_instances_race(engine: Engine) {
    let f = fixture(engine).await;
    let now = f.now();
    let ids = f
        .race(RACERS, |i, store| async move {
            let app = AppRecord {
                id: AppId(uuid::Uuid::new_v4()),
                name: "keycloak.Acme".into(),
                key_id: format!("key-{i}"),
                key_hash: vec![i as u8; 32],
                scopes: Default::default(),
                created_at: now,
                revoked_at: None,
            };
            let event = countersign::audit::AuditEvent::new(
                now,
                countersign::audit::Actor::System,
                Action::AppCreated,
                Subject::App(app.id),
            );
            store.create_keycloak_realm_app(REALM, app, event).await.unwrap()
        })
        .await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(f.store.keycloak_realm_app(REALM).await.unwrap(), Some(ids[0]));
    assert_eq!(f.store.app_by_name("keycloak.Acme").await.unwrap().unwrap().id, ids[0]);
}

async fn purge_deletes_only_requests_whose_token_expired(engine: Engine) {
    let f = fixture(engine).await;
    f.store.admit_keycloak_request(&request(&f, "old", None)).await.unwrap();
    f.advance(Duration::seconds(60)).await;
    f.store
        .admit_keycloak_request(&KeycloakRequestRecord { subject: "s2".into(), ..request(&f, "new", None) })
        .await
        .unwrap();
    assert_eq!(f.store.purge_keycloak_requests(f.now() + Duration::seconds(90)).await.unwrap(), 1);
    assert_eq!(f.store.keycloak_request(REALM, "old").await.unwrap(), None);
    assert!(f.store.keycloak_request(REALM, "new").await.unwrap().is_some(), "its jti stays spent");
}

on_both_engines!(
    a_jti_is_admitted_once_however_many_instances_race,
    a_realm_user_is_pinned_to_the_first_user_it_names,
    concurrent_first_requests_pin_one_user,
    finishing_a_request_records_its_challenge_callback_and_event_once,
    a_finish_whose_audit_event_fails_changes_nothing,
    a_realm_gets_one_app_however_many_instances_race,
    purge_deletes_only_requests_whose_token_expired,
);
