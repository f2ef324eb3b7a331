//! Fatigue: the user's push standing, its changes by compare-and-set on the standing's version
//! (a decision made from a stale read is made again, never written), refused prompts and
//! signals, the dashboard's list, and the ladder the store moves when challenges end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use countersign::alerts::AlertKind;
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::fatigue::model::{Availability, Policy, PushState, Refusal};
use countersign::ids::{DeviceId, UserId};
use countersign::store::{
    AlertRecord, ChallengeRecord, ChallengeTransition, Precondition, StandingUpdate, StoreError, UserRecord,
};
use countersign_e2e::{Engine, break_audit_writes_sql, exec_sql};
use time::Duration;

use super::support::{Fixture, fixture, no_push, push};

/// Every alert queued so far, oldest first.
pub async fn alerts(f: &Fixture) -> Vec<AlertRecord> {
    let mut alerts = Vec::new();
    let mut after = 0;
    while let Some(alert) = f.store.next_alert(after).await.unwrap() {
        after = alert.id;
        alerts.push(alert);
    }
    alerts
}

/// Sets `user`'s standing to `state` (with an audit event), as an admin's change would.
async fn set_standing(f: &Fixture, user: &UserRecord, state: PushState) {
    let event = f.event(Action::PushUnfrozen, Subject::User(user.id));
    let change = move |_: &PushState| (state.clone(), event.clone());
    f.store.change_push_state(user.id, f.now(), &change).await.unwrap();
}

