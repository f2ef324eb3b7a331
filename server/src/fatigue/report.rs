//! What apps and dashboards read about the defence: a user's push standing, the ranking of users
//! under attack, and a user's prompt timeline with its warning flags. Pure: the service reads,
//! these functions decide what it means.

use serde::Serialize;
use time::OffsetDateTime;

use super::model::{self, Availability, Policy, PushState};
use crate::audit::chain::StoredEvent;
use crate::challenges::model::ChallengeState;
use crate::store::{ChallengeRecord, UserRecord};

/// At most this many prompts in a timeline (and read from each source).
pub const TIMELINE_LEN: usize = 100;

/// An approval this quick (seconds) was probably not read: a warning sign.
const FAST_APPROVAL_SECS: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PushStanding {
    /// `available`, `frozen` or `locked`.
    pub push: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub frozen_until: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub consecutive_failures: i32,
    /// Push returns only after a stronger factor or an admin.
    pub needs_strong_factor: bool,
    pub needs_admin_review: bool,
    /// Prompts in a row that ended without an answer (from 2 on, new prompts are silent).
    pub unanswered_in_a_row: i32,
    /// An attack incident is going on: prompts for this user were refused (budget, spray).
    pub under_attack: bool,
    /// Prompts refused in the current incident.
    pub refused_prompts: i32,
}

