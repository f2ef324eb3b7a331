//! Challenges: creation (idempotency keys, superseding), lookups, and every edge of the state
//! machine, driven from the model's own table (`ChallengeState::can_become`).

use std::sync::Arc;

use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::fatigue::model::Policy;
use countersign::ids::{AppId, ChallengeId, UserId};
use countersign::store::{
    AppRecord, ChallengeRecord, ChallengeTransition, Conflict, DeviceRecord, Precondition, StoreError,
    UserRecord,
};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{CHALLENGE_TTL, Fixture, REDEEM_WINDOW, fixture, no_push};

/// A challenge is stored as given (the store fills in only `is_silent`) and found by its id and
/// by its app's idempotency key, which the app cannot use twice.
async fn challenges_round_trip_and_idempotency_keys_are_unique(engine: Engine) {
    let f = fixture(engine).await;
    let (app, other_app) = (f.app("portal").await, f.app("other").await);
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let record =
        ChallengeRecord { idempotency_key: Some("login-1".into()), ..f.challenge_record(&app, &alice) };
    let before = f.audit_len().await;
    let created = f.create_challenge(record.clone(), &[], &Policy::default()).await.unwrap();
    assert_eq!(created, record, "every field as given, timestamps to the microsecond");
    assert_eq!(f.audit_len().await, before + 1);
    assert_eq!(f.challenge_now(record.id).await, record);
    assert_eq!(f.store.challenge_by_idempotency_key(app.id, "login-1").await.unwrap(), Some(record.clone()));
    assert_eq!(f.store.challenge_by_idempotency_key(other_app.id, "login-1").await.unwrap(), None);
    assert_eq!(f.store.challenge_by_idempotency_key(app.id, "login-2").await.unwrap(), None);
    assert_eq!(f.store.challenge_by_id(ChallengeId::random()).await.unwrap(), None);

    let reused =
        ChallengeRecord { idempotency_key: Some("login-1".into()), ..f.challenge_record(&app, &bob) };
    let result = f.create_challenge(reused.clone(), &[], &Policy::default()).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::IdempotencyKey))), "{result:?}");
    assert_eq!(f.store.challenge_by_id(reused.id).await.unwrap(), None);
    assert_eq!(f.audit_len().await, before + 1, "nothing written for the refused one");

    let others =
        ChallengeRecord { idempotency_key: Some("login-1".into()), ..f.challenge_record(&other_app, &bob) };
    f.create_challenge(others.clone(), &[], &Policy::default()).await.unwrap();
    assert_eq!(f.store.challenge_by_idempotency_key(other_app.id, "login-1").await.unwrap(), Some(others));
}

