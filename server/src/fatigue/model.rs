//! The escalation ladder against push-bombing, as pure rules (DESIGN.md "Fatigue defence").
//!
//! Failures are denials, timeouts and wrong numbers since the last approval. A wrong number
//! freezes push at once (whoever typed it cannot see the login screen); a second one within
//! 24 h freezes it until a stronger factor or an admin; three denials or timeouts freeze it for
//! 15 minutes, doubling with each further failure up to 24 h; 100 consecutive failures lock it
//! (NIST SP 800-63B §5.2.2) until an admin acts. A "not me" report freezes it until an admin
//! reviews. All of this is about push only: a stronger factor is never locked out.
//!
//! Prompts nobody answers are an attack signal of their own: an attacker holding the password
//! can cancel each prompt (or let the next one supersede it) and never produce a "failure".
//! Every prompt that ends unanswered — timed out, superseded, cancelled by the app — counts;
//! after two in a row new prompts are silent (the real user finds them by opening the app), and
//! audible prompts are capped per user and day. Refused prompts (budget, spray) open an attack
//! incident: the user is listed as under attack, alerted on once, and prompted silently.

use time::{Duration, OffsetDateTime};

use crate::alerts::AlertKind;
use crate::challenges::model::ChallengeState;
use crate::ids::UserId;

/// Tunables; [`Policy::validate`] keeps them within safe bounds. As JSON, durations are
/// whole seconds under `*_secs` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Prompts per user per window.
    pub push_budget: u32,
    #[serde(rename = "budget_window_secs", with = "super::policy::secs")]
    pub budget_window: Duration,
    /// Consecutive denials/timeouts before the first freeze.
    pub failures_before_freeze: i32,
    #[serde(rename = "freeze_secs", with = "super::policy::secs")]
    pub freeze: Duration,
    #[serde(rename = "max_freeze_secs", with = "super::policy::secs")]
    pub max_freeze: Duration,
    /// Window in which a second wrong number needs a stronger factor.
    #[serde(rename = "wrong_number_window_secs", with = "super::policy::secs")]
    pub wrong_number_window: Duration,
    pub hard_lock_after: i32,
    /// Distinct users prompted from one source network within `spray_window` before that
    /// source is throttled. Offices share an egress address: keep this above a busy morning.
    pub spray_users: u32,
    #[serde(rename = "spray_window_secs", with = "super::policy::secs")]
    pub spray_window: Duration,
    /// Consecutive failures after which new prompts are silent (no notification; the real
    /// user finds them by opening the app).
    pub silent_after_failures: i32,
    /// Prompts in a row that ended unanswered (timed out, superseded, cancelled) after which
    /// new prompts are silent.
    pub silent_after_unanswered: i32,
    /// Audible (non-silent) prompts per user per rolling day; later ones are silent.
    pub audible_per_day: u32,
    /// How long an attack incident (refused prompts) lasts without a new refusal.
    #[serde(rename = "incident_window_secs", with = "super::policy::secs")]
    pub incident_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            push_budget: 5,
            budget_window: Duration::minutes(15),
            failures_before_freeze: 3,
            freeze: Duration::minutes(15),
            max_freeze: Duration::hours(24),
            wrong_number_window: Duration::hours(24),
            hard_lock_after: 100,
            spray_users: 20,
            spray_window: Duration::minutes(1),
            silent_after_failures: 2,
            silent_after_unanswered: 2,
            audible_per_day: 10,
            incident_window: Duration::hours(24),
        }
    }
}

/// A user's push standing, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushState {
    pub consecutive_failures: i32,
    /// Freezes in the current failure streak: each doubles the next.
    pub freezes: i32,
    pub frozen_until: Option<OffsetDateTime>,
    pub needs_strong_factor: bool,
    pub needs_admin_review: bool,
    pub hard_locked: bool,
    pub last_wrong_number_at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    /// Prompts in a row that ended without an answer (reset by any answer).
    pub unanswered: i32,
    /// Prompts refused (budget, spray) in the current attack incident.
    pub refused_prompts: i32,
    /// When the current attack incident began (its first refused prompt).
    pub under_attack_since: Option<OffsetDateTime>,
    pub last_refused_at: Option<OffsetDateTime>,
}

