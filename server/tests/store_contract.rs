#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The store contract: every test runs on SQLite and on PostgreSQL, each on a fresh database.
//! The two engines must be indistinguishable to the services above them.

#[macro_use]
mod common;

use std::sync::Arc;

use countersign::api_keys::service::{self as api_keys, AppAdminError, AuthError};
use countersign::api_keys::{Scope, Scopes};
use countersign::audit::chain::{ChainBreak, HeadSealer};
use countersign::audit::{self, Actor, VerifyError};
use countersign::clock::{Clock, ManualClock};
use countersign::store::{self, Store, StoreError};
use countersign::users::service::{self as users, NewUser, UserError};
use countersign_e2e::{Engine, Tamper, TestDatabase, break_audit_writes_sql, drop_audit_guard_sql, exec_sql};
use secrecy::{ExposeSecret, SecretString};
use time::macros::datetime;

struct Fixture {
    db: TestDatabase,
    store: Arc<dyn Store>,
    sealer: HeadSealer,
    clock: ManualClock,
}

async fn fixture(engine: Engine) -> Fixture {
    let db = TestDatabase::new(engine).await;
    let sealer = HeadSealer::new(&[42u8; 32]);
    let store: Arc<dyn Store> =
        Arc::from(store::connect(&SecretString::from(db.url.clone()), 5, sealer.clone()).await.unwrap());
    store.migrate().await.unwrap();
    Fixture { db, store, sealer, clock: ManualClock::new(datetime!(2026-11-28 10:00:00.123456 UTC)) }
}

fn scopes(s: &str) -> Scopes {
    s.parse().unwrap()
}

fn new_user(name: &str) -> NewUser {
    NewUser { username: name.to_owned(), display_name: Some("Test User".into()), is_privileged: false }
}

/// Five audited changes: three apps, two users.
async fn five_events(f: &Fixture) {
    for name in ["app-a", "app-b", "app-c"] {
        api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, name, scopes("users:read"))
            .await
            .unwrap();
        f.clock.advance(time::Duration::seconds(1));
    }
    for name in ["alice", "bob"] {
        users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user(name)).await.unwrap();
    }
}

async fn migrations_are_idempotent_and_ready(engine: Engine) {
    let f = fixture(engine).await;
    f.store.migrate().await.unwrap();
    f.store.check_ready().await.unwrap();
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 0);
}

async fn app_keys_authenticate_until_revoked(engine: Engine) {
    let f = fixture(engine).await;
    let (app, key) = api_keys::create_app(
        f.store.as_ref(),
        &f.clock,
        Actor::Cli,
        "billing",
        scopes("users:write challenges:write"),
    )
    .await
    .unwrap();
    let header = format!("Bearer {}", key.expose_secret());

    let authed = api_keys::authenticate(f.store.as_ref(), Some(&header)).await.unwrap();
    assert_eq!(authed.id, app.id);
    assert!(authed.require(Scope::UsersWrite).is_ok());
    assert!(matches!(authed.require(Scope::UsersRead), Err(AuthError::InsufficientScope(Scope::UsersRead))));

    let stored = f.store.app_by_name("billing").await.unwrap().unwrap();
    assert_eq!(stored.created_at, f.clock.now(), "timestamps round-trip to the microsecond");
    assert_ne!(stored.key_hash, key.expose_secret().as_bytes(), "only a hash is stored");

    // A well-formed key with the right id but a different secret is refused.
    let forged = format!("Bearer csk_{}_{}", app.key_id, "A".repeat(43));
    assert!(matches!(api_keys::authenticate(f.store.as_ref(), Some(&forged)).await, Err(AuthError::Invalid)));

    api_keys::revoke_app(f.store.as_ref(), &f.clock, Actor::Cli, "billing").await.unwrap();
    assert!(matches!(api_keys::authenticate(f.store.as_ref(), Some(&header)).await, Err(AuthError::Revoked)));
    assert!(matches!(
        api_keys::revoke_app(f.store.as_ref(), &f.clock, Actor::Cli, "billing").await,
        Err(AppAdminError::NotFound(_))
    ));
    assert_eq!(
        audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(),
        2,
        "create + revoke, nothing for the failed revoke"
    );
}