/// A user's new challenge cancels their pending one in the same transaction, with its own
/// audit event, and counts it as unanswered.
async fn a_new_challenge_supersedes_the_pending_one(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let first = f.challenge(&app, &alice).await;
    let bobs = f.challenge(&app, &bob).await;
    f.advance(Duration::seconds(10)).await;
    let before = f.audit_len().await;
    let second = f.challenge(&app, &alice).await;

    let superseded = f.challenge_now(first.id).await;
    assert_eq!(superseded.state, ChallengeState::Cancelled);
    assert_eq!(superseded.decided_at, Some(second.created_at));
    assert_eq!(f.challenge_now(bobs.id).await.state, ChallengeState::Pending, "other users' stay");
    let events = f.audit_since(before).await;
    let mut actions: Vec<&str> = events.iter().map(|(action, ..)| action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(actions, ["challenge.cancelled", "challenge.created"]);
    let cancelled = events.iter().find(|(action, ..)| action == "challenge.cancelled").unwrap();
    assert_eq!(cancelled.2["challenge_id"], first.id.to_string());
    assert_eq!(f.store.pending_challenges(alice.id, f.now()).await.unwrap(), vec![second]);
    assert_eq!(f.store.push_state(alice.id).await.unwrap().unanswered, 1);
    assert_eq!(f.store.push_state(bob.id).await.unwrap().unanswered, 0);
}

/// Pending challenges are the user's open ones: not decided, not past their expiry.
async fn pending_challenges_are_the_open_ones(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let phone = f.device(&alice, no_push()).await;
    assert!(f.store.pending_challenges(alice.id, f.now()).await.unwrap().is_empty());
    let decided = f.challenge(&app, &alice).await;
    f.decide(&decided, &phone, ChallengeState::Denied).await.unwrap();
    assert!(f.store.pending_challenges(alice.id, f.now()).await.unwrap().is_empty(), "decided");
    let open = f.challenge(&app, &alice).await;
    f.challenge(&app, &bob).await;
    assert_eq!(f.store.pending_challenges(alice.id, f.now()).await.unwrap(), vec![open.clone()]);
    f.advance(CHALLENGE_TTL - Duration::SECOND).await;
    assert_eq!(f.store.pending_challenges(alice.id, f.now()).await.unwrap(), vec![open.clone()]);
    f.advance(Duration::SECOND).await;
    assert!(f.store.pending_challenges(alice.id, f.now()).await.unwrap().is_empty(), "at its expiry");
    assert_eq!(f.challenge_now(open.id).await.state, ChallengeState::Pending, "reading expires nothing");
}

async fn recent_number_tags_are_newest_first(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let mut tags = Vec::new();
    for i in 0u8..3 {
        let record = ChallengeRecord { number_tag: vec![i; 32], ..f.challenge_record(&app, &alice) };
        f.create_challenge(record, &[], &Policy::default()).await.unwrap();
        tags.push(vec![i; 32]);
        f.advance(Duration::seconds(1)).await;
    }
    f.challenge(&app, &bob).await;
    assert_eq!(
        f.store.recent_number_tags(alice.id, 2).await.unwrap(),
        vec![tags[2].clone(), tags[1].clone()]
    );
    assert_eq!(f.store.recent_number_tags(alice.id, 10).await.unwrap().len(), 3);
    assert!(f.store.recent_number_tags(UserId::random(), 10).await.unwrap().is_empty());
}

/// One challenge, its app, user and device: a cast of its own for each edge, so no edge sees
/// another's fatigue standing.
struct Cast {
    app: AppRecord,
    user: UserRecord,
    device: DeviceRecord,
    challenge: ChallengeRecord,
}

async fn cast(f: &Fixture, app: &AppRecord, name: &str) -> Cast {
    let app = app.clone();
    let user = f.user(name).await;
    let device = f.device(&user, no_push()).await;
    let challenge = f.challenge(&app, &user).await;
    Cast { app, user, device, challenge }
}

/// The store operation that takes a challenge to `to`: a device's answer, the app's cancel or
/// redeem, or expiry (which moves time past the challenge's expiry first). `None` for
/// `pending`, which no operation leads to.
async fn move_to(
    f: &Fixture,
    cast: &Cast,
    to: ChallengeState,
) -> Option<Result<ChallengeRecord, StoreError>> {
    use ChallengeState::*;
    Some(match to {
        Pending => return None,
        Approved | Denied | DeniedWrongNumber | Reported => f.decide(&cast.challenge, &cast.device, to).await,
        Cancelled => f.transition(&cast.challenge, ChallengeTransition::Cancel { app_id: cast.app.id }).await,
        Redeemed => {
            let redeem = ChallengeTransition::Redeem { app_id: cast.app.id, window: REDEEM_WINDOW };
            f.transition(&cast.challenge, redeem).await
        }
        Expired => {
            let due = cast.challenge.expires_at - f.now();
            if due > Duration::ZERO {
                f.advance(due).await;
            }
            f.transition(&cast.challenge, ChallengeTransition::Expire).await
        }
    })
}

/// Brings the cast's pending challenge to `state` through the allowed edges.
async fn bring_to(f: &Fixture, cast: &Cast, state: ChallengeState) {
    if state == ChallengeState::Redeemed {
        move_to(f, cast, ChallengeState::Approved).await.unwrap().unwrap();
    }
    if state != ChallengeState::Pending {
        let reached = move_to(f, cast, state).await.unwrap().unwrap();
        assert_eq!(reached.state, state);
    }
}

/// The refusal each kind of operation answers with when the challenge is not in a state it may
/// leave that way: a device's answer finds it not pending, an app or timer transition finds no
/// such challenge to move.
fn is_refusal(to: ChallengeState, error: &StoreError) -> bool {
    match to {
        ChallengeState::Approved
        | ChallengeState::Denied
        | ChallengeState::DeniedWrongNumber
        | ChallengeState::Reported => {
            matches!(error, StoreError::PreconditionFailed(Precondition::ChallengeNotPending))
        }
        _ => matches!(error, StoreError::NotFound),
    }
}

/// Every (from, to) of the state machine: each edge the model allows is taken exactly once
/// (a second attempt is refused), each edge it does not allow is refused with the operation's
/// refusal and changes nothing — not the challenge, the device counter, the user's standing,
/// nor the audit trail.
async fn every_state_edge_follows_the_model(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let mut failures = Vec::new();
    let mut edges = 0;
    for (i, from) in ChallengeState::ALL.into_iter().enumerate() {
        for (j, to) in ChallengeState::ALL.into_iter().enumerate() {
            let cast = cast(&f, &app, &format!("edge-{i}-{j}")).await;
            bring_to(&f, &cast, from).await;
            let before = f.challenge_now(cast.challenge.id).await;
            let device_before = f.device_now(cast.device.id).await;
            let standing_before = f.store.push_state(cast.user.id).await.unwrap();
            let audit_before = f.audit_len().await;
            let Some(result) = move_to(&f, &cast, to).await else {
                assert!(!from.can_become(to), "the model has an edge {from} -> {to} no operation takes");
                continue;
            };
            edges += 1;
            let edge = format!("{from} -> {to}");
            if from.can_become(to) {
                match result {
                    Ok(moved) if moved.state == to => {
                        if f.challenge_now(moved.id).await != moved {
                            failures.push(format!("{edge}: the stored challenge is not the one returned"));
                        }
                    }
                    other => failures.push(format!("{edge} is an edge, yet: {other:?}")),
                }
                if f.audit_len().await != audit_before + 1 {
                    failures.push(format!("{edge}: not exactly one audit event"));
                }
                let again = move_to(&f, &cast, to).await.unwrap();
                if !again.as_ref().is_err_and(|e| is_refusal(to, e)) {
                    failures.push(format!("{edge} taken twice: {again:?}"));
                }
                if f.audit_len().await != audit_before + 1 {
                    failures.push(format!("{edge}: the second attempt wrote an audit event"));
                }
                continue;
            }
            if !result.as_ref().is_err_and(|e| is_refusal(to, e)) {
                failures.push(format!("{edge} is no edge, yet: {result:?}"));
            }
            if f.challenge_now(cast.challenge.id).await != before {
                failures.push(format!("{edge} (no edge) changed the challenge"));
            }
            if f.device_now(cast.device.id).await != device_before {
                failures.push(format!("{edge} (no edge) moved the device counter"));
            }
            if f.store.push_state(cast.user.id).await.unwrap() != standing_before {
                failures.push(format!("{edge} (no edge) moved the user's standing"));
            }
            if f.audit_len().await != audit_before {
                failures.push(format!("{edge} (no edge) wrote an audit event"));
            }
        }
    }
    assert_eq!(edges, 8 * 7, "every pair with an operation was tried");
    assert!(failures.is_empty(), "{engine:?}:\n{}", failures.join("\n"));
}

/// A device's answer needs an active device whose counter increases and an open challenge; it
/// records who decided when. A refused answer moves neither the challenge nor the counter.
async fn a_device_answer_needs_an_active_device_and_a_new_counter(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, no_push()).await;
    let challenge = f.challenge(&app, &alice).await;
    f.advance(Duration::seconds(3)).await;
    let before = f.audit_len().await;
    let refused = |result: Result<ChallengeRecord, StoreError>, expected: Precondition| {
        assert!(
            matches!(result, Err(StoreError::PreconditionFailed(p)) if p == expected),
            "{expected:?}: {result:?}"
        );
    };

    refused(
        f.decide_with(&challenge, &phone, 0, ChallengeState::Approved).await,
        Precondition::CounterNotIncreasing,
    );
    let stranger = f.device_record(&alice, no_push());
    refused(
        f.decide_with(&challenge, &stranger, 5, ChallengeState::Approved).await,
        Precondition::DeviceInactive,
    );
    assert_eq!(f.challenge_now(challenge.id).await, challenge);
    assert_eq!(f.audit_len().await, before);

    let decided = f.decide_with(&challenge, &phone, 10, ChallengeState::Approved).await.unwrap();
    assert_eq!(decided.state, ChallengeState::Approved);
    assert_eq!(decided.decided_at, Some(f.now()));
    assert_eq!(decided.decided_by_device, Some(phone.id));
    assert_eq!(f.challenge_now(challenge.id).await, decided);
    assert_eq!(f.device_now(phone.id).await.last_counter, 10);
    assert_eq!(f.audit_len().await, before + 1);

    refused(
        f.decide_with(&challenge, &phone, 11, ChallengeState::Denied).await,
        Precondition::ChallengeNotPending,
    );
    assert_eq!(f.device_now(phone.id).await.last_counter, 10, "a refused answer keeps the counter");

    let late = f.challenge(&app, &alice).await;
    f.advance(CHALLENGE_TTL).await;
    refused(
        f.decide_with(&late, &phone, 12, ChallengeState::Approved).await,
        Precondition::ChallengeNotPending,
    );
    assert_eq!(f.challenge_now(late.id).await, late, "still pending, though past its expiry");
    assert_eq!(f.device_now(phone.id).await.last_counter, 10);

    let open = f.challenge(&app, &alice).await;
    let event = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    f.store.revoke_device(phone.id, f.now(), event).await.unwrap();
    let before = f.audit_len().await;
    refused(f.decide_with(&open, &phone, 13, ChallengeState::Approved).await, Precondition::DeviceInactive);
    assert_eq!(f.challenge_now(open.id).await, open);
    assert_eq!(f.audit_len().await, before);
}