fn refusal(result: Result<ChallengeRecord, StoreError>) -> Refusal {
    match result {
        Err(StoreError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal: {other:?}"),
    }
}

async fn the_standing_is_default_until_changed(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    assert_eq!(f.store.push_state(alice.id).await.unwrap(), PushState::default());
    assert_eq!(f.store.push_state(UserId::random()).await.unwrap(), PushState::default());
    let before = f.audit_len().await;
    let until = f.now() + Duration::minutes(15);
    let change = |state: &PushState| {
        let next = PushState {
            consecutive_failures: state.consecutive_failures + 1,
            frozen_until: Some(until),
            reason: Some("manual".into()),
            ..state.clone()
        };
        (next, f.event(Action::PushUnfrozen, Subject::User(alice.id)))
    };
    let (was, is) = f.store.change_push_state(alice.id, f.now(), &change).await.unwrap();
    assert_eq!(was, PushState::default());
    assert_eq!(
        (is.consecutive_failures, is.frozen_until, is.reason.as_deref()),
        (1, Some(until), Some("manual"))
    );
    assert_eq!(f.store.push_state(alice.id).await.unwrap(), is, "stored, to the microsecond");
    let (was_again, is_again) = f.store.change_push_state(alice.id, f.now(), &change).await.unwrap();
    assert_eq!(was_again, is, "the change sees the standing as stored");
    assert_eq!(is_again.consecutive_failures, 2);
    assert_eq!(f.audit_len().await, before + 2);
}

/// Changes racing on two instances each see the one before: none is lost.
async fn concurrent_standing_changes_are_serialised(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let before = f.audit_len().await;
    let (now, user) = (f.now(), alice.id);
    let changes = f
        .race(12, |_, store| async move {
            let change = move |state: &PushState| {
                let next =
                    PushState { consecutive_failures: state.consecutive_failures + 1, ..state.clone() };
                (next, AuditEvent::new(now, Actor::System, Action::PushUnfrozen, Subject::User(user)))
            };
            store.change_push_state(user, now, &change).await.unwrap()
        })
        .await;
    let mut seen = Vec::new();
    for (was, is) in changes {
        assert_eq!(is.consecutive_failures, was.consecutive_failures + 1);
        seen.push(was.consecutive_failures);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<_>>(), "each change saw a different standing");
    assert_eq!(f.store.push_state(alice.id).await.unwrap().consecutive_failures, 12);
    assert_eq!(f.audit_len().await, before + 12);
}

/// Refused prompts count on an attack incident; the first of an incident raises one
/// `push_bombing` alert; a refusal after the incident window opens a new incident.
async fn refused_prompts_open_one_incident_at_a_time(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let policy = Policy::default();
    let before = f.audit_len().await;
    let refuse = || {
        let event = f.event(Action::PromptRefused, Subject::User(alice.id));
        f.store.record_refused_prompt(alice.id, "budget_exhausted", f.now(), event, &policy)
    };
    let opened_at = f.now();
    assert!(refuse().await.unwrap(), "the first refusal opens an incident");
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert_eq!(
        (standing.refused_prompts, standing.under_attack_since, standing.last_refused_at),
        (1, Some(opened_at), Some(opened_at))
    );
    let raised = alerts(&f).await;
    assert_eq!(raised.len(), 1);
    assert_eq!((raised[0].kind.as_str(), raised[0].created_at), ("push_bombing", opened_at));
    assert_eq!(raised[0].subject, format!("user:{}", alice.id));
    let details: serde_json::Value = serde_json::from_str(&raised[0].details).unwrap();
    assert_eq!(details["reason"], "budget_exhausted");

    f.advance(Duration::hours(1)).await;
    assert!(!refuse().await.unwrap(), "the same incident");
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert_eq!((standing.refused_prompts, standing.under_attack_since), (2, Some(opened_at)));
    assert_eq!(standing.last_refused_at, Some(f.now()));
    assert_eq!(alerts(&f).await.len(), 1, "one alert per incident");
    let listed = f.store.troubled_users(10).await.unwrap();
    assert_eq!(listed.iter().map(|(user, _)| user.id).collect::<Vec<_>>(), vec![alice.id], "under attack");

    f.advance(policy.incident_window).await;
    assert!(refuse().await.unwrap(), "a new incident");
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert_eq!((standing.refused_prompts, standing.under_attack_since), (1, Some(f.now())));
    assert_eq!(alerts(&f).await.len(), 2);
    assert_eq!(f.audit_len().await, before + 3);
}

/// A signal's alert and audit event are written together or not at all; so are a refused
/// prompt's standing, alert and event.
async fn signals_and_refusals_are_atomic_with_their_audit(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let device = DeviceId::random();
    let before = f.audit_len().await;
    let signal = || f.event(Action::PossibleClone, Subject::Device(device));
    f.store
        .record_signal(
            signal(),
            (AlertKind::PossibleClone, &Subject::Device(device), r#"{"counter":3}"#),
            f.now(),
        )
        .await
        .unwrap();
    let raised = alerts(&f).await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (
            raised[0].kind.as_str(),
            raised[0].subject.clone(),
            raised[0].details.as_str(),
            raised[0].created_at
        ),
        ("possible_clone", format!("device:{device}"), r#"{"counter":3}"#, f.now())
    );
    assert_eq!(f.audit_len().await, before + 1);

    exec_sql(&f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result = f
        .store
        .record_signal(signal(), (AlertKind::PossibleClone, &Subject::Device(device), "{}"), f.now())
        .await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    let event = f.event(Action::PromptRefused, Subject::User(alice.id));
    let result =
        f.store.record_refused_prompt(alice.id, "budget_exhausted", f.now(), event, &Policy::default()).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(alerts(&f).await.len(), 1, "no alert without its audit event");
    assert_eq!(f.store.push_state(alice.id).await.unwrap(), PushState::default(), "the standing stayed");
}

/// The dashboard lists users whose standing is not clean, worst first: hard-locked, in admin
/// review, needing a strong factor, then by consecutive failures. Deleted users are not listed.
async fn troubled_users_are_listed_worst_first(engine: Engine) {
    let f = fixture(engine).await;
    let mut expected = Vec::new();
    let standings = [
        ("one-failure", PushState { consecutive_failures: 1, ..PushState::default() }),
        ("strong", PushState { needs_strong_factor: true, consecutive_failures: 1, ..PushState::default() }),
        ("locked", PushState { hard_locked: true, ..PushState::default() }),
        ("three-failures", PushState { consecutive_failures: 3, ..PushState::default() }),
        ("review", PushState { needs_admin_review: true, ..PushState::default() }),
    ];
    let mut by_name = std::collections::HashMap::new();
    for (name, standing) in standings.clone() {
        let user = f.user(name).await;
        set_standing(&f, &user, standing).await;
        by_name.insert(name, user);
    }
    for name in ["locked", "review", "strong", "three-failures", "one-failure"] {
        expected.push(by_name[name].id);
    }
    let frozen = f.user("frozen").await;
    set_standing(&f, &frozen, PushState { frozen_until: Some(f.now()), ..PushState::default() }).await;
    let ignoring = f.user("ignoring").await;
    set_standing(&f, &ignoring, PushState { unanswered: 2, ..PushState::default() }).await;
    let quiet = f.user("quiet").await;
    set_standing(&f, &quiet, PushState { unanswered: 1, ..PushState::default() }).await;
    let clean = f.user("clean").await;
    set_standing(&f, &clean, PushState::default()).await;
    // Troubled, then deleted: not listed.
    let gone = f.user("gone").await;
    set_standing(
        &f,
        &gone,
        PushState { consecutive_failures: 50, frozen_until: Some(f.now()), ..PushState::default() },
    )
    .await;
    let event = f.event(Action::UserDeleted, Subject::User(gone.id));
    f.store.delete_user(gone.id, f.now(), event).await.unwrap();

    let listed = f.store.troubled_users(100).await.unwrap();
    let ids: Vec<UserId> = listed.iter().map(|(user, _)| user.id).collect();
    assert_eq!(ids[..5], expected[..], "worst first");
    let mut tail = ids[5..].to_vec();
    tail.sort();
    let mut expected_tail = vec![frozen.id, ignoring.id];
    expected_tail.sort();
    assert_eq!(tail, expected_tail, "then the rest; the clean, the quiet and the deleted are not listed");
    let (user, standing) = &listed[0];
    assert_eq!((user.username.as_str(), standing.hard_locked), ("locked", true), "with their standing");
    let top: Vec<UserId> = f.store.troubled_users(3).await.unwrap().into_iter().map(|(u, _)| u.id).collect();
    assert_eq!(top, expected[..3]);
}

/// The ladder moves with the challenges the store ends: a wrong number freezes push (and
/// alerts), a second one within a day needs a stronger factor; a frozen user is refused new
/// prompts, with nothing written.
async fn wrong_numbers_freeze_push(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, no_push()).await;
    let policy = Policy::default();
    let first = f.challenge(&app, &alice).await;
    f.advance(Duration::seconds(5)).await;
    f.decide(&first, &phone, ChallengeState::DeniedWrongNumber).await.unwrap();
    let at = f.now();
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert_eq!(standing.consecutive_failures, 1);
    assert_eq!(standing.last_wrong_number_at, Some(at));
    assert_eq!(standing.frozen_until, Some(at + policy.freeze));
    assert_eq!(standing.reason.as_deref(), Some("wrong_number"));
    let raised = alerts(&f).await;
    assert_eq!(raised.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(), ["push_frozen"]);
    assert_eq!(raised[0].subject, format!("user:{}", alice.id));

    f.advance(Duration::minutes(1)).await;
    let before = f.audit_len().await;
    let record = f.challenge_record(&app, &alice);
    let expected = Refusal::PushUnavailable(Availability::Frozen {
        until: Some(at + policy.freeze),
        reason: "wrong_number".into(),
    });
    assert_eq!(refusal(f.create_challenge(record.clone(), &[phone.id], &policy).await), expected);
    assert_eq!(f.store.challenge_by_id(record.id).await.unwrap(), None, "nothing written");
    assert_eq!(f.audit_len().await, before);

    f.advance(policy.freeze).await;
    let second = f.challenge(&app, &alice).await;
    f.decide(&second, &phone, ChallengeState::DeniedWrongNumber).await.unwrap();
    let standing = f.store.push_state(alice.id).await.unwrap();
    assert!(standing.needs_strong_factor);
    assert_eq!(standing.reason.as_deref(), Some("second_wrong_number"));
    let kinds: Vec<String> = alerts(&f).await.into_iter().map(|a| a.kind).collect();
    assert_eq!(kinds, ["push_frozen", "push_frozen_until_strong_factor"]);
    let expected =
        Refusal::PushUnavailable(Availability::Frozen { until: None, reason: "second_wrong_number".into() });
    assert_eq!(refusal(f.create_challenge(f.challenge_record(&app, &alice), &[], &policy).await), expected);
}

/// Denials and timeouts count up to a freeze, an approval resets the count, a report puts the
/// user in admin review; each escalation raises its alert once.
async fn answers_move_the_ladder(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, no_push()).await;
    let policy = Policy::default();
    let answer = |to: ChallengeState| {
        let (f, app, alice, phone) = (&f, &app, &alice, &phone);
        async move {
            let challenge = f.challenge(app, alice).await;
            f.advance(Duration::seconds(1)).await;
            f.decide(&challenge, phone, to).await.unwrap();
            f.store.push_state(alice.id).await.unwrap()
        }
    };
    assert_eq!(answer(ChallengeState::Denied).await.consecutive_failures, 1);
    let timed_out = f.challenge(&app, &alice).await;
    f.advance(Duration::minutes(2)).await;
    f.transition(&timed_out, ChallengeTransition::Expire).await.unwrap();
    assert_eq!(f.store.push_state(alice.id).await.unwrap().consecutive_failures, 2, "a timeout counts");
    assert!(alerts(&f).await.is_empty());
    let standing = answer(ChallengeState::Denied).await;
    assert_eq!((standing.consecutive_failures, standing.freezes), (3, 1));
    assert_eq!(standing.frozen_until, Some(f.now() + policy.freeze));
    assert_eq!(standing.reason.as_deref(), Some("consecutive_failures"));
    assert_eq!(alerts(&f).await.into_iter().map(|a| a.kind).collect::<Vec<_>>(), ["push_frozen"]);

    f.advance(policy.freeze).await;
    let standing = answer(ChallengeState::Approved).await;
    assert_eq!((standing.consecutive_failures, standing.freezes, standing.unanswered), (0, 0, 0));
    let standing = answer(ChallengeState::Reported).await;
    assert!(standing.needs_admin_review);
    assert_eq!(standing.reason.as_deref(), Some("reported_not_me"));
    let kinds: Vec<String> = alerts(&f).await.into_iter().map(|a| a.kind).collect();
    assert_eq!(kinds, ["push_frozen", "push_quarantined"]);
}

/// Prompts that end unanswered (cancelled, superseded) make the next prompts silent: no push
/// jobs, and the creation's audit event says so.
async fn unanswered_prompts_make_the_next_one_silent(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, push("apns", "alice-phone")).await;
    let policy = Policy::default();
    let mut audible = Vec::new();
    for _ in 0..2 {
        let challenge =
            f.create_challenge(f.challenge_record(&app, &alice), &[phone.id], &policy).await.unwrap();
        assert!(!challenge.is_silent);
        audible.push(challenge.id);
        f.advance(Duration::seconds(1)).await;
        f.transition(&challenge, ChallengeTransition::Cancel { app_id: app.id }).await.unwrap();
    }
    assert_eq!(f.store.push_state(alice.id).await.unwrap().unanswered, 2);
    let before = f.audit_len().await;
    let silent = f.create_challenge(f.challenge_record(&app, &alice), &[phone.id], &policy).await.unwrap();
    assert!(silent.is_silent);
    assert_eq!(f.challenge_now(silent.id).await, silent);
    let events = f.audit_since(before).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), &events[0].2["silent"]),
        ("challenge.created", &serde_json::json!(true))
    );
    let jobs = f.store.claim_push_jobs(f.now(), Duration::seconds(30), 10).await.unwrap();
    let mut pushed: Vec<_> = jobs.iter().map(|job| job.challenge_id).collect();
    pushed.sort();
    audible.sort();
    assert_eq!(pushed, audible, "no push job for the silent prompt");
}