/// What a decided challenge means for the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEvent {
    Approved,
    Denied,
    TimedOut,
    WrongNumber,
    Reported,
    /// Ended without an answer and without a timeout: superseded or cancelled by the app.
    Unanswered,
}

impl PushEvent {
    /// The ladder's reading of a challenge's final state; `None` for states that say nothing
    /// about the user (pending, redeemed).
    pub fn from_state(state: crate::challenges::model::ChallengeState) -> Option<Self> {
        use crate::challenges::model::ChallengeState::*;
        match state {
            Approved => Some(Self::Approved),
            Denied => Some(Self::Denied),
            Expired => Some(Self::TimedOut),
            DeniedWrongNumber => Some(Self::WrongNumber),
            Reported => Some(Self::Reported),
            Cancelled => Some(Self::Unanswered),
            Pending | Redeemed => None,
        }
    }
}

/// Whether push may be used now, and if not, why and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Frozen until `until` (`None`: until a stronger factor or an admin).
    Frozen {
        until: Option<OffsetDateTime>,
        reason: String,
    },
    HardLocked,
}

pub fn apply(mut state: PushState, event: PushEvent, now: OffsetDateTime, policy: &Policy) -> PushState {
    state.unanswered = match event {
        PushEvent::TimedOut | PushEvent::Unanswered => state.unanswered.saturating_add(1),
        PushEvent::Approved | PushEvent::Denied | PushEvent::WrongNumber | PushEvent::Reported => 0,
    };
    match event {
        PushEvent::Approved => {
            state.consecutive_failures = 0;
            state.freezes = 0;
            // The user is back in control: the attack incident, if any, is over.
            state.refused_prompts = 0;
            state.under_attack_since = None;
            return state;
        }
        PushEvent::Reported => {
            state.needs_admin_review = true;
            state.reason = Some("reported_not_me".into());
            return state;
        }
        PushEvent::Unanswered => return state,
        PushEvent::Denied | PushEvent::TimedOut | PushEvent::WrongNumber => {}
    }
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    if state.consecutive_failures >= policy.hard_lock_after {
        state.hard_locked = true;
        state.reason = Some("too_many_failures".into());
        return state;
    }
    if event == PushEvent::WrongNumber {
        let is_repeat = state.last_wrong_number_at.is_some_and(|at| now - at < policy.wrong_number_window);
        state.last_wrong_number_at = Some(now);
        if is_repeat {
            state.needs_strong_factor = true;
            state.reason = Some("second_wrong_number".into());
        } else {
            freeze_for(&mut state, now, policy.freeze, "wrong_number");
        }
        return state;
    }
    if state.consecutive_failures >= policy.failures_before_freeze {
        let doubling = 2i32.saturating_pow(u32::try_from(state.freezes.clamp(0, 16)).unwrap_or(16));
        let length = (policy.freeze * doubling).min(policy.max_freeze);
        freeze_for(&mut state, now, length, "consecutive_failures");
        state.freezes = state.freezes.saturating_add(1);
    }
    state
}

fn freeze_for(state: &mut PushState, now: OffsetDateTime, length: Duration, reason: &str) {
    let until = now + length;
    state.frozen_until = Some(state.frozen_until.map_or(until, |current| current.max(until)));
    state.reason = Some(reason.into());
}

pub fn availability(state: &PushState, now: OffsetDateTime) -> Availability {
    if state.hard_locked {
        return Availability::HardLocked;
    }
    if state.needs_admin_review || state.needs_strong_factor {
        let reason = state.reason.clone().unwrap_or_else(|| "frozen".into());
        return Availability::Frozen { until: None, reason };
    }
    match state.frozen_until {
        Some(until) if until > now => Availability::Frozen {
            until: Some(until),
            reason: state.reason.clone().unwrap_or_else(|| "frozen".into()),
        },
        _ => Availability::Available,
    }
}

/// The source network of a client IP: its /24 (IPv4) or /64 (IPv6), so an attacker rotating
/// addresses within one network is still one source.
pub fn source_prefix(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
        }
    }
}