/// An answer names the challenge's user: one naming another user decides nothing (that user's
/// standing must not move for someone else's challenge either).
async fn an_answer_for_another_users_challenge_decides_nothing(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, mallory) = (f.user("alice").await, f.user("mallory").await);
    let mallorys = f.device(&mallory, no_push()).await;
    let challenge = f.challenge(&app, &alice).await;
    let before = f.audit_len().await;
    let decision = countersign::store::DeviceDecision {
        challenge: challenge.id,
        user: mallory.id,
        device: mallorys.id,
        counter: 1,
        to: ChallengeState::Approved,
    };
    let event = f.event(Action::Challenge(ChallengeState::Approved), Subject::Challenge(challenge.id));
    let result = f.store.decide_challenge(decision, f.now(), event, &Policy::default()).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "{result:?}"
    );
    assert_eq!(f.challenge_now(challenge.id).await, challenge);
    assert_eq!(f.device_now(mallorys.id).await.last_counter, 0);
    assert_eq!(f.audit_len().await, before);
}

/// Only the app that created a challenge cancels or redeems it; a redemption only within the
/// window after the approval; expiry only once due.
async fn app_and_timer_transitions_check_app_window_and_time(engine: Engine) {
    let f = fixture(engine).await;
    let (app, other_app) = (f.app("portal").await, f.app("other").await);
    let alice = f.user("alice").await;
    let phone = f.device(&alice, no_push()).await;
    let not_found = |result: Result<ChallengeRecord, StoreError>, what: &str| {
        assert!(matches!(result, Err(StoreError::NotFound)), "{what}: {result:?}");
    };

    let cancelled = f.challenge(&app, &alice).await;
    let before = f.audit_len().await;
    not_found(
        f.transition(&cancelled, ChallengeTransition::Cancel { app_id: other_app.id }).await,
        "other app",
    );
    not_found(f.transition(&cancelled, ChallengeTransition::Expire).await, "not due");
    let unknown = ChallengeRecord { id: ChallengeId::random(), ..cancelled.clone() };
    not_found(f.transition(&unknown, ChallengeTransition::Cancel { app_id: app.id }).await, "unknown");
    assert_eq!(f.challenge_now(cancelled.id).await, cancelled);
    assert_eq!(f.audit_len().await, before);
    f.advance(Duration::seconds(2)).await;
    let moved = f.transition(&cancelled, ChallengeTransition::Cancel { app_id: app.id }).await.unwrap();
    assert_eq!((moved.state, moved.decided_at), (ChallengeState::Cancelled, Some(f.now())));
    assert_eq!(f.audit_len().await, before + 1);

    let redeem = |app_id: AppId| ChallengeTransition::Redeem { app_id, window: REDEEM_WINDOW };
    let stale = f.challenge(&app, &alice).await;
    f.decide(&stale, &phone, ChallengeState::Approved).await.unwrap();
    not_found(f.transition(&stale, redeem(other_app.id)).await, "other app");
    f.advance(REDEEM_WINDOW).await;
    not_found(f.transition(&stale, redeem(app.id)).await, "at the end of the window");
    assert_eq!(f.challenge_now(stale.id).await.state, ChallengeState::Approved);

    let fresh = f.challenge(&app, &alice).await;
    let approved = f.decide(&fresh, &phone, ChallengeState::Approved).await.unwrap();
    f.advance(REDEEM_WINDOW - Duration::SECOND).await;
    let redeemed = f.transition(&fresh, redeem(app.id)).await.unwrap();
    assert_eq!(redeemed.state, ChallengeState::Redeemed);
    assert_eq!(redeemed.redeemed_at, Some(f.now()));
    assert_eq!(redeemed.decided_at, approved.decided_at, "the approval's time stays");

    let due = f.challenge(&app, &alice).await;
    f.advance(CHALLENGE_TTL - Duration::SECOND).await;
    not_found(f.transition(&due, ChallengeTransition::Expire).await, "a second before its expiry");
    f.advance(Duration::SECOND).await;
    let expired = f.transition(&due, ChallengeTransition::Expire).await.unwrap();
    assert_eq!((expired.state, expired.decided_at), (ChallengeState::Expired, Some(due.expires_at)));
}

