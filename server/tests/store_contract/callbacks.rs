//! The callback outbox: a job enqueued with the request that owes it is due once its challenge
//! has left `pending` (at once without one), is leased to one claimer at a time, ends once by
//! compare-and-set on its claim (its audit event only with the finish that won), is retried
//! when rescheduled, and is purged only once it ended and its request is over.

use countersign::audit::{Action, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::store::{
    CallbackKind, CallbackResult, CallbackStatus, ChallengeTransition, ClaimedCallback, StoreError,
};
use countersign_e2e::{Engine, break_audit_writes_sql, exec_sql};
use time::Duration;

use super::oidc_ciba::{Ciba, RACERS, Request, ciba};
use super::support::CHALLENGE_TTL;

const LEASE: Duration = Duration::seconds(30);
const CLAIM_ROUNDS: i32 = 12;

/// Claims every due job now, in id order.
async fn claim(t: &Ciba) -> Vec<ClaimedCallback> {
    let mut claimed = t.store().claim_callbacks(t.f.now(), LEASE, 100).await.unwrap();
    claimed.sort_by_key(|c| c.job.id);
    claimed
}

fn ids(claimed: &[ClaimedCallback]) -> Vec<uuid::Uuid> {
    claimed.iter().map(|c| c.job.id).collect()
}

fn ping_id(r: &Request) -> uuid::Uuid {
    r.ping.as_ref().unwrap().id
}

/// Ends or reschedules `claimed` now, with the audit event the worker writes when it ends.
async fn finish(t: &Ciba, claimed: &ClaimedCallback, result: CallbackResult) -> Result<bool, StoreError> {
    let action = match result {
        CallbackResult::Delivered => Some(Action::CallbackDelivered),
        CallbackResult::Failed { .. } => Some(Action::CallbackFailed),
        CallbackResult::Retry { .. } => None,
    };
    let audit = action.map(|action| match claimed.job.challenge_id {
        Some(challenge) => t.f.event(action, Subject::Challenge(challenge)),
        None => t.f.event(action, Subject::OidcClient(t.client.clone())),
    });
    t.store().finish_callback(claimed, result, t.f.now(), audit).await
}

fn failed(error: &str) -> CallbackResult {
    CallbackResult::Failed { error: error.into() }
}

/// The one job reporting on `r`'s challenge, as stored (`None` once purged).
async fn status(t: &Ciba, r: &Request) -> Option<CallbackStatus> {
    let mut jobs = t.store().callbacks_for_challenge(r.challenge.as_ref().unwrap().id).await.unwrap();
    assert!(jobs.len() <= 1, "{jobs:?}");
    jobs.pop()
}

/// (state, attempts, last error) of `r`'s job.
async fn progress(t: &Ciba, r: &Request) -> (String, i32, Option<String>) {
    let s = status(t, r).await.unwrap();
    (s.state, s.attempts, s.last_error)
}

fn progressed(state: &str, attempts: i32, error: Option<&str>) -> (String, i32, Option<String>) {
    (state.into(), attempts, error.map(str::to_owned))
}

/// A request whose user has answered, with its ping due.
async fn answered(t: &Ciba, name: &str) -> Request {
    let r = t.stored(name).await;
    t.answer(&r, ChallengeState::Approved).await;
    r
}

/// A ping is not sent while its user has not answered, however long that takes; the answer
/// makes it due, handed over with every field as enqueued and the challenge's new state.
async fn a_job_waits_while_its_challenge_is_pending(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored("alice").await;
    assert_eq!(claim(&t).await, [], "pending: not due");
    t.f.advance(CHALLENGE_TTL - Duration::SECOND).await;
    assert_eq!(claim(&t).await, [], "still pending: still not due");
    t.answer(&r, ChallengeState::Approved).await;
    let expected = ClaimedCallback {
        job: r.ping.clone().unwrap(),
        attempts: 1,
        challenge_state: Some(ChallengeState::Approved),
    };
    assert_eq!(claim(&t).await, [expected], "every field, times to the microsecond");
}

/// Every way a challenge leaves `pending` makes its job due — a denial, a cancellation, the
/// expiry (once recorded: a pending challenge past its time is still pending) — and the claim
/// says which.
async fn every_end_of_a_challenge_makes_its_job_due(engine: Engine) {
    let t = ciba(engine).await;
    let (denied, cancelled, expired) =
        (t.stored("bob").await, t.stored("carol").await, t.stored("dave").await);
    t.answer(&denied, ChallengeState::Denied).await;
    let app_id = t.app.id;
    t.f.transition(cancelled.challenge.as_ref().unwrap(), ChallengeTransition::Cancel { app_id })
        .await
        .unwrap();
    t.f.advance(CHALLENGE_TTL + Duration::SECOND).await;
    let states = |claimed: &[ClaimedCallback]| {
        claimed.iter().map(|c| (c.job.id, c.challenge_state)).collect::<Vec<_>>()
    };
    let mut due = vec![
        (ping_id(&denied), Some(ChallengeState::Denied)),
        (ping_id(&cancelled), Some(ChallengeState::Cancelled)),
    ];
    due.sort_by_key(|(id, _)| *id);
    assert_eq!(states(&claim(&t).await), due, "not the one past its time but still pending");
    t.f.transition(expired.challenge.as_ref().unwrap(), ChallengeTransition::Expire).await.unwrap();
    assert_eq!(states(&claim(&t).await), [(ping_id(&expired), Some(ChallengeState::Expired))]);
}

/// A ping for a request nobody was prompted for reports an outcome known when it was made: it
/// is due at once.
async fn a_job_without_a_challenge_is_due_at_once(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored_refusal().await;
    let expected = ClaimedCallback { job: r.ping.clone().unwrap(), attempts: 1, challenge_state: None };
    assert_eq!(claim(&t).await, [expected]);
}

/// A job made to wait (`not_before`: a request nobody was prompted for is reported when a
/// prompt would have ended) is not due a moment sooner.
async fn a_job_is_not_due_before_its_time(engine: Engine) {
    let t = ciba(engine).await;
    let mut r = t.refused();
    let ping = r.ping.as_mut().unwrap();
    ping.not_before = t.f.now() + Duration::seconds(60);
    t.create(&r).await.unwrap();
    t.f.advance(Duration::seconds(60) - Duration::microseconds(1)).await;
    assert_eq!(claim(&t).await, [], "not before its time");
    t.f.advance(Duration::microseconds(1)).await;
    let claimed = claim(&t).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job, r.ping.clone().unwrap(), "read back as made");
}

