#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The store contract: every test runs on SQLite and on PostgreSQL, each on a fresh database.
//! The two engines must be indistinguishable to the services above them. This file holds the
//! apps, users and audit contract; each other capability has its module in `store_contract/`
//! (one test binary for all of them).

#[macro_use]
mod common;
#[path = "store_contract/support.rs"]
mod support;

#[path = "store_contract/admin_passkeys.rs"]
mod admin_passkeys;
#[path = "store_contract/alerts.rs"]
mod alerts;
#[path = "store_contract/callbacks.rs"]
mod callbacks;
#[path = "store_contract/challenges.rs"]
mod challenges;
#[path = "store_contract/dashboard.rs"]
mod dashboard;
#[path = "common/dashboard_seed.rs"]
mod dashboard_seed;
#[path = "store_contract/devices.rs"]
mod devices;
#[path = "store_contract/fatigue.rs"]
mod fatigue;
#[path = "store_contract/fatigue_policy.rs"]
mod fatigue_policy;
#[path = "store_contract/keycloak.rs"]
mod keycloak;
#[path = "store_contract/oidc_ciba.rs"]
mod oidc_ciba;
#[path = "store_contract/oidc_clients.rs"]
mod oidc_clients;
#[path = "store_contract/oidc_flow.rs"]
mod oidc_flow;
#[path = "store_contract/outbox.rs"]
mod outbox;
#[path = "store_contract/passkeys.rs"]
mod passkeys;
#[path = "store_contract/signing_keys.rs"]
mod signing_keys;
#[path = "store_contract/upgrades.rs"]
mod upgrades;

use std::sync::Arc;

use countersign::api_keys::Scope;
use countersign::api_keys::service::{self as api_keys, AppAdminError, AuthError};
use countersign::audit::chain::{AuditSealer, ChainBreak, CheckpointBreak};
use countersign::audit::{self, Actor, VerifyError};
use countersign::clock::Clock;
use countersign::store::{self, Store, StoreError};
use countersign::users::service::{self as users, UserError};
use countersign_e2e::{
    Engine, Tamper, break_audit_writes_sql, drop_audit_guard_sql, drop_pending_guard_sql, exec_sql,
};
use secrecy::{ExposeSecret, SecretString};
use support::{Fixture, fixture, new_user, scopes};

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
    assert_eq!(audit::flush(f.store.as_ref()).await.unwrap(), 5, "five events chained");
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
    assert_eq!(f.store.audit_pending_count().await.unwrap(), 0, "nothing pending");
    assert_eq!(audit::flush(f.store.as_ref()).await.unwrap(), 0, "nothing to chain");
    assert_eq!(f.store.audit_head().await.unwrap().seq, 0, "the head did not move");
}

/// Events wait, sealed, in `audit_pending` until the chainer links them; a pending event altered
/// or forged in the database stops the chain there (fail closed) and verification names it.
async fn pending_events_are_sealed_until_chained(engine: Engine) {
    let f = fixture(engine).await;
    five_events(&f).await;
    api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, "app-d", scopes("users:read"))
        .await
        .unwrap();
    users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user("carol")).await.unwrap();
    assert_eq!(f.store.audit_pending_count().await.unwrap(), 2);
    assert_eq!(f.store.audit_head().await.unwrap().seq, 5, "not chained yet");

    // A copied pending row is refused: each event id is unique.
    let copy = "INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
                SELECT event_id, occurred_at, actor, action, subject, details, mac FROM audit_pending";
    assert!(exec_sql(&f.db, copy).await.is_err(), "duplicate event ids are refused");
    let alter = "UPDATE audit_pending SET details = '{\"forged\":true}' WHERE action = 'user.created'";
    assert!(exec_sql(&f.db, alter).await.is_err(), "the trigger refuses UPDATE of pending rows");

    // The attacker drops the guard and rewrites the pending user event.
    exec_sql(&f.db, drop_pending_guard_sql(engine)).await.unwrap();
    exec_sql(&f.db, alter).await.unwrap();
    let result = audit::verify(f.store.as_ref(), &f.sealer).await;
    assert!(matches!(result, Err(VerifyError::PendingForged(_))), "{result:?}");
    assert!(matches!(audit::flush(f.store.as_ref()).await, Err(StoreError::PendingAuditInvalid(_))));
    assert_eq!(f.store.audit_head().await.unwrap().seq, 5, "nothing chained past a forged event");
    assert_eq!(f.store.audit_pending_count().await.unwrap(), 2, "nothing dropped either");
}