fn expired_event(challenge: &ChallengeRecord) -> AuditEvent {
    AuditEvent::new(
        challenge.expires_at,
        Actor::System,
        Action::Challenge(ChallengeState::Expired),
        Subject::Challenge(challenge.id),
    )
}

/// The expiry sweep expires due pending challenges, soonest due first, `limit` at a time, each
/// with its audit event and a timeout on its user's ladder; it leaves the rest alone.
async fn due_challenges_expire_in_batches(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob, carol) = (f.user("alice").await, f.user("bob").await, f.user("carol").await);
    let carols_phone = f.device(&carol, no_push()).await;
    let first = f.challenge(&app, &alice).await;
    f.advance(Duration::seconds(10)).await;
    let second = f.challenge(&app, &bob).await;
    let answered = f.challenge(&app, &carol).await;
    f.decide(&answered, &carols_phone, ChallengeState::Denied).await.unwrap();
    f.advance(Duration::seconds(10)).await;
    let third = f.challenge(&app, &carol).await;
    f.advance(CHALLENGE_TTL - Duration::seconds(5)).await;
    let before = f.audit_len().await;
    let policy = Policy::default();

    let expired = f.store.expire_due_challenges(f.now(), 1, &expired_event, &policy).await.unwrap();
    assert_eq!(expired.iter().map(|c| c.id).collect::<Vec<_>>(), vec![first.id], "soonest due first");
    assert_eq!(expired[0].decided_at, Some(first.expires_at));
    assert_eq!(f.challenge_now(first.id).await, expired[0]);
    let expired = f.store.expire_due_challenges(f.now(), 10, &expired_event, &policy).await.unwrap();
    assert_eq!(expired.iter().map(|c| c.id).collect::<Vec<_>>(), vec![second.id]);
    assert!(f.store.expire_due_challenges(f.now(), 10, &expired_event, &policy).await.unwrap().is_empty());
    assert_eq!(f.challenge_now(third.id).await.state, ChallengeState::Pending, "not due yet");
    assert_eq!(f.challenge_now(answered.id).await.state, ChallengeState::Denied);

    let events = f.audit_since(before).await;
    let subjects: Vec<&str> = events.iter().map(|(_, subject, _)| subject.as_str()).collect();
    assert_eq!(subjects, [format!("challenge:{}", first.id), format!("challenge:{}", second.id)]);
    assert!(events.iter().all(|(action, ..)| action == "challenge.expired"));
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert_eq!((standing.consecutive_failures, standing.unanswered), (1, 1), "a timeout");
}