/// What a new prompt walks into, besides the user's standing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptContext {
    /// Distinct other users prompted from the prompt's source network lately.
    pub source_users: u32,
    /// The user's pending prompts this one supersedes (each ends unanswered).
    pub superseded: u32,
    /// The user's audible prompts in the last day.
    pub audible_today: u32,
}

/// Whether a new prompt for this user should be silent (no push): they are under suspicion or
/// under attack, their recent prompts went unanswered, their audible prompts for the day are
/// spent, or the prompt comes from a source already prompting many users.
pub fn is_silent(state: &PushState, prompt: PromptContext, now: OffsetDateTime, policy: &Policy) -> bool {
    let unanswered = state.unanswered.saturating_add(i32::try_from(prompt.superseded).unwrap_or(i32::MAX));
    state.consecutive_failures >= policy.silent_after_failures
        || unanswered >= policy.silent_after_unanswered
        || prompt.audible_today >= policy.audible_per_day
        || is_under_attack(state, now, policy)
        || prompt.source_users.saturating_mul(2) >= policy.spray_users
}

/// Whether an attack incident (refused prompts) is going on.
pub fn is_under_attack(state: &PushState, now: OffsetDateTime, policy: &Policy) -> bool {
    state.under_attack_since.is_some()
        && state.last_refused_at.is_some_and(|at| now - at < policy.incident_window)
}

/// A prompt for this user was refused (budget or spray): counts towards the incident; `true`
/// when it opens a new one (alert once per incident).
pub fn refuse_prompt(state: &mut PushState, now: OffsetDateTime, policy: &Policy) -> bool {
    let is_new = !is_under_attack(state, now, policy);
    if is_new {
        state.under_attack_since = Some(now);
        state.refused_prompts = 0;
    }
    state.refused_prompts = state.refused_prompts.saturating_add(1);
    state.last_refused_at = Some(now);
    is_new
}

/// How bad a user's standing looks on the fatigue dashboard; higher is worse.
pub fn attack_score(state: &PushState, now: OffsetDateTime, policy: &Policy) -> i64 {
    i64::from(state.consecutive_failures)
        + i64::from(state.unanswered)
        + i64::from(state.refused_prompts)
        + 10 * i64::from(state.frozen_until.is_some_and(|until| until > now))
        + 20 * i64::from(is_under_attack(state, now, policy))
        + 50 * i64::from(state.needs_strong_factor)
        + 100 * i64::from(state.needs_admin_review)
        + 1000 * i64::from(state.hard_locked)
}

/// Who lifts a push freeze, and so which freezes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfreezer {
    /// An app (`fatigue:write`): a timed freeze only; the ladder's counts stay, so unfreezing
    /// in a loop never buys another number guess, a louder prompt or a way round the hard lock.
    App,
    /// One admin or help-desk agent: also the "prove a passkey" freeze (a second wrong number)
    /// and the hard lock, with the counts reset — not a "not me" quarantine.
    Admin,
    /// A four-eyes request a second admin approved: everything.
    Reviewed,
}

/// The state after `by` lifts the user's freeze, or `None` if that is not theirs to lift.
pub fn unfreeze_by(state: &PushState, by: Unfreezer) -> Option<PushState> {
    match by {
        Unfreezer::App if state.needs_strong_factor || state.needs_admin_review || state.hard_locked => None,
        Unfreezer::App => Some(PushState { frozen_until: None, reason: None, ..state.clone() }),
        Unfreezer::Admin if state.needs_admin_review => None,
        Unfreezer::Admin | Unfreezer::Reviewed => Some(unfreeze(state.clone())),
    }
}

/// Lifts every freeze and lock (an admin decision, audited by the caller).
pub fn unfreeze(state: PushState) -> PushState {
    PushState { last_wrong_number_at: state.last_wrong_number_at, ..PushState::default() }
}

/// A successful passkey sign-in: the user proved the stronger factor. It resets the failure
/// streak and ends an attack incident, and lifts a wrong-number or denial freeze (timed, or
/// waiting for a stronger factor); a "not me" quarantine and a hard lock stay (admin only).
pub fn after_passkey_sign_in(state: PushState) -> PushState {
    let mut next = PushState {
        consecutive_failures: 0,
        freezes: 0,
        unanswered: 0,
        refused_prompts: 0,
        under_attack_since: None,
        last_refused_at: None,
        ..state
    };
    if !next.needs_admin_review && !next.hard_locked {
        next.frozen_until = None;
        next.needs_strong_factor = false;
        next.last_wrong_number_at = None;
        next.reason = None;
    }
    next
}