/// Changes commit concurrently while two stores (two instances) chain at the same time.
async fn concurrent_changes_keep_one_unbroken_chain(engine: Engine) {
    let f = Arc::new(fixture(engine).await);
    let other: Arc<dyn Store> =
        Arc::from(store::connect(&SecretString::from(f.db.url.clone()), 5, f.sealer.clone()).await.unwrap());
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let f = Arc::clone(&f);
            let chainer = if i % 2 == 0 { Arc::clone(&f.store) } else { Arc::clone(&other) };
            tokio::spawn(async move {
                users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user(&format!("user{i}")))
                    .await
                    .unwrap();
                audit::flush(chainer.as_ref()).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.store.audit_pending_count().await.unwrap(), 0, "every event chained");
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
    let other_key = AuditSealer::new(&[1u8; 32]);
    exec_sql(&f.db, "UPDATE audit_head SET seq = 5").await.unwrap();
    assert!(audit::verify(f.store.as_ref(), &other_key).await.is_err(), "a different key does not verify");
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 5);
}

/// SQL resetting the audit head to "nothing happened yet", unsealed, per engine.
fn reset_head_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "UPDATE audit_head SET seq = 0, hash = zeroblob(32), mac = x''",
        Engine::Postgres => {
            "UPDATE audit_head SET seq = 0, hash = decode(repeat('00', 32), 'hex'), mac = ''::bytea"
        }
    }
}

/// A byte string as an SQL literal, per engine.
fn bytes_sql(engine: Engine, bytes: &[u8]) -> String {
    match engine {
        Engine::Sqlite => format!("x'{}'", hex::encode(bytes)),
        Engine::Postgres => format!("decode('{}', 'hex')", hex::encode(bytes)),
    }
}

/// Attack: an attacker with database access deletes every audit event and resets the head to
/// (0, zero hash, no seal). That must read as a broken trail, never as "intact: 0 events" —
/// also after the server restarts (migrations run again and must not seal it anew).
async fn emptied_audit_trail_is_a_break_not_an_empty_trail(engine: Engine) {
    let f = fixture(engine).await;
    assert_eq!(audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(), 0, "a new trail is sealed");
    five_events(&f).await;
    exec_sql(&f.db, drop_audit_guard_sql(engine)).await.unwrap();
    exec_sql(&f.db, "DELETE FROM audit_events").await.unwrap();
    exec_sql(&f.db, reset_head_sql(engine)).await.unwrap();
    let result = audit::verify(f.store.as_ref(), &f.sealer).await;
    assert!(matches!(result, Err(VerifyError::Broken(ChainBreak::HeadUnsealed))), "{result:?}");
    f.store.migrate().await.unwrap();
    let restarted: Arc<dyn Store> =
        Arc::from(store::connect(&SecretString::from(f.db.url.clone()), 2, f.sealer.clone()).await.unwrap());
    restarted.migrate().await.unwrap();
    let result = audit::verify(restarted.as_ref(), &f.sealer).await;
    assert!(matches!(result, Err(VerifyError::Broken(ChainBreak::HeadUnsealed))), "still broken: {result:?}");
}

/// Attack: a row read from `audit_pending` while it waited is inserted again after it was
/// chained, to chain a recorded event (say `challenge.approved`) twice. The chainer refuses the
/// copy (fail closed, even with the unique index dropped) and verification names it.
async fn captured_pending_event_cannot_be_chained_twice(engine: Engine) {
    let f = fixture(engine).await;
    five_events(&f).await;
    users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user("carol")).await.unwrap();
    exec_sql(&f.db, "CREATE TABLE captured AS SELECT * FROM audit_pending").await.unwrap();
    assert_eq!(audit::flush(f.store.as_ref()).await.unwrap(), 1);
    exec_sql(&f.db, "DROP INDEX audit_events_event_id_key").await.unwrap();
    exec_sql(
        &f.db,
        "INSERT INTO audit_pending (event_id, occurred_at, actor, action, subject, details, mac)
         SELECT event_id, occurred_at, actor, action, subject, details, mac FROM captured",
    )
    .await
    .unwrap();
    let flushed = audit::flush(f.store.as_ref()).await;
    assert!(matches!(flushed, Err(StoreError::PendingAuditReplayed { seq: 6, .. })), "{flushed:?}");
    assert_eq!(f.store.audit_head().await.unwrap().seq, 6, "the copy was not chained");
    let result = audit::verify(f.store.as_ref(), &f.sealer).await;
    assert!(matches!(result, Err(VerifyError::PendingReplayed { seq: 6, .. })), "{result:?}");
}