/// The budget (prompts per user per window) and the spray limit (users per source network)
/// refuse a prompt before anything is written; the superseded prompt stays pending.
async fn budget_and_spray_refuse_prompts_before_writing(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let policy = Policy { push_budget: 2, spray_users: 2, ..Policy::default() };
    let first = f.create_challenge(f.challenge_record(&app, &alice), &[], &policy).await.unwrap();
    f.advance(Duration::seconds(1)).await;
    let second = f.create_challenge(f.challenge_record(&app, &alice), &[], &policy).await.unwrap();
    f.advance(Duration::seconds(1)).await;
    let before = f.audit_len().await;
    let third = f.challenge_record(&app, &alice);
    let expected = Refusal::BudgetExhausted { retry_at: first.created_at + policy.budget_window };
    assert_eq!(refusal(f.create_challenge(third.clone(), &[], &policy).await), expected);
    assert_eq!(f.store.challenge_by_id(third.id).await.unwrap(), None);
    assert_eq!(f.challenge_now(second.id).await.state, ChallengeState::Pending, "not superseded");
    assert_eq!(f.audit_len().await, before);

    let network = "198.51.100.0/24".to_owned();
    let from_network = |user: &UserRecord| ChallengeRecord {
        ip: "198.51.100.7".into(),
        source_prefix: Some(network.clone()),
        ..f.challenge_record(&app, user)
    };
    for name in ["bob", "carol"] {
        let user = f.user(name).await;
        f.create_challenge(from_network(&user), &[], &policy).await.unwrap();
    }
    let dave = f.user("dave").await;
    let before = f.audit_len().await;
    let sprayed = from_network(&dave);
    let expected = Refusal::SourceThrottled { network: network.clone(), users: 2 };
    assert_eq!(refusal(f.create_challenge(sprayed.clone(), &[], &policy).await), expected);
    assert_eq!(f.store.challenge_by_id(sprayed.id).await.unwrap(), None);
    assert_eq!(f.audit_len().await, before);
    f.advance(policy.spray_window).await;
    let allowed = f.create_challenge(from_network(&dave), &[], &policy).await.unwrap();
    assert_eq!(f.challenge_now(allowed.id).await.source_prefix, Some(network), "the spray window has passed");
}

