//! The admin dashboard's reads: keyset pages without gaps or repeats, filters, chart buckets,
//! push health by provider, a timeline that never holds the number, and the live alert feed.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use countersign::admin::feed::AlertFeed;
use countersign::alerts::AlertKind;
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::fatigue::model::{Policy, PushState};
use countersign::store::{
    AuditFilter, DashboardStore, NumberMatch, PushJobResult, TimelineCursor, TimelineRow, UserRecord,
};
use countersign_e2e::Engine;
use time::{Duration, OffsetDateTime};

use super::dashboard_seed::{Seed, seed_dashboard};
use super::support::{Fixture, START, fixture, push};

/// The start of the minute `at` falls in.
fn minute_of(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_second(0).unwrap().replace_nanosecond(0).unwrap()
}

async fn refuse(f: &Fixture, user: &UserRecord, reason: Option<&str>) {
    let details = match reason {
        Some(reason) => serde_json::json!({ "reason": reason }),
        None => serde_json::json!({}),
    };
    let event = AuditEvent::new(f.now(), Actor::System, Action::PromptRefused, Subject::User(user.id))
        .with_details(details);
    f.store.record_audit(event).await.unwrap();
}

/// Alerts after a cursor come in id order, a page at a time; the newest id is the last one.
async fn alerts_are_read_after_a_cursor(engine: Engine) {
    let f = fixture(engine).await;
    assert_eq!(f.store.newest_alert_id().await.unwrap(), 0, "no alert yet");
    for n in 0..5 {
        let subject = Subject::Network(format!("198.51.100.{n}/32"));
        f.store.raise_alert(AlertKind::PushSpray, &subject, "{}", f.now()).await.unwrap();
    }
    let first = f.store.alerts_after(0, 3).await.unwrap();
    let rest = f.store.alerts_after(first[2].id, 3).await.unwrap();
    let ids: Vec<i64> = first.iter().chain(&rest).map(|a| a.id).collect();
    assert_eq!(ids.len(), 5, "two pages hold every alert once");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert_eq!(rest[1].subject, "network:198.51.100.4/32");
    assert_eq!(f.store.newest_alert_id().await.unwrap(), ids[4]);
    assert!(f.store.alerts_after(ids[4], 3).await.unwrap().is_empty());
}

/// Push prompts and refusals are counted per minute since the given time; passkey sign-ins
/// are no prompts.
async fn prompts_and_refusals_are_bucketed_per_minute(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("vpn").await;
    let mut users = Vec::new();
    for n in 0..5 {
        users.push(f.user(&format!("user{n}")).await);
    }
    f.challenge(&app, &users[0]).await;
    f.challenge(&app, &users[1]).await;
    f.advance(Duration::seconds(30)).await;
    f.challenge(&app, &users[2]).await;
    f.advance(Duration::seconds(30)).await;
    f.challenge(&app, &users[3]).await;
    let passkey =
        countersign::store::ChallengeRecord { number_digits: 0, ..f.challenge_record(&app, &users[4]) };
    f.create_challenge(passkey, &[], &Policy::default()).await.unwrap();
    refuse(&f, &users[0], Some("budget_exhausted")).await;
    f.advance(Duration::minutes(1)).await;
    refuse(&f, &users[0], Some("budget_exhausted")).await;
    refuse(&f, &users[1], Some("source_throttled")).await;
    refuse(&f, &users[1], None).await;
    f.audit_len().await; // chain what is pending: the charts read the trail

    let buckets = f.store.prompts_per_minute(START - Duration::hours(24)).await.unwrap();
    let seen: Vec<(OffsetDateTime, i64, i64)> =
        buckets.iter().map(|b| (b.minute, b.prompts, b.refused)).collect();
    let m0 = minute_of(START);
    assert_eq!(seen, [(m0, 3, 0), (m0 + Duration::minutes(1), 1, 1), (m0 + Duration::minutes(2), 0, 3)]);
    let later = f.store.prompts_per_minute(START + Duration::minutes(1)).await.unwrap();
    assert_eq!(later.iter().map(|b| (b.prompts, b.refused)).collect::<Vec<_>>(), [(1, 1), (0, 3)]);

    let reasons = f.store.refusals_by_reason(START).await.unwrap();
    let seen: Vec<(&str, i64)> = reasons.iter().map(|r| (r.reason.as_str(), r.refusals)).collect();
    assert_eq!(seen, [("budget_exhausted", 2), ("", 1), ("source_throttled", 1)], "most first");
    let recent = f.store.refusals_by_reason(START + Duration::minutes(2)).await.unwrap();
    assert_eq!(recent.iter().map(|r| r.refusals).sum::<i64>(), 3, "only since the given time");
}