/// A claimed job is leased: nobody claims it again until the lease has run out, then the next
/// claim takes it over with its attempts counted. A claim takes at most `limit` jobs.
async fn a_claimed_job_is_leased_until_its_lease_runs_out(engine: Engine) {
    let t = ciba(engine).await;
    let r = t.stored_refusal().await;
    assert_eq!(claim(&t).await.len(), 1);
    assert_eq!(claim(&t).await, [], "leased");
    t.f.advance(LEASE - Duration::microseconds(1)).await;
    assert_eq!(claim(&t).await, [], "until the lease has run out");
    t.f.advance(Duration::microseconds(1)).await;
    let again = claim(&t).await;
    assert_eq!(
        again.iter().map(|c| (c.job.id, c.attempts)).collect::<Vec<_>>(),
        [(ping_id(&r), 2)],
        "taken over, attempts counted"
    );

    t.stored_refusal().await;
    t.stored_refusal().await;
    t.f.advance(LEASE).await;
    assert_eq!(t.store().claim_callbacks(t.f.now(), LEASE, 1).await.unwrap().len(), 1, "at most `limit`");
    assert_eq!(claim(&t).await.len(), 2, "the rest");
}

/// Workers on two instances claiming at once, round after round as leases run out: every due
/// job goes to exactly one of them each round, its attempts counted once per round.
async fn concurrent_claims_hand_each_job_to_one_claimer(engine: Engine) {
    let t = ciba(engine).await;
    let mut expected = Vec::new();
    for _ in 0..5 {
        expected.push(ping_id(&t.stored_refusal().await));
    }
    for name in ["alice", "bob", "carol"] {
        expected.push(ping_id(&answered(&t, name).await));
    }
    expected.sort();
    for round in 1..=CLAIM_ROUNDS {
        let now = t.f.now();
        let results =
            t.f.race(RACERS, |_, store| async move { store.claim_callbacks(now, LEASE, 100).await });
        let claimed: Vec<ClaimedCallback> = results.await.into_iter().flat_map(|r| r.unwrap()).collect();
        let mut claimed_ids = ids(&claimed);
        claimed_ids.sort();
        assert_eq!(claimed_ids, expected, "round {round}: each job once, none twice, none missed");
        assert!(claimed.iter().all(|c| c.attempts == round), "round {round}: {claimed:?}");
        t.f.advance(LEASE).await;
    }
}