/// One refused prompt for `user`, as the challenge service records it.
async fn refuse_a_prompt(f: &Fixture, user: UserId) {
    let event = f.event(Action::PromptRefused, Subject::User(user));
    f.store
        .record_refused_prompt(user, "push_rate_limited", f.now(), event, &Policy::default())
        .await
        .unwrap();
}

fn alert_kinds(alerts: Vec<AlertRecord>) -> Vec<String> {
    alerts.into_iter().map(|alert| alert.kind).collect()
}

/// A write decided from a stale read of the standing is refused whole: no state, audit or alert.
async fn a_write_from_a_stale_read_is_refused(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let read = f.store.standing(alice.id, f.now()).await.unwrap();
    refuse_a_prompt(&f, alice.id).await;
    let pending = f.store.audit_pending_count().await.unwrap();

    let stale = PushState { needs_admin_review: true, ..read.state.clone() };
    let audit = f.event(Action::PromptRefused, Subject::User(alice.id));
    let update = StandingUpdate {
        user: alice.id,
        version: read.version,
        next: &stale,
        now: f.now(),
        audit: &audit,
        alert: Some((AlertKind::PushQuarantined, "from a stale read")),
    };
    assert!(!f.store.apply_standing(update).await.unwrap(), "the version moved: the write is refused");

    let current = f.store.push_state(alice.id).await.unwrap();
    assert_eq!(current.refused_prompts, 1, "the change that came first stands");
    assert!(!current.needs_admin_review, "nothing of the stale decision landed");
    assert_eq!(f.store.audit_pending_count().await.unwrap(), pending, "no audit event for it either");
    assert_eq!(alert_kinds(alerts(&f).await), ["push_bombing"], "nor its alert");

    let fresh = f.store.standing(alice.id, f.now()).await.unwrap();
    assert!(fresh.version > read.version);
    let update = StandingUpdate { version: fresh.version, next: &stale, alert: None, ..update };
    assert!(f.store.apply_standing(update).await.unwrap(), "a write from the current version applies");
    assert!(f.store.push_state(alice.id).await.unwrap().needs_admin_review);
    assert_eq!(f.store.audit_pending_count().await.unwrap(), pending + 1);
}