/// Jobs are counted per device provider and state with the newest error; no token comes out.
async fn push_health_groups_by_provider_and_state(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("vpn").await;
    let mut jobs = Vec::new();
    for (name, provider) in [("ann", "apns"), ("amy", "apns"), ("fay", "fcm")] {
        let user = f.user(name).await;
        let device = f.device(&user, push(provider, &format!("secret-token-{name}"))).await;
        f.create_challenge(f.challenge_record(&app, &user), &[device.id], &Policy::default()).await.unwrap();
        let claimed = f.store.claim_push_jobs(f.now(), Duration::seconds(30), 10).await.unwrap();
        jobs.extend(claimed);
    }
    assert_eq!(jobs.len(), 3);
    f.advance(Duration::seconds(1)).await;
    let finish = [
        PushJobResult::Sent,
        PushJobResult::Failed { error: "apns 400 BadTopic".into() },
        PushJobResult::Retry { at: f.now() + Duration::minutes(1), error: "fcm 503 UNAVAILABLE".into() },
    ];
    for (job, result) in jobs.iter().zip(finish) {
        assert!(f.store.finish_push_job(job, result, f.now()).await.unwrap());
    }

    let health = f.store.push_health(START).await.unwrap();
    let counts: Vec<(&str, i64, i64, i64, i64)> =
        health.iter().map(|h| (h.provider.as_str(), h.queued, h.sent, h.failed, h.dropped)).collect();
    assert_eq!(counts, [("apns", 0, 1, 1, 0), ("fcm", 1, 0, 0, 0)]);
    assert_eq!(health[0].last_error, Some(("apns 400 BadTopic".to_owned(), f.now())));
    assert_eq!(health[1].last_error, Some(("fcm 503 UNAVAILABLE".to_owned(), f.now())));
    assert!(!format!("{health:?}").contains("secret-token"), "tokens never leave the store");
    assert!(f.store.push_health(f.now() + Duration::SECOND).await.unwrap().is_empty(), "since");
}

/// The user list pages by username within a prefix, without gaps or repeats, each user with
/// the push standing the list shows.
async fn users_are_searched_by_prefix_a_page_at_a_time(engine: Engine) {
    let f = fixture(engine).await;
    for name in ["alice", "al", "bob", "alfred", "albert", "alz", "am"] {
        f.user(name).await;
    }
    let alice = f.store.user_by_username("alice").await.unwrap().unwrap();
    let quarantined =
        PushState { needs_admin_review: true, reason: Some("not_me".into()), ..PushState::default() };
    let event = f.event(Action::PushUnfrozen, Subject::User(alice.id));
    let change = move |_: &PushState| (quarantined.clone(), event.clone());
    f.store.change_push_state(alice.id, f.now(), &change).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = f.store.search_users("al", after.as_deref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.user.username.clone());
        seen.extend(page);
    }
    let names: Vec<&str> = seen.iter().map(|u| u.user.username.as_str()).collect();
    assert_eq!(names, ["al", "albert", "alfred", "alice", "alz"]);
    for listing in &seen {
        assert_eq!(
            listing.push.needs_admin_review,
            listing.user.username == "alice",
            "{}",
            listing.user.username
        );
    }
    let all = f.store.search_users("", None, 100).await.unwrap();
    assert_eq!(all.len(), 7, "no prefix: everyone");
    assert!(all.windows(2).all(|w| w[0].user.username < w[1].user.username));
    let none = f.store.search_users("zz", None, 10).await.unwrap();
    assert!(none.is_empty());
}

