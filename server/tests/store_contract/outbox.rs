//! The push outbox: jobs a new challenge queues, leased by one worker at a time, finished as
//! sent, failed or retried; and dead push tokens.

use std::collections::HashSet;

use countersign::audit::{Action, Subject};
use countersign::fatigue::model::Policy;
use countersign::store::{DeviceRecord, PushJob, PushJobResult};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{Fixture, fixture, no_push, push};

const LEASE: Duration = Duration::seconds(30);

async fn claim(f: &Fixture) -> Vec<PushJob> {
    let mut jobs = f.store.claim_push_jobs(f.now(), LEASE, 100).await.unwrap();
    jobs.sort_by_key(|job| job.id);
    jobs
}

/// A challenge queues one job per device it pushes to; a claimed job is leased (nobody else
/// claims it) until the lease runs out, when another worker takes it over.
async fn push_jobs_are_leased_to_one_worker(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, push("apns", "phone-token")).await;
    let tablet = f.device(&alice, push("fcm", "tablet-token")).await;
    assert!(claim(&f).await.is_empty());
    let challenge = f
        .create_challenge(f.challenge_record(&app, &alice), &[phone.id, tablet.id], &Policy::default())
        .await
        .unwrap();
    let jobs = claim(&f).await;
    assert_eq!(jobs.len(), 2);
    let by_device =
        |device: &DeviceRecord| jobs.iter().find(|job| job.device_id == device.id).unwrap().clone();
    for (job, device) in [(by_device(&phone), &phone), (by_device(&tablet), &tablet)] {
        assert_eq!(
            (job.challenge_id, job.attempts, &job.push, job.expires_at),
            (challenge.id, 1, &device.push, challenge.expires_at)
        );
    }
    assert!(claim(&f).await.is_empty(), "leased");
    f.advance(LEASE - Duration::SECOND).await;
    assert!(claim(&f).await.is_empty(), "until the lease has run out");
    f.advance(Duration::SECOND).await;
    let again = claim(&f).await;
    assert_eq!(
        again.iter().map(|job| job.id).collect::<Vec<_>>(),
        jobs.iter().map(|job| job.id).collect::<Vec<_>>()
    );
    assert!(again.iter().all(|job| job.attempts == 2), "{again:?}");
    f.advance(LEASE).await;
    assert_eq!(f.store.claim_push_jobs(f.now(), LEASE, 1).await.unwrap().len(), 1, "at most `limit`");
}

/// Sent and failed jobs are done; a retried one comes back when due, with its attempts counted.
async fn finished_jobs_are_done_and_retries_come_back_when_due(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    for name in ["alice", "bob", "carol"] {
        let user = f.user(name).await;
        let device = f.device(&user, push("apns", &format!("{name}-token"))).await;
        f.create_challenge(f.challenge_record(&app, &user), &[device.id], &Policy::default()).await.unwrap();
    }
    let jobs = claim(&f).await;
    assert_eq!(jobs.len(), 3);
    let (sent, failed, retried) = (&jobs[0], &jobs[1], &jobs[2]);
    let retry_at = f.now() + Duration::minutes(1);
    assert!(f.store.finish_push_job(sent, PushJobResult::Sent, f.now()).await.unwrap());
    f.store
        .finish_push_job(failed, PushJobResult::Failed { error: "Unregistered".into() }, f.now())
        .await
        .unwrap();
    let retry = PushJobResult::Retry { at: retry_at, error: "HTTP 503".into() };
    assert!(f.store.finish_push_job(retried, retry, f.now()).await.unwrap());

    f.advance(Duration::minutes(1) - Duration::SECOND).await;
    assert!(claim(&f).await.is_empty(), "nothing due: the retry is not yet");
    f.advance(Duration::SECOND).await;
    let due = claim(&f).await;
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts), (retried.id, 2));
    assert!(f.store.finish_push_job(&due[0], PushJobResult::Sent, f.now()).await.unwrap());
    f.advance(Duration::hours(1)).await;
    assert!(claim(&f).await.is_empty(), "sent and failed jobs never come back");
}