/// A chain that already holds a copy of an event (as a chainer without the id check would have
/// written it, hashes and seal correct) fails verification, naming the copy.
async fn verify_reports_a_duplicate_event_id(engine: Engine) {
    let f = fixture(engine).await;
    five_events(&f).await;
    let events = f.store.audit_events(0, 5, 10).await.unwrap();
    let (copied, last) = (&events[1], &events[4]);
    let prev: [u8; 32] = last.hash.as_slice().try_into().unwrap();
    let content = countersign::audit::chain::EventContent { seq: 6, ..copied.content() };
    let hash = countersign::audit::chain::event_hash(&content, &prev);
    exec_sql(&f.db, "DROP INDEX audit_events_event_id_key").await.unwrap();
    let insert = format!(
        "INSERT INTO audit_events (seq, occurred_at, actor, action, subject, details, prev_hash, hash, event_id)
         SELECT 6, occurred_at, actor, action, subject, details, {}, {}, event_id FROM audit_events WHERE seq = 2;
         UPDATE audit_head SET seq = 6, hash = {}, mac = {};",
        bytes_sql(engine, &prev),
        bytes_sql(engine, &hash),
        bytes_sql(engine, &hash),
        bytes_sql(engine, &f.sealer.seal(6, &hash)),
    );
    exec_sql(&f.db, &insert).await.unwrap();
    let result = audit::verify(f.store.as_ref(), &f.sealer).await;
    assert!(
        matches!(result, Err(VerifyError::Broken(ChainBreak::DuplicateEvent { seq: 6, first_seq: 2 }))),
        "{result:?}"
    );
}

/// Attack: the whole database is rolled back to an older backup. The older trail is intact by
/// itself; a checkpoint exported before the rollback catches it, whether the chain is shorter
/// than the checkpoint or was continued with other events.
async fn rolled_back_database_is_caught_by_a_checkpoint(engine: Engine) {
    let f = fixture(engine).await;
    for name in ["app-a", "app-b", "app-c"] {
        api_keys::create_app(f.store.as_ref(), &f.clock, Actor::Cli, name, scopes("users:read"))
            .await
            .unwrap();
    }
    audit::flush(f.store.as_ref()).await.unwrap();
    exec_sql(&f.db, "CREATE TABLE backup_events AS SELECT * FROM audit_events").await.unwrap();
    exec_sql(&f.db, "CREATE TABLE backup_head AS SELECT * FROM audit_head").await.unwrap();
    for name in ["alice", "bob"] {
        users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user(name)).await.unwrap();
    }
    let checkpoint = audit::checkpoint(f.store.as_ref(), f.clock.now()).await.unwrap();
    assert_eq!(checkpoint.seq, 5);
    assert_eq!(audit::verify_against(f.store.as_ref(), &f.sealer, Some(&checkpoint)).await.unwrap(), 5);

    exec_sql(&f.db, drop_audit_guard_sql(engine)).await.unwrap();
    exec_sql(
        &f.db,
        "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM backup_events;
         UPDATE audit_head SET seq = (SELECT seq FROM backup_head), hash = (SELECT hash FROM backup_head),
                               mac = (SELECT mac FROM backup_head);",
    )
    .await
    .unwrap();
    assert_eq!(
        audit::verify(f.store.as_ref(), &f.sealer).await.unwrap(),
        3,
        "undetectable without a checkpoint"
    );
    let result = audit::verify_against(f.store.as_ref(), &f.sealer, Some(&checkpoint)).await;
    assert!(
        matches!(result, Err(VerifyError::Checkpoint(CheckpointBreak::Shorter { last: 3, checkpoint: 5 }))),
        "{result:?}"
    );
    for name in ["mallory", "trent", "eve"] {
        users::create_user(f.store.as_ref(), &f.clock, Actor::System, new_user(name)).await.unwrap();
    }
    let result = audit::verify_against(f.store.as_ref(), &f.sealer, Some(&checkpoint)).await;
    assert!(
        matches!(result, Err(VerifyError::Checkpoint(CheckpointBreak::Diverged { seq: 5 }))),
        "{result:?}"
    );
}

on_both_engines!(
    emptied_audit_trail_is_a_break_not_an_empty_trail,
    captured_pending_event_cannot_be_chained_twice,
    verify_reports_a_duplicate_event_id,
    rolled_back_database_is_caught_by_a_checkpoint,
    migrations_are_idempotent_and_ready,
    app_keys_authenticate_until_revoked,
    duplicate_names_are_refused_without_partial_writes,
    failed_audit_write_fails_the_change,
    pending_events_are_sealed_until_chained,
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