/// Every page of an audit search continues below the last seq: together they hold exactly the
/// matching events, newest first, for each filter.
async fn audit_search_pages_by_seq_without_gaps_or_repeats(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    for n in 0..12 {
        let actor = if n % 3 == 0 { Actor::Cli } else { Actor::System };
        let (action, user) =
            if n % 2 == 0 { (Action::PromptRefused, &alice) } else { (Action::PushUnfrozen, &bob) };
        let event = AuditEvent::new(f.now(), actor, action, Subject::User(user.id));
        f.store.record_audit(event.with_details(serde_json::json!({ "n": n }))).await.unwrap();
        f.advance(Duration::seconds(10)).await;
    }
    let head = f.audit_len().await;
    let all = f.store.audit_events(0, head, 1_000).await.unwrap();
    let from = START + Duration::seconds(30);
    let to = START + Duration::seconds(90);
    let filters = [
        AuditFilter::default(),
        AuditFilter { subject: Some(format!("user:{}", alice.id)), ..AuditFilter::default() },
        AuditFilter { actor: Some("cli".into()), ..AuditFilter::default() },
        AuditFilter {
            action: Some("fatigue.prompt_refused".into()),
            actor: Some("system".into()),
            ..AuditFilter::default()
        },
        AuditFilter { from: Some(from), to: Some(to), ..AuditFilter::default() },
    ];
    for filter in filters {
        let expected: Vec<i64> = all
            .iter()
            .rev()
            .filter(|e| filter.subject.as_ref().is_none_or(|s| &e.subject == s))
            .filter(|e| filter.actor.as_ref().is_none_or(|a| &e.actor == a))
            .filter(|e| filter.action.as_ref().is_none_or(|a| &e.action == a))
            .filter(|e| {
                filter.from.is_none_or(|t| e.occurred_at_micros >= countersign::clock::unix_micros(t))
            })
            .filter(|e| filter.to.is_none_or(|t| e.occurred_at_micros < countersign::clock::unix_micros(t)))
            .map(|e| e.seq)
            .collect();
        assert!(!expected.is_empty(), "{filter:?} matches something");
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = f.store.audit_search(&filter, before, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            seen.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(seen, expected, "{filter:?}");
    }
}

/// The timeline pages by (created_at, id), ties included, newest first; it says matched or
/// wrong number and never holds the number.
async fn a_timeline_pages_by_time_and_holds_no_number(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("vpn").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let phone = f.device(&alice, push("apns", "token-a")).await;
    let sealed = vec![0xABu8; 40];
    let mut created = Vec::new();
    // Two prompts at the same microsecond: the id breaks the tie.
    for _ in 0..2 {
        created.push(f.challenge(&app, &alice).await);
    }
    // The wrong number last: it freezes alice's push.
    for (n, outcome) in [ChallengeState::Approved, ChallengeState::Denied, ChallengeState::DeniedWrongNumber]
        .into_iter()
        .enumerate()
    {
        let record = countersign::store::ChallengeRecord {
            number_sealed: sealed.clone(),
            ..f.challenge_record(&app, &alice)
        };
        let challenge = f.create_challenge(record, &[], &Policy::default()).await.unwrap();
        f.advance(Duration::seconds(3 + n as i64)).await;
        created.push(f.decide(&challenge, &phone, outcome).await.unwrap());
    }
    f.challenge(&app, &bob).await;
    let mut expected: Vec<_> = created.iter().map(|c| (c.created_at, c.id)).collect();
    expected.sort_by(|a, b| b.cmp(a));

    let mut rows: Vec<TimelineRow> = Vec::new();
    let mut before: Option<TimelineCursor> = None;
    loop {
        let page = f.store.user_timeline(alice.id, before, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.cursor());
        rows.extend(page);
    }
    let seen: Vec<_> = rows.iter().map(|r| (r.created_at, r.challenge_id)).collect();
    assert_eq!(seen, expected, "every prompt of alice once, newest first");
    let approved = rows.iter().find(|r| r.state == ChallengeState::Approved).unwrap();
    assert_eq!(approved.number_match(), Some(NumberMatch::Matched));
    assert_eq!(approved.seconds_to_decide(), Some(3.0));
    assert_eq!(approved.decided_by_device, Some(phone.id));
    assert_eq!(
        (approved.user_agent.as_str(), approved.location.as_deref()),
        ("contract-test", Some("Testville"))
    );
    let wrong = rows.iter().find(|r| r.state == ChallengeState::DeniedWrongNumber).unwrap();
    assert_eq!(wrong.number_match(), Some(NumberMatch::WrongNumber));
    let denied = rows.iter().find(|r| r.state == ChallengeState::Denied).unwrap();
    assert_eq!(denied.number_match(), None, "a plain deny typed no number");
    let printed = format!("{rows:?}");
    assert!(
        !printed.contains("171, 171") && !printed.contains("number"),
        "no number, sealed or not: {printed}"
    );
}

/// A subscriber hears of an alert raised on any instance; the feed polls only while someone
/// listens.
async fn the_feed_wakes_a_subscriber_after_an_alert(engine: Engine) {
    let f = fixture(engine).await;
    let store: Arc<dyn DashboardStore> = f.store.clone();
    let feed = AlertFeed::new(store, StdDuration::from_millis(20));
    let task = Arc::clone(&feed).spawn();
    let mut newest = feed.subscribe();
    assert_eq!(*newest.borrow_and_update(), 0);

    let other = f.another_instance().await;
    let subject = Subject::User(countersign::ids::UserId::random());
    other.raise_alert(AlertKind::PushBombing, &subject, "{}", f.now()).await.unwrap();
    let heard = tokio::time::timeout(StdDuration::from_secs(10), newest.wait_for(|id| *id > 0)).await;
    let id = *heard.expect("the subscriber is woken").unwrap();
    let alerts = f.store.alerts_after(0, 10).await.unwrap();
    assert_eq!(alerts.iter().map(|a| a.id).collect::<Vec<_>>(), [id]);
    assert_eq!(alerts[0].kind, "push_bombing");
    assert_eq!(feed.subscribers(), 1);
    drop(newest);
    assert_eq!(feed.subscribers(), 0, "the feed goes idle");
    let mut again = feed.subscribe();
    other.raise_alert(AlertKind::PushBombing, &subject, "{}", f.now()).await.unwrap();
    let heard = tokio::time::timeout(StdDuration::from_secs(10), again.wait_for(|newer| *newer > id)).await;
    assert!(heard.expect("a new subscriber wakes the idle feed").is_ok());
    task.abort();
}

/// The bulk seed the dashboard benchmark uses (here tiny) gives every read what it expects:
/// the seeding SQL is checked on both engines, and each read walks it by keyset.
async fn bulk_seeded_data_reads_back_through_every_page(engine: Engine) {
    let f = fixture(engine).await;
    let seed = Seed { now: START, users: 300, challenges: 3_000, days: 1, troubled: 5, alerts: 20 };
    seed_dashboard(&f.db, seed).await;
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = f.store.search_users("seed", after.as_deref(), 128).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.user.username.clone());
        names.extend(page.into_iter().map(|u| u.user.username));
    }
    let expected: Vec<String> = (0..300).map(|n| format!("seed{n:07}")).collect();
    assert_eq!(names, expected);
    assert_eq!(f.store.troubled_users(200).await.unwrap().len(), 5);
    assert_eq!(f.store.alerts_after(0, 100).await.unwrap().len(), 20);

    let buckets = f.store.prompts_per_minute(START - Duration::days(1)).await.unwrap();
    assert_eq!(buckets.iter().map(|b| b.prompts).sum::<i64>(), 3_000 - 150, "every 20th is a passkey");
    let step = Duration::days(1) / 3_000;
    let since = START - Duration::hours(2);
    let recent_jobs = (0..3_000).filter(|i| START - step * *i >= since && i % 20 != 0).count();
    let health = f.store.push_health(since).await.unwrap();
    let jobs: i64 = health.iter().map(|h| h.queued + h.sent + h.failed + h.dropped).sum();
    assert_eq!(jobs, recent_jobs as i64);

    let user = f.store.user_by_username("seed0000007").await.unwrap().unwrap();
    let mut rows = 0;
    let mut before = None;
    loop {
        let page = f.store.user_timeline(user.id, before, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.cursor());
        rows += page.len();
    }
    assert_eq!(rows, 10, "one challenge in 300 is this user's");
}

on_both_engines!(
    bulk_seeded_data_reads_back_through_every_page,
    alerts_are_read_after_a_cursor,
    prompts_and_refusals_are_bucketed_per_minute,
    push_health_groups_by_provider_and_state,
    users_are_searched_by_prefix_a_page_at_a_time,
    audit_search_pages_by_seq_without_gaps_or_repeats,
    a_timeline_pages_by_time_and_holds_no_number,
    the_feed_wakes_a_subscriber_after_an_alert,
);