async fn duplicate_names_are_refused_without_partial_writes(engine: Engine) {
    let f = fixture(engine).await;
    api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, "web", scopes("users:read")).await.unwrap();
    assert!(matches!(
        api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, "web", scopes("users:write")).await,
        Err(AppAdminError::NameTaken(_))
    ));
    users::create_user(f.store.as_ref(), &f.clock, Actor::Cli, new_user("Carol")).await.unwrap();
    assert!(matches!(
        users::create_user(f.store.as_ref(), &f.clock, Actor::Cli, new_user("carol")).await,
        Err(UserError::Exists)
    ));
    let carol = users::find_user(f.store.as_ref(), "CAROL").await.unwrap();
    assert_eq!(carol.username, "carol");
    assert!(matches!(users::find_user(f.store.as_ref(), "nobody").await, Err(UserError::NotFound)));
    assert_eq!(f.store.list_apps().await.unwrap().len(), 1);
    assert_eq!(
        audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(),
        2,
        "refused changes write no audit event"
    );
}

/// A change whose audit event cannot be written must not happen.
async fn failed_audit_write_fails_the_change(engine: Engine) {
    let f = fixture(engine).await;
    exec_sql(&f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result =
        api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, "ghost", scopes("users:read")).await;
    assert!(matches!(result, Err(AppAdminError::Store(StoreError::Database(_)))), "{result:?}");
    assert_eq!(
        f.store.app_by_name("ghost").await.unwrap(),
        None,
        "the app must not exist without its audit event"
    );
    assert!(users::create_user(f.store.as_ref(), &f.clock, Actor::Cli, new_user("ghost")).await.is_err());
    assert!(matches!(users::find_user(f.store.as_ref(), "ghost").await, Err(UserError::NotFound)));
    assert_eq!(f.store.audit_head().await.unwrap().seq, 0, "the head did not move");
}

async fn concurrent_changes_keep_one_unbroken_chain(engine: Engine) {
    let f = Arc::new(fixture(engine).await);
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user(&format!("user{i}")))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 24);
}

async fn append_only_guard_refuses_updates(engine: Engine) {
    let f = fixture(engine).await;
    five_events(&f).await;
    assert!(exec_sql(&f.db, Tamper::Modify.sql()).await.is_err(), "the trigger refuses UPDATE");
    assert!(exec_sql(&f.db, Tamper::Delete.sql()).await.is_err(), "the trigger refuses DELETE");
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 5);
}

/// An attacker with database access drops the guard and edits history: every kind of edit is
/// reported at the first sequence number it affects.
async fn every_kind_of_tampering_is_detected(engine: Engine) {
    for tamper in Tamper::ALL {
        let f = fixture(engine).await;
        five_events(&f).await;
        assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 5);
        exec_sql(&f.db, drop_audit_guard_sql(engine)).await.unwrap();
        exec_sql(&f.db, tamper.sql()).await.unwrap();
        match audit::verify(f.store.as_ref(), &f.sealer).await {
            Err(VerifyError::Broken(broken)) => {
                assert_eq!(broken.seq(), tamper.first_broken_seq(), "{tamper:?} on {engine:?}: {broken}")
            }
            other => panic!("{tamper:?} on {engine:?} went unnoticed: {other:?}"),
        }
    }
}

/// Rewriting the chain with recomputed hashes needs the sealing key, which the database lacks.
async fn forged_head_is_detected(engine: Engine) {
    let f = fixture(engine).await;
    five_events(&f).await;
    exec_sql(&f.db, "UPDATE audit_head SET seq = 4").await.unwrap();
    let result = audit::verify(f.store.as_ref(), &f.sealer).await;
    assert!(matches!(result, Err(VerifyError::Broken(ChainBreak::HeadSealInvalid { .. }))), "{result:?}");
    let other_key = HeadSealer::new(&[1u8; 32]);
    exec_sql(&f.db, "UPDATE audit_head SET seq = 5").await.unwrap();
    assert!(audit::verify(f.store.as_ref(), &other_key).await.is_err(), "a different key does not verify");
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 5);
}

on_both_engines!(
    migrations_are_idempotent_and_ready,
    app_keys_authenticate_until_revoked,
    duplicate_names_are_refused_without_partial_writes,
    failed_audit_write_fails_the_change,
    concurrent_changes_keep_one_unbroken_chain,
    append_only_guard_refuses_updates,
    every_kind_of_tampering_is_detected,
    forged_head_is_detected,
);

#[test]
fn migration_lists_match_across_engines() {
    let names = |engine: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(engine);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (pg, lite) = (names("postgres"), names("sqlite"));
    assert!(!pg.is_empty());
    assert_eq!(pg, lite, "every migration needs a twin for the other engine, with the same file name");
}