/// Attack on the lease: a worker stalls past its lease while another takes the job over. The
/// stale claim can no longer end or reschedule the job (`false`, nothing changed, no audit
/// event); the current one can, once, with its event.
async fn a_stale_claim_changes_nothing(engine: Engine) {
    let t = ciba(engine).await;
    let r = answered(&t, "alice").await;
    let stale = claim(&t).await.pop().unwrap();
    t.f.advance(LEASE).await;
    let current = claim(&t).await.pop().unwrap();
    assert_eq!((stale.attempts, current.attempts), (1, 2));
    let events = t.f.audit_len().await;
    let retry = CallbackResult::Retry { at: t.f.now(), error: "stale".into() };
    for result in [CallbackResult::Delivered, failed("stale"), retry] {
        assert!(!finish(&t, &stale, result).await.unwrap(), "a stale claim");
    }
    assert_eq!(progress(&t, &r).await, progressed("queued", 2, None), "unchanged");
    assert_eq!(t.f.audit_len().await, events, "no event for a finish that lost");

    assert!(finish(&t, &current, failed("HTTP 400")).await.unwrap());
    assert_eq!(progress(&t, &r).await, progressed("failed", 2, Some("HTTP 400")));
    let since = t.f.audit_since(events).await;
    let challenge = r.challenge.as_ref().unwrap().id;
    assert_eq!(
        since.iter().map(|e| (e.0.as_str(), e.1.clone())).collect::<Vec<_>>(),
        [("callback.failed", format!("challenge:{challenge}"))],
        "the event of the finish that won"
    );
    assert!(!finish(&t, &current, CallbackResult::Delivered).await.unwrap(), "it ended once");
    assert_eq!(progress(&t, &r).await, progressed("failed", 2, Some("HTTP 400")));
    assert_eq!(t.f.audit_len().await, events + 1);
}

/// Delivered and failed jobs are done: never claimed again, however long after.
async fn a_finished_job_is_never_claimed_again(engine: Engine) {
    let t = ciba(engine).await;
    let (delivered, rejected) = (answered(&t, "alice").await, answered(&t, "bob").await);
    let claimed = claim(&t).await;
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        let result =
            if c.job.id == ping_id(&delivered) { CallbackResult::Delivered } else { failed("HTTP 401") };
        assert!(finish(&t, c, result).await.unwrap());
    }
    assert_eq!(progress(&t, &delivered).await, progressed("delivered", 1, None));
    assert_eq!(progress(&t, &rejected).await, progressed("failed", 1, Some("HTTP 401")));
    for later in [LEASE, Duration::hours(1), Duration::days(30)] {
        t.f.advance(later).await;
        assert_eq!(claim(&t).await, [], "done for good");
    }
}

/// A retried job is rescheduled: due at the time given (not at the end of the lease), with its
/// error kept and its attempts counted; a later delivery clears the error.
async fn a_retried_job_comes_back_when_rescheduled(engine: Engine) {
    let t = ciba(engine).await;
    let r = answered(&t, "alice").await;
    let first = claim(&t).await.pop().unwrap();
    let at = t.f.now() + Duration::minutes(2);
    let retry = CallbackResult::Retry { at, error: "HTTP 503".into() };
    assert!(finish(&t, &first, retry).await.unwrap());
    assert_eq!(progress(&t, &r).await, progressed("queued", 1, Some("HTTP 503")));
    t.f.advance(LEASE).await;
    assert_eq!(claim(&t).await, [], "not at the end of the lease");
    t.f.advance(at - t.f.now() - Duration::microseconds(1)).await;
    assert_eq!(claim(&t).await, [], "not before the time given");
    t.f.advance(Duration::microseconds(1)).await;
    let second = claim(&t).await.pop().unwrap();
    assert_eq!((second.job.id, second.attempts), (ping_id(&r), 2));

    // Sooner than a lease: the time given wins over the lease.
    let soon = CallbackResult::Retry { at: t.f.now() + Duration::SECOND, error: "timeout".into() };
    assert!(finish(&t, &second, soon).await.unwrap());
    t.f.advance(Duration::SECOND).await;
    let third = claim(&t).await.pop().unwrap();
    assert_eq!(third.attempts, 3);
    assert!(finish(&t, &third, CallbackResult::Delivered).await.unwrap());
    assert_eq!(progress(&t, &r).await, progressed("delivered", 3, None));
}