/// A change overtaken between its read and its write is decided again from the fresh standing,
/// and the change that overtook it is kept.
async fn a_change_overtaken_by_another_is_decided_again(engine: Engine) {
    let f = Arc::new(fixture(engine).await);
    let alice = f.user("alice").await.id;
    let decisions = AtomicUsize::new(0);
    let interloper = Arc::clone(&f);
    let change = |before: &PushState| {
        if decisions.fetch_add(1, Ordering::SeqCst) == 0 {
            // A refused prompt commits between this read and its write.
            let handle = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| handle.block_on(refuse_a_prompt(&interloper, alice)));
        }
        (
            PushState { reason: Some("reviewed".into()), ..before.clone() },
            f.event(Action::PushUnfrozen, Subject::User(alice)),
        )
    };

    let (before, after) = f.store.change_push_state(alice, f.now(), &change).await.unwrap();

    assert_eq!(decisions.load(Ordering::SeqCst), 2, "the stale decision was made again");
    assert_eq!(before.refused_prompts, 1, "from the standing with the concurrent change");
    assert_eq!(after.refused_prompts, 1, "which is kept");
    assert_eq!(after.reason.as_deref(), Some("reviewed"));
    assert_eq!(f.store.push_state(alice).await.unwrap(), after);
}

/// Twelve refusals racing on one standing: every one counted and audited, one incident alert.
async fn concurrent_refusals_on_one_standing_are_never_lost(engine: Engine) {
    let f = Arc::new(fixture(engine).await);
    let alice = f.user("alice").await.id;
    let pending = f.store.audit_pending_count().await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let f = Arc::clone(&f);
            tokio::spawn(async move { refuse_a_prompt(&f, alice).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.store.push_state(alice).await.unwrap().refused_prompts, 12, "every refusal counted");
    assert_eq!(f.store.audit_pending_count().await.unwrap(), pending + 12, "and audited once");
    assert_eq!(alert_kinds(alerts(&f).await), ["push_bombing"], "one incident, one alert");
}

/// A user held for admin review (quarantine, hard lock) is not deleted: creating the name again
/// would be a clean unfreeze without the review. Others are.
async fn a_user_held_for_review_is_not_deleted(engine: Engine) {
    let f = fixture(engine).await;
    for held in [
        PushState { hard_locked: true, ..PushState::default() },
        PushState { needs_admin_review: true, ..PushState::default() },
    ] {
        let user = f.user(&format!("held-{}", held.hard_locked)).await;
        set_standing(&f, &user, held).await;
        let event = f.event(Action::UserDeleted, Subject::User(user.id));
        let refused = f.store.delete_user(user.id, f.now(), event).await;
        assert!(
            matches!(refused, Err(StoreError::PreconditionFailed(Precondition::HeldForReview))),
            "{refused:?}"
        );
        assert!(f.store.user_by_id(user.id).await.unwrap().is_some(), "still there");
    }
    let free = f.user("free").await;
    set_standing(&f, &free, PushState { needs_strong_factor: true, ..PushState::default() }).await;
    let event = f.event(Action::UserDeleted, Subject::User(free.id));
    f.store.delete_user(free.id, f.now(), event).await.unwrap();
    let event = f.event(Action::UserDeleted, Subject::User(UserId::random()));
    assert!(matches!(f.store.delete_user(UserId::random(), f.now(), event).await, Err(StoreError::NotFound)));
}

on_both_engines!(
    a_user_held_for_review_is_not_deleted,
    a_write_from_a_stale_read_is_refused,
    a_change_overtaken_by_another_is_decided_again,
    concurrent_refusals_on_one_standing_are_never_lost,
    the_standing_is_default_until_changed,
    concurrent_standing_changes_are_serialised,
    refused_prompts_open_one_incident_at_a_time,
    signals_and_refusals_are_atomic_with_their_audit,
    troubled_users_are_listed_worst_first,
    wrong_numbers_freeze_push,
    answers_move_the_ladder,
    unanswered_prompts_make_the_next_one_silent,
    budget_and_spray_refuse_prompts_before_writing,
);