/// Workers on two instances claiming at once never get the same job; together they get all.
async fn concurrent_claims_never_share_a_job(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let mut queued = 0;
    for i in 0..4 {
        let user = f.user(&format!("user{i}")).await;
        let mut devices = Vec::new();
        for j in 0..3 {
            devices.push(f.device(&user, push("fcm", &format!("token-{i}-{j}"))).await.id);
        }
        f.create_challenge(f.challenge_record(&app, &user), &devices, &Policy::default()).await.unwrap();
        queued += devices.len();
    }
    let now = f.now();
    let claims =
        f.race(8, |_, store| async move { store.claim_push_jobs(now, LEASE, 2).await.unwrap() }).await;
    let mut claimed: Vec<i64> = claims.into_iter().flatten().map(|job| job.id).collect();
    // Rows a worker skipped while another held them locked are still there for the next claim.
    claimed.extend(claim(&f).await.into_iter().map(|job| job.id));
    let distinct: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a job claimed twice: {claimed:?}");
    assert_eq!(claimed.len(), queued, "every job claimed");
}

/// A dead token is disabled once (audited once); the device then pulls, and its jobs say so.
async fn a_dead_push_token_is_disabled_once(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, push("apns", "dead-token")).await;
    f.create_challenge(f.challenge_record(&app, &alice), &[phone.id], &Policy::default()).await.unwrap();
    let before = f.audit_len().await;
    let event = || f.event(Action::PushTokenDisabled, Subject::User(alice.id));
    f.store.disable_push_token(phone.id, event()).await.unwrap();
    assert_eq!(f.device_now(phone.id).await.push, no_push());
    assert_eq!(f.store.push_token_owner("apns", "dead-token").await.unwrap(), None);
    assert_eq!(f.audit_len().await, before + 1);
    f.store.disable_push_token(phone.id, event()).await.unwrap();
    assert_eq!(f.audit_len().await, before + 1, "nothing left to disable: no event");
    let jobs = claim(&f).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].push, no_push(), "the job carries the device's registration as it is now");
}

/// A push worker stalls past its lease; another worker claims the job again and sends it. The
/// stale worker then reports a retryable error: it must not re-queue the sent job (the phone
/// would be pushed again) nor mark it failed.
async fn a_worker_whose_lease_ran_out_cannot_finish_the_job(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let alice = f.user("alice").await;
    let phone = f.device(&alice, push("apns", "phone-token")).await;
    f.create_challenge(f.challenge_record(&app, &alice), &[phone.id], &Policy::default()).await.unwrap();
    let stale = claim(&f).await.remove(0);
    f.advance(LEASE).await;
    let current = claim(&f).await.remove(0);
    assert_eq!((current.id, current.attempts), (stale.id, stale.attempts + 1), "claimed again");

    assert!(f.store.finish_push_job(&current, PushJobResult::Sent, f.now()).await.unwrap());
    let retry = PushJobResult::Retry { at: f.now(), error: "HTTP 503".into() };
    assert!(
        !f.store.finish_push_job(&stale, retry, f.now()).await.unwrap(),
        "a stale claim finishes nothing"
    );
    let failed = PushJobResult::Failed { error: "timeout".into() };
    assert!(!f.store.finish_push_job(&stale, failed, f.now()).await.unwrap());
    f.advance(Duration::hours(1)).await;
    assert!(claim(&f).await.is_empty(), "the sent job is not sent again");
}

on_both_engines!(
    a_worker_whose_lease_ran_out_cannot_finish_the_job,
    push_jobs_are_leased_to_one_worker,
    finished_jobs_are_done_and_retries_come_back_when_due,
    concurrent_claims_never_share_a_job,
    a_dead_push_token_is_disabled_once,
);