/// Two instances sweeping together expire each due challenge once.
async fn concurrent_sweeps_expire_each_challenge_once(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let mut due = Vec::new();
    for i in 0..6 {
        let user = f.user(&format!("user{i}")).await;
        due.push(f.challenge(&app, &user).await.id);
    }
    f.advance(CHALLENGE_TTL).await;
    let before = f.audit_len().await;
    let now = f.now();
    let sweeps = f
        .race(4, |_, store| async move {
            store.expire_due_challenges(now, 10, &expired_event, &Policy::default()).await.unwrap()
        })
        .await;
    let mut expired: Vec<ChallengeId> = sweeps.into_iter().flatten().map(|c| c.id).collect();
    expired.sort();
    due.sort();
    assert_eq!(expired, due, "each once");
    assert_eq!(f.audit_len().await, before + 6);
}

/// Engines shared by many instances tell every watcher which challenge changed; a
/// single-instance engine has nobody else to tell and returns at once.
async fn watchers_hear_of_changes_made_elsewhere(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, no_push()).await;
    let (sender, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let on_change = Arc::new(move |id: ChallengeId| {
        let _ = sender.send(id);
    });
    f.store.watch_challenges(on_change).await.unwrap();
    let challenge = f.challenge(&app, &alice).await;
    let elsewhere = f.another_instance().await;
    let decision = countersign::store::DeviceDecision {
        challenge: challenge.id,
        user: alice.id,
        device: phone.id,
        counter: 1,
        to: ChallengeState::Approved,
    };
    let event = f.event(Action::Challenge(ChallengeState::Approved), Subject::Challenge(challenge.id));
    elsewhere.decide_challenge(decision, f.now(), event, &Policy::default()).await.unwrap();
    match engine {
        Engine::Postgres => {
            let id = tokio::time::timeout(std::time::Duration::from_secs(10), heard.recv()).await;
            assert_eq!(id.unwrap(), Some(challenge.id));
        }
        Engine::Sqlite => assert!(heard.try_recv().is_err(), "one instance per file: nothing to hear"),
    }
}

on_both_engines!(
    challenges_round_trip_and_idempotency_keys_are_unique,
    a_new_challenge_supersedes_the_pending_one,
    pending_challenges_are_the_open_ones,
    recent_number_tags_are_newest_first,
    every_state_edge_follows_the_model,
    a_device_answer_needs_an_active_device_and_a_new_counter,
    an_answer_for_another_users_challenge_decides_nothing,
    app_and_timer_transitions_check_app_window_and_time,
    due_challenges_expire_in_batches,
    concurrent_sweeps_expire_each_challenge_once,
    watchers_hear_of_changes_made_elsewhere,
);