/// Why a new challenge was refused for the user's sake (fatigue defence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Push is frozen or locked for this user.
    PushUnavailable(Availability),
    /// The user's push budget is spent until `retry_at`.
    BudgetExhausted { retry_at: OffsetDateTime },
    /// The prompt's source network has prompted too many different users (push spray).
    SourceThrottled { network: String, users: u32 },
}

/// Checks the user's standing, budget and source for a new challenge (inside its
/// transaction); returns whether the prompt must be silent. `network` is the prompt's source
/// network, whose spread `prompt.source_users` counts.
pub fn gate(
    state: &PushState,
    recent: &[OffsetDateTime],
    network: Option<&str>,
    prompt: PromptContext,
    now: OffsetDateTime,
    policy: &Policy,
) -> Result<bool, Refusal> {
    match availability(state, now) {
        Availability::Available => {}
        unavailable => return Err(Refusal::PushUnavailable(unavailable)),
    }
    let in_window: Vec<&OffsetDateTime> =
        recent.iter().filter(|at| **at > now - policy.budget_window).collect();
    if in_window.len() >= policy.push_budget as usize {
        let oldest = in_window.iter().min().map_or(now, |at| **at);
        return Err(Refusal::BudgetExhausted { retry_at: oldest + policy.budget_window });
    }
    if let Some(network) = network
        && prompt.source_users >= policy.spray_users
    {
        return Err(Refusal::SourceThrottled { network: network.to_owned(), users: prompt.source_users });
    }
    Ok(is_silent(state, prompt, now, policy))
}

/// The alert a refused prompt raises when it opens an attack incident (once per incident).
pub fn incident_alert_details(user: UserId, state: &PushState, reason: &str) -> String {
    serde_json::json!({
        "user_id": user,
        "reason": reason,
        "under_attack_since": state.under_attack_since.map(|t| t.unix_timestamp()),
    })
    .to_string()
}

/// The alert an escalation warrants: a new freeze, quarantine or lock (not a repeated one).
fn escalation_alert(before: &PushState, after: &PushState) -> Option<AlertKind> {
    if after.hard_locked && !before.hard_locked {
        Some(AlertKind::PushLocked)
    } else if after.needs_admin_review && !before.needs_admin_review {
        Some(AlertKind::PushQuarantined)
    } else if after.needs_strong_factor && !before.needs_strong_factor {
        Some(AlertKind::PushFrozenUntilStrongFactor)
    } else if after.frozen_until > before.frozen_until {
        Some(AlertKind::PushFrozen)
    } else {
        None
    }
}

/// The ladder's move for a transition, computed from the locked standing: the state to write
/// (only when it changes) and the alert an escalation raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderMove {
    pub next: PushState,
    pub alert: Option<AlertKind>,
}

impl LadderMove {
    pub fn alert_details(&self, user: UserId) -> String {
        serde_json::json!({
            "user_id": user,
            "reason": self.next.reason,
            "consecutive_failures": self.next.consecutive_failures,
            "frozen_until": self.next.frozen_until.map(|t| t.unix_timestamp()),
        })
        .to_string()
    }
}

/// What reaching `to` does to the user's standing `state`; `None` when nothing changes.
pub fn ladder_move(
    state: &PushState,
    to: ChallengeState,
    now: OffsetDateTime,
    policy: &Policy,
) -> Option<LadderMove> {
    let next = next_push_state(state.clone(), to, now, policy)?;
    (next != *state).then(|| LadderMove { alert: escalation_alert(state, &next), next })
}