/// The user's push standing at `now`, as apps see it.
pub fn standing(state: &PushState, now: OffsetDateTime, policy: &Policy) -> PushStanding {
    let (push, frozen_until) = match model::availability(state, now) {
        Availability::Available => ("available", None),
        Availability::Frozen { until, .. } => ("frozen", until),
        Availability::HardLocked => ("locked", None),
    };
    PushStanding {
        push: push.into(),
        frozen_until,
        reason: state.reason.clone(),
        consecutive_failures: state.consecutive_failures,
        needs_strong_factor: state.needs_strong_factor,
        needs_admin_review: state.needs_admin_review,
        unanswered_in_a_row: state.unanswered,
        under_attack: model::is_under_attack(state, now, policy),
        refused_prompts: state.refused_prompts,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UserUnderAttack {
    pub username: String,
    /// Higher is worse: failures, unanswered and refused prompts, plus weight for an attack
    /// incident, freezes, reports and locks.
    pub score: i64,
    pub standing: PushStanding,
}

/// Users whose standing is not clean, worst first (ties keep the store's order).
pub fn worst_first(
    users: Vec<(UserRecord, PushState)>,
    now: OffsetDateTime,
    policy: &Policy,
) -> Vec<UserUnderAttack> {
    let mut list: Vec<UserUnderAttack> = users
        .into_iter()
        .map(|(user, push)| UserUnderAttack {
            username: user.username,
            score: model::attack_score(&push, now, policy),
            standing: standing(&push, now, policy),
        })
        .collect();
    list.sort_by_key(|user| std::cmp::Reverse(user.score));
    list
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// Absent for prompts refused before a challenge existed (`throttled`).
    pub challenge_id: Option<String>,
    pub state: String,
    /// `push` (a number-matching prompt) or `passkey` (a WebAuthn sign-in, never a prompt on a
    /// phone: it neither counts as a failure before a push approval nor gets push flags).
    pub factor: &'static str,
    pub app_name: String,
    pub ip: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Seconds from prompt to answer, when answered.
    pub seconds_to_decide: Option<f64>,
    pub silent: bool,
    /// Warning signs: `approved_after_failures:N`, `fast_approval` (< 2 s); for throttled
    /// prompts, why (`budget_exhausted`, `frozen`, `hard_locked`, `source_throttled`).
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub username: String,
    pub standing: PushStanding,
    /// Newest first.
    pub prompts: Vec<TimelineEntry>,
}

/// The user's prompts, newest first, at most [`TIMELINE_LEN`]: the challenges (`newest_first`,
/// as the store returns them) flagged for what preceded them, and the prompts the defence
/// refused before a challenge existed (read from the audit trail).
pub fn timeline(
    username: String,
    standing: PushStanding,
    challenges: &[ChallengeRecord],
    refused: &[StoredEvent],
) -> Timeline {
    let mut prompts = flagged_challenges(challenges);
    prompts.extend(refused.iter().filter_map(refused_prompt));
    prompts.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    prompts.truncate(TIMELINE_LEN);
    Timeline { username, standing, prompts }
}

/// Flags each challenge (given newest first) with the warning signs of an approval: the
/// failures that preceded it since the last approval, and an answer too fast to have been read.
/// Returns them oldest first.
fn flagged_challenges(newest_first: &[ChallengeRecord]) -> Vec<TimelineEntry> {
    // Walk oldest → newest to count the failures that preceded each approval.
    let mut failures_before = 0;
    newest_first
        .iter()
        .rev()
        .map(|c| {
            let seconds = c
                .decided_at
                .filter(|_| c.state != ChallengeState::Pending)
                .map(|d| (d - c.created_at).as_seconds_f64());
            let mut flags = Vec::new();
            match c.state {
                // A passkey sign-in resets the streak, as it does on the ladder.
                ChallengeState::Approved | ChallengeState::Redeemed if !c.is_push() => failures_before = 0,
                _ if !c.is_push() => {}
                ChallengeState::Approved | ChallengeState::Redeemed => {
                    if failures_before > 0 {
                        flags.push(format!("approved_after_failures:{failures_before}"));
                    }
                    if seconds.is_some_and(|s| s < FAST_APPROVAL_SECS) {
                        flags.push("fast_approval".to_owned());
                    }
                    failures_before = 0;
                }
                ChallengeState::Denied
                | ChallengeState::DeniedWrongNumber
                | ChallengeState::Expired
                | ChallengeState::Reported => failures_before += 1,
                ChallengeState::Pending | ChallengeState::Cancelled => {}
            }
            TimelineEntry {
                challenge_id: Some(c.id.to_string()),
                state: c.state.as_str().into(),
                factor: if c.is_push() { "push" } else { "passkey" },
                app_name: c.app_name.clone(),
                ip: c.ip.clone(),
                created_at: c.created_at,
                seconds_to_decide: seconds,
                silent: c.is_silent,
                flags,
            }
        })
        .collect()
}

/// A `prompt_refused` audit event as a `throttled` entry flagged with why; `None` if its time
/// is out of range. Missing details read as empty: the entry still shows that a prompt was
/// refused.
fn refused_prompt(event: &StoredEvent) -> Option<TimelineEntry> {
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
    let at = crate::clock::from_unix_micros(event.occurred_at_micros)?;
    Some(TimelineEntry {
        challenge_id: None,
        state: "throttled".into(),
        factor: "push",
        app_name: details["app_name"].as_str().unwrap_or_default().to_owned(),
        ip: details["ip"].as_str().unwrap_or_default().to_owned(),
        created_at: at,
        seconds_to_decide: None,
        silent: false,
        flags: details["reason"].as_str().map(|r| vec![r.to_owned()]).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fatigue::model::{PushEvent, apply};
    use crate::ids::UserId;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-30 10:00 UTC);

    /// A challenge created `minute` minutes after T0 and decided `decided_after` later.
    fn challenge(minute: i64, state: ChallengeState, decided_after: Duration) -> ChallengeRecord {
        let created_at = T0 + Duration::minutes(minute);
        let record = crate::challenges::model::test_record(state, created_at);
        ChallengeRecord { decided_at: Some(created_at + decided_after), ..record }
    }

    fn refused(minute: i64, details: &str) -> StoredEvent {
        StoredEvent {
            seq: 1,
            event_id: None,
            occurred_at_micros: crate::clock::unix_micros(T0 + Duration::minutes(minute)),
            actor: "system".into(),
            action: "prompt_refused".into(),
            subject: "user".into(),
            details: details.into(),
            prev_hash: vec![],
            hash: vec![],
        }
    }

    fn timeline_of(oldest_first: Vec<ChallengeRecord>, refused: &[StoredEvent]) -> Vec<TimelineEntry> {
        let newest_first: Vec<_> = oldest_first.into_iter().rev().collect();
        let standing = standing(&PushState::default(), T0, &Policy::default());
        timeline("alice".into(), standing, &newest_first, refused).prompts
    }

    #[test]
    fn an_approval_after_failures_is_flagged_with_how_many() {
        use ChallengeState::*;
        let slow = Duration::seconds(9);
        let prompts = timeline_of(
            vec![
                challenge(0, Denied, slow),
                challenge(1, Expired, slow),
                challenge(2, Cancelled, slow),
                challenge(3, DeniedWrongNumber, slow),
                challenge(4, Approved, slow),
                challenge(5, Reported, slow),
                challenge(6, Redeemed, slow),
                challenge(7, Approved, slow),
            ],
            &[],
        );
        let flags: Vec<&[String]> = prompts.iter().map(|p| p.flags.as_slice()).collect();
        let expected: [&[&str]; 8] =
            [&[], &["approved_after_failures:1"], &[], &["approved_after_failures:3"], &[], &[], &[], &[]];
        assert_eq!(flags, expected, "newest first; a cancel is no failure, an approval resets the count");
        assert_eq!(prompts[0].seconds_to_decide, Some(9.0));
    }

    fn passkey(minute: i64, state: ChallengeState, decided_after: Duration) -> ChallengeRecord {
        ChallengeRecord { number_digits: 0, ..challenge(minute, state, decided_after) }
    }

    #[test]
    fn passkey_sign_ins_are_marked_and_are_no_push_failures() {
        use ChallengeState::*;
        let (slow, instant) = (Duration::seconds(9), Duration::milliseconds(300));
        let prompts = timeline_of(
            vec![
                challenge(0, Denied, slow),
                passkey(1, Expired, slow),
                passkey(2, Denied, slow),
                challenge(3, Approved, slow),
                challenge(4, DeniedWrongNumber, slow),
                passkey(5, Approved, instant),
                challenge(6, Approved, slow),
            ],
            &[],
        );
        let seen: Vec<(&str, Vec<&str>)> =
            prompts.iter().map(|p| (p.factor, p.flags.iter().map(String::as_str).collect())).collect();
        let expected = vec![
            ("push", vec![]),
            ("passkey", vec![]),
            ("push", vec![]),
            ("push", vec!["approved_after_failures:1"]),
            ("passkey", vec![]),
            ("passkey", vec![]),
            ("push", vec![]),
        ];
        assert_eq!(
            seen, expected,
            "newest first: a passkey sign-in resets the streak, a failed one adds nothing"
        );
    }

    #[test]
    fn an_approval_too_fast_to_have_been_read_is_flagged() {
        let prompts = timeline_of(
            vec![
                challenge(0, ChallengeState::Approved, Duration::milliseconds(1500)),
                challenge(1, ChallengeState::Approved, Duration::seconds(2)),
                challenge(2, ChallengeState::Pending, Duration::ZERO),
            ],
            &[],
        );
        assert_eq!(prompts[0].seconds_to_decide, None, "a pending prompt has no answer time");
        assert!(prompts[1].flags.is_empty());
        assert_eq!(prompts[2].flags, ["fast_approval"]);
    }

    #[test]
    fn refused_prompts_join_the_timeline_flagged_with_why() {
        let prompts = timeline_of(
            vec![challenge(0, ChallengeState::Denied, Duration::seconds(5))],
            &[
                refused(1, r#"{"app_name":"vpn","ip":"203.0.113.9","reason":"budget_exhausted"}"#),
                refused(-1, "not json"),
            ],
        );
        let states: Vec<&str> = prompts.iter().map(|p| p.state.as_str()).collect();
        assert_eq!(states, ["throttled", "denied", "throttled"]);
        assert_eq!((prompts[0].challenge_id.as_deref(), prompts[0].ip.as_str()), (None, "203.0.113.9"));
        assert_eq!(prompts[0].flags, ["budget_exhausted"]);
        assert!(prompts[2].flags.is_empty() && prompts[2].app_name.is_empty(), "unreadable details");
    }

    #[test]
    fn the_timeline_keeps_the_newest_hundred() {
        let challenges =
            (0..80).map(|m| challenge(m, ChallengeState::Expired, Duration::minutes(2))).collect();
        let refusals: Vec<StoredEvent> = (80..130).map(|m| refused(m, "{}")).collect();
        let prompts = timeline_of(challenges, &refusals);
        assert_eq!(prompts.len(), TIMELINE_LEN);
        assert_eq!(prompts[0].created_at, T0 + Duration::minutes(129));
        assert_eq!(prompts[99].created_at, T0 + Duration::minutes(30));
    }

    #[test]
    fn users_are_ranked_worst_first() {
        let policy = Policy::default();
        let user = |name: &str| UserRecord {
            id: UserId::random(),
            username: name.into(),
            display_name: None,
            is_privileged: false,
            passkey_required: None,
            created_at: T0,
        };
        let denied = apply(PushState::default(), PushEvent::Denied, T0, &policy);
        let reported = apply(PushState::default(), PushEvent::Reported, T0, &policy);
        let ranked =
            worst_first(vec![(user("denied"), denied), (user("reported"), reported.clone())], T0, &policy);
        let names: Vec<&str> = ranked.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["reported", "denied"]);
        assert_eq!(ranked[0].score, model::attack_score(&reported, T0, &policy));
        assert_eq!(ranked[0].standing.push, "frozen");
        assert!(ranked[0].standing.needs_admin_review);
    }
}