/// A finish whose audit event cannot be written ends nothing: the job stays queued and leased,
/// and its claim can still finish it. A retry carries no event and is not held up.
async fn a_finish_whose_audit_event_fails_changes_nothing(engine: Engine) {
    let t = ciba(engine).await;
    let r = answered(&t, "alice").await;
    let claimed = claim(&t).await.pop().unwrap();
    exec_sql(&t.f.db, break_audit_writes_sql(engine)).await.unwrap();
    let result = finish(&t, &claimed, CallbackResult::Delivered).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(progress(&t, &r).await, progressed("queued", 1, None), "not delivered");
    assert_eq!(claim(&t).await, [], "still leased");
    let retry = CallbackResult::Retry { at: t.f.now() + Duration::SECOND, error: "HTTP 502".into() };
    assert!(finish(&t, &claimed, retry).await.unwrap());
    assert_eq!(progress(&t, &r).await, progressed("queued", 1, Some("HTTP 502")));
}

/// The purge deletes exactly the ended jobs (delivered, failed) whose request ended before the
/// cutoff — not at it; never a queued job, however old.
async fn purge_deletes_only_ended_jobs_past_their_expiry(engine: Engine) {
    let t = ciba(engine).await;
    let short = t.f.now() + Duration::seconds(90);
    let long = t.f.now() + Duration::minutes(10);
    let mut jobs = Vec::new();
    for (name, expires_at) in [("alice", short), ("bob", short), ("carol", short), ("dave", long)] {
        let mut r = t.prompted(name).await;
        r.ping.as_mut().unwrap().expires_at = expires_at;
        t.create(&r).await.unwrap();
        jobs.push(r);
    }
    let [delivered, failed_job, waiting, live] = <[Request; 4]>::try_from(jobs).unwrap();
    for r in [&delivered, &failed_job, &live] {
        t.answer(r, ChallengeState::Approved).await;
    }
    for c in claim(&t).await {
        let result =
            if c.job.id == ping_id(&failed_job) { failed("HTTP 404") } else { CallbackResult::Delivered };
        assert!(finish(&t, &c, result).await.unwrap());
    }
    assert_eq!(t.store().purge_callbacks(short).await.unwrap(), 0, "expired at the cutoff, not before");
    let cutoff = short + Duration::microseconds(1);
    assert_eq!(t.store().purge_callbacks(cutoff).await.unwrap(), 2, "the delivered and the failed one");
    assert_eq!((status(&t, &delivered).await, status(&t, &failed_job).await), (None, None));
    assert_eq!(progress(&t, &waiting).await, progressed("queued", 0, None), "a queued job stays");
    assert_eq!(progress(&t, &live).await, progressed("delivered", 1, None), "its request not over");
    assert_eq!(t.store().purge_callbacks(cutoff).await.unwrap(), 0, "nothing more");

    let much_later = long + Duration::days(1);
    assert_eq!(t.store().purge_callbacks(much_later).await.unwrap(), 1, "the live one, once over");
    assert_eq!(status(&t, &live).await, None);
    assert_eq!(progress(&t, &waiting).await.0, "queued", "still never a queued job");
    let kinds = t.store().callbacks_for_challenge(waiting.challenge.as_ref().unwrap().id).await.unwrap();
    assert_eq!(kinds.iter().map(|s| s.kind).collect::<Vec<_>>(), [CallbackKind::CibaPing]);
}

on_both_engines!(
    a_job_waits_while_its_challenge_is_pending,
    every_end_of_a_challenge_makes_its_job_due,
    a_job_without_a_challenge_is_due_at_once,
    a_job_is_not_due_before_its_time,
    a_claimed_job_is_leased_until_its_lease_runs_out,
    concurrent_claims_hand_each_job_to_one_claimer,
    a_stale_claim_changes_nothing,
    a_finished_job_is_never_claimed_again,
    a_retried_job_comes_back_when_rescheduled,
    a_finish_whose_audit_event_fails_changes_nothing,
    purge_deletes_only_ended_jobs_past_their_expiry,
);