/// The ladder's new state after `to`, or `None` when `to` says nothing about the user.
fn next_push_state(
    state: PushState,
    to: ChallengeState,
    now: OffsetDateTime,
    policy: &Policy,
) -> Option<PushState> {
    PushEvent::from_state(to).map(|event| apply(state, event, now, policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 10:00 UTC);

    fn run(events: &[PushEvent]) -> PushState {
        events.iter().fold(PushState::default(), |s, e| apply(s, *e, T0, &Policy::default()))
    }

    /// Apps lift a timed freeze and nothing else, keeping the counts; one admin lifts the rest
    /// but a "not me" quarantine, which takes two.
    #[test]
    fn each_unfreezer_lifts_only_its_freezes() {
        let frozen = PushState {
            frozen_until: Some(T0),
            consecutive_failures: 3,
            unanswered: 2,
            under_attack_since: Some(T0),
            ..PushState::default()
        };
        let by_app = unfreeze_by(&frozen, Unfreezer::App).unwrap();
        assert_eq!(by_app.frozen_until, None);
        assert_eq!(
            (by_app.consecutive_failures, by_app.unanswered, by_app.under_attack_since),
            (3, 2, Some(T0)),
            "the ladder's counts stay"
        );
        let strong = PushState { needs_strong_factor: true, ..frozen.clone() };
        let quarantined = PushState { needs_admin_review: true, ..frozen.clone() };
        let locked = PushState { hard_locked: true, ..frozen.clone() };
        for held in [&strong, &quarantined, &locked] {
            assert_eq!(unfreeze_by(held, Unfreezer::App), None, "{held:?}");
        }
        assert_eq!(unfreeze_by(&strong, Unfreezer::Admin), Some(unfreeze(strong.clone())));
        assert_eq!(unfreeze_by(&locked, Unfreezer::Admin), Some(unfreeze(locked.clone())));
        assert_eq!(unfreeze_by(&quarantined, Unfreezer::Admin), None);
        assert_eq!(unfreeze_by(&quarantined, Unfreezer::Reviewed), Some(unfreeze(quarantined.clone())));
    }

    #[test]
    fn a_passkey_sign_in_lifts_freezes_but_never_a_quarantine_or_a_lock() {
        let policy = Policy::default();
        let twice_wrong = run(&[PushEvent::WrongNumber, PushEvent::WrongNumber]);
        assert!(matches!(availability(&twice_wrong, T0), Availability::Frozen { until: None, .. }));
        assert_eq!(availability(&after_passkey_sign_in(twice_wrong), T0), Availability::Available);
        let denied = run(&[PushEvent::Denied, PushEvent::Denied, PushEvent::Denied]);
        let lifted = after_passkey_sign_in(denied);
        assert_eq!((availability(&lifted, T0), lifted.consecutive_failures), (Availability::Available, 0));
        let reported = apply(denied_twice(), PushEvent::Reported, T0, &policy);
        let still = after_passkey_sign_in(reported);
        assert!(still.needs_admin_review && matches!(availability(&still, T0), Availability::Frozen { .. }));
        assert_eq!(still.consecutive_failures, 0, "the streak resets all the same");
        let locked = PushState { hard_locked: true, ..PushState::default() };
        assert_eq!(availability(&after_passkey_sign_in(locked), T0), Availability::HardLocked);
    }

    fn denied_twice() -> PushState {
        run(&[PushEvent::Denied, PushEvent::Denied])
    }

    #[test]
    fn three_failures_freeze_for_fifteen_minutes_then_double() {
        let state = run(&[PushEvent::Denied, PushEvent::TimedOut]);
        assert_eq!(availability(&state, T0), Availability::Available);
        let state = apply(state, PushEvent::Denied, T0, &Policy::default());
        assert_eq!(state.frozen_until, Some(T0 + Duration::minutes(15)));
        let state = apply(state, PushEvent::Denied, T0, &Policy::default());
        assert_eq!(state.frozen_until, Some(T0 + Duration::minutes(30)));
        let state = apply(state, PushEvent::Denied, T0, &Policy::default());
        assert_eq!(state.frozen_until, Some(T0 + Duration::minutes(60)));
        assert_eq!(availability(&state, T0 + Duration::minutes(61)), Availability::Available);
    }

    #[test]
    fn freezes_are_capped_at_a_day() {
        let state = run(&[PushEvent::Denied; 20]);
        assert_eq!(state.frozen_until, Some(T0 + Duration::hours(24)));
    }

    #[test]
    fn one_wrong_number_freezes_two_need_a_stronger_factor() {
        let state = run(&[PushEvent::WrongNumber]);
        assert_eq!(
            availability(&state, T0),
            Availability::Frozen { until: Some(T0 + Duration::minutes(15)), reason: "wrong_number".into() }
        );
        let later = T0 + Duration::hours(2);
        let state = apply(state, PushEvent::WrongNumber, later, &Policy::default());
        assert_eq!(
            availability(&state, later + Duration::days(3)),
            Availability::Frozen { until: None, reason: "second_wrong_number".into() }
        );
        // A wrong number more than 24 h after the last one starts over.
        let state = apply(
            run(&[PushEvent::WrongNumber]),
            PushEvent::WrongNumber,
            T0 + Duration::hours(25),
            &Policy::default(),
        );
        assert!(!state.needs_strong_factor);
    }

    #[test]
    fn approval_resets_the_streak_and_reports_need_an_admin() {
        let state = run(&[PushEvent::Denied, PushEvent::Denied, PushEvent::Approved, PushEvent::Denied]);
        assert_eq!((state.consecutive_failures, availability(&state, T0)), (1, Availability::Available));
        let state = run(&[PushEvent::Reported]);
        assert!(matches!(
            availability(&state, T0 + Duration::days(30)),
            Availability::Frozen { until: None, .. }
        ));
        assert_eq!(availability(&unfreeze(state), T0), Availability::Available);
    }

    #[test]
    fn a_hundred_failures_lock_push() {
        let state = run(&[PushEvent::TimedOut; 99]);
        assert!(!state.hard_locked);
        let state = apply(state, PushEvent::TimedOut, T0, &Policy::default());
        assert_eq!(availability(&state, T0 + Duration::days(365)), Availability::HardLocked);
    }

    #[test]
    fn sources_are_networks() {
        assert_eq!(source_prefix("203.0.113.77").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(source_prefix("2001:db8:1:2:3:4:5:6").as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(source_prefix(""), None);
    }

    #[test]
    fn suspicion_makes_prompts_silent() {
        let policy = Policy::default();
        let quiet = PromptContext::default();
        assert!(!is_silent(&PushState::default(), quiet, T0, &policy));
        assert!(is_silent(&run(&[PushEvent::Denied, PushEvent::Denied]), quiet, T0, &policy));
        assert!(is_silent(&PushState::default(), PromptContext { source_users: 10, ..quiet }, T0, &policy));
    }

    /// Cancel-and-retry: prompts that end unanswered never count as failures, but two in a row
    /// (including the one a new prompt supersedes) make new prompts silent; an answer resets it.
    #[test]
    fn unanswered_prompts_make_prompts_silent_until_an_answer() {
        let policy = Policy::default();
        let quiet = PromptContext::default();
        let once = run(&[PushEvent::Unanswered]);
        assert_eq!((once.consecutive_failures, once.unanswered), (0, 1));
        assert!(!is_silent(&once, quiet, T0, &policy));
        assert!(is_silent(&once, PromptContext { superseded: 1, ..quiet }, T0, &policy));
        assert!(is_silent(&run(&[PushEvent::Unanswered, PushEvent::TimedOut]), quiet, T0, &policy));
        let answered = run(&[PushEvent::Unanswered, PushEvent::Unanswered, PushEvent::Denied]);
        assert_eq!(answered.unanswered, 0);
        assert!(!is_silent(&PushState::default(), PromptContext { audible_today: 9, ..quiet }, T0, &policy));
        assert!(is_silent(&PushState::default(), PromptContext { audible_today: 10, ..quiet }, T0, &policy));
    }

    /// Refused prompts open one incident (one alert), keep it open while they go on, and the
    /// incident ends with an approval or a quiet day.
    #[test]
    fn refused_prompts_open_one_incident() {
        let policy = Policy::default();
        let mut state = PushState::default();
        assert!(refuse_prompt(&mut state, T0, &policy), "the first refusal opens an incident");
        for minute in 1..45 {
            assert!(!refuse_prompt(&mut state, T0 + Duration::minutes(minute), &policy));
        }
        assert_eq!(state.refused_prompts, 45);
        assert!(is_under_attack(&state, T0 + Duration::hours(1), &policy));
        assert!(is_silent(&state, PromptContext::default(), T0 + Duration::hours(1), &policy));
        assert!(!is_under_attack(&state, T0 + Duration::hours(25), &policy), "a quiet day ends it");
        assert!(refuse_prompt(&mut state.clone(), T0 + Duration::hours(25), &policy), "then a new one");
        let approved = apply(state, PushEvent::Approved, T0 + Duration::hours(1), &policy);
        assert!(!is_under_attack(&approved, T0 + Duration::hours(1), &policy));
    }

    /// The gate refuses in order — standing, budget, spray — and otherwise says how to prompt.
    #[test]
    fn the_gate_refuses_frozen_users_spent_budgets_and_spraying_networks() {
        let policy = Policy::default();
        let quiet = PromptContext::default();
        let frozen = run(&[PushEvent::WrongNumber]);
        assert!(matches!(gate(&frozen, &[], None, quiet, T0, &policy), Err(Refusal::PushUnavailable(_))));
        let recent: Vec<OffsetDateTime> = (0..5).map(|m| T0 - Duration::minutes(10 - m)).collect();
        assert_eq!(
            gate(&PushState::default(), &recent, None, quiet, T0, &policy),
            Err(Refusal::BudgetExhausted { retry_at: T0 - Duration::minutes(10) + policy.budget_window })
        );
        assert_eq!(gate(&PushState::default(), &recent[1..], None, quiet, T0, &policy), Ok(false));
        let spraying = PromptContext { source_users: 20, ..quiet };
        assert_eq!(
            gate(&PushState::default(), &[], Some("203.0.113.0/24"), spraying, T0, &policy),
            Err(Refusal::SourceThrottled { network: "203.0.113.0/24".into(), users: 20 })
        );
        let busy = PromptContext { source_users: 10, ..quiet };
        assert_eq!(gate(&PushState::default(), &[], Some("203.0.113.0/24"), busy, T0, &policy), Ok(true));
    }

    /// A ladder move writes only a changed standing and alerts only on a new escalation.
    #[test]
    fn ladder_moves_alert_once_per_escalation() {
        let policy = Policy::default();
        assert_eq!(ladder_move(&PushState::default(), ChallengeState::Approved, T0, &policy), None);
        assert_eq!(ladder_move(&PushState::default(), ChallengeState::Redeemed, T0, &policy), None);
        let twice = run(&[PushEvent::Denied, PushEvent::Denied]);
        let third = ladder_move(&twice, ChallengeState::Denied, T0, &policy).unwrap();
        assert_eq!(third.alert, Some(AlertKind::PushFrozen));
        let reported = ladder_move(&PushState::default(), ChallengeState::Reported, T0, &policy).unwrap();
        assert_eq!(reported.alert, Some(AlertKind::PushQuarantined));
        let again = ladder_move(&reported.next, ChallengeState::Reported, T0, &policy);
        assert_eq!(again, None, "a second report changes nothing and raises nothing");
        let cancelled = ladder_move(&PushState::default(), ChallengeState::Cancelled, T0, &policy).unwrap();
        assert_eq!((cancelled.next.unanswered, cancelled.alert), (1, None));
    }

    proptest! {
        /// Whatever happens, the ladder only tightens until an approval or an admin: a failure
        /// never shortens a freeze or lifts a lock.
        #[test]
        fn failures_never_loosen_the_ladder(events in proptest::collection::vec(0u8..5, 1..60)) {
            let mut state = PushState::default();
            for e in events {
                let event = [PushEvent::Denied, PushEvent::TimedOut, PushEvent::WrongNumber, PushEvent::Reported, PushEvent::Unanswered][usize::from(e)];
                let next = apply(state.clone(), event, T0, &Policy::default());
                prop_assert!(next.frozen_until >= state.frozen_until);
                prop_assert!(next.hard_locked >= state.hard_locked);
                prop_assert!(next.needs_strong_factor >= state.needs_strong_factor);
                prop_assert!(next.needs_admin_review >= state.needs_admin_review);
                state = next;
            }
        }
    }
}
