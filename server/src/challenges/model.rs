//! The challenge state machine, number drawing and comparison. No I/O: the security rules live
//! here, where property tests hit them hardest.
//!
//! ```text
//! pending ─┬─> approved ──> redeemed
//!          ├─> denied
//!          ├─> denied_wrong_number
//!          ├─> reported
//!          ├─> expired
//!          └─> cancelled
//! ```

use std::fmt;
use std::str::FromStr;

use countersign_mobile_protocol::Decision;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeState {
    Pending,
    Approved,
    Denied,
    DeniedWrongNumber,
    Reported,
    Expired,
    Cancelled,
    Redeemed,
}

impl ChallengeState {
    pub const ALL: [ChallengeState; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::DeniedWrongNumber,
        Self::Reported,
        Self::Expired,
        Self::Cancelled,
        Self::Redeemed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::DeniedWrongNumber => "denied_wrong_number",
            Self::Reported => "reported",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Redeemed => "redeemed",
        }
    }

    /// Whether `self → next` is an edge of the state machine.
    pub fn can_become(self, next: ChallengeState) -> bool {
        use ChallengeState::*;
        matches!(
            (self, next),
            (Pending, Approved | Denied | DeniedWrongNumber | Reported | Expired | Cancelled)
                | (Approved, Redeemed)
        )
    }

    /// No edge leaves these states (approved still has one: redeem).
    pub fn is_final(self) -> bool {
        ChallengeState::ALL.iter().all(|next| !self.can_become(*next))
    }
}

impl fmt::Display for ChallengeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChallengeState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChallengeState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown state `{s}`"))
    }
}

/// Where a device's answer takes a pending challenge. A wrong number ends the challenge
/// whatever was meant: whoever typed it cannot see the login screen.
pub fn outcome(decision: Decision, is_number_correct: bool) -> ChallengeState {
    match decision {
        Decision::Approve if is_number_correct => ChallengeState::Approved,
        Decision::Approve => ChallengeState::DeniedWrongNumber,
        Decision::Deny => ChallengeState::Denied,
        Decision::Report => ChallengeState::Reported,
    }
}

pub const MIN_DIGITS: u8 = 2;
pub const MAX_DIGITS: u8 = 6;

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomFailure;

/// A uniformly random number of `digits` digits (leading zeros kept), avoiding `avoid`
/// (the user's recent numbers, by tag) so two prompts in a row never show the same number.
pub fn draw_number(
    digits: u8,
    rng: &dyn SecureRandom,
    mut is_recent: impl FnMut(&str) -> bool,
) -> Result<String, RandomFailure> {
    let digits = digits.clamp(MIN_DIGITS, MAX_DIGITS);
    let modulus = 10u32.pow(u32::from(digits));
    // Rejection sampling: only values below the largest multiple of `modulus` are unbiased.
    let limit = u32::MAX - (u32::MAX % modulus);
    for _ in 0..64 {
        let mut bytes = [0u8; 4];
        rng.fill(&mut bytes).map_err(|_| RandomFailure)?;
        let value = u32::from_be_bytes(bytes);
        if value >= limit {
            continue;
        }
        let number = format!("{:0width$}", value % modulus, width = usize::from(digits));
        if !is_recent(&number) {
            return Ok(number);
        }
    }
    Err(RandomFailure)
}

/// Keyed tags of numbers: the database stores `tag(user, number)`, never the number in a form
/// that can be compared without the key.
#[derive(Clone)]
pub struct NumberTagger {
    key: hmac::Key,
}

impl fmt::Debug for NumberTagger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NumberTagger(..)")
    }
}

impl NumberTagger {
    pub fn new(key: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    pub fn tag(&self, user: &uuid::Uuid, number: &str) -> Vec<u8> {
        let mut message = Vec::with_capacity(16 + 1 + number.len());
        message.extend_from_slice(user.as_bytes());
        message.push(0);
        message.extend_from_slice(number.as_bytes());
        hmac::sign(&self.key, &message).as_ref().to_vec()
    }

    /// Constant-time: the typed number is never compared byte by byte with the real one.
    pub fn matches(&self, user: &uuid::Uuid, typed: &str, stored_tag: &[u8]) -> bool {
        bool::from(self.tag(user, typed).as_slice().ct_eq(stored_tag))
    }
}

/// A CSPRNG for numbers and nonces.
pub fn rng() -> SystemRandom {
    SystemRandom::new()
}

/// A challenge record for unit tests elsewhere: `state`, created and decided at `at`, expiring
/// a minute later.
#[cfg(test)]
pub(crate) fn test_record(state: ChallengeState, at: time::OffsetDateTime) -> crate::store::ChallengeRecord {
    crate::store::ChallengeRecord {
        id: crate::ids::ChallengeId::random(),
        app_id: crate::ids::AppId::random(),
        user_id: crate::ids::UserId::random(),
        state,
        number_tag: vec![1; 32],
        number_sealed: vec![2; 40],
        number_digits: 3,
        server_nonce: vec![3; 32],
        app_name: "portal".into(),
        ip: "192.0.2.1".into(),
        user_agent: "test".into(),
        location: None,
        created_at: at,
        expires_at: at + time::Duration::minutes(1),
        decided_at: Some(at),
        decided_by_device: None,
        redeemed_at: None,
        idempotency_key: None,
        request_hash: None,
        is_silent: false,
        source_prefix: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_pending_and_approved_have_exits() {
        for state in ChallengeState::ALL {
            let exits: Vec<_> = ChallengeState::ALL.into_iter().filter(|n| state.can_become(*n)).collect();
            match state {
                ChallengeState::Pending => assert_eq!(exits.len(), 6),
                ChallengeState::Approved => assert_eq!(exits, vec![ChallengeState::Redeemed]),
                _ => assert!(exits.is_empty() && state.is_final(), "{state} must be final"),
            }
            assert_eq!(state.as_str().parse::<ChallengeState>().unwrap(), state);
        }
    }

    #[test]
    fn a_wrong_number_is_never_an_approval() {
        assert_eq!(outcome(Decision::Approve, true), ChallengeState::Approved);
        assert_eq!(outcome(Decision::Approve, false), ChallengeState::DeniedWrongNumber);
        assert_eq!(outcome(Decision::Deny, true), ChallengeState::Denied);
        assert_eq!(outcome(Decision::Report, false), ChallengeState::Reported);
    }

    #[test]
    fn numbers_are_uniform_enough_and_avoid_recent_ones() {
        let rng = rng();
        let mut counts = [0u32; 10];
        for _ in 0..5_000 {
            let n = draw_number(2, &rng, |_| false).unwrap();
            assert_eq!(n.len(), 2);
            counts[usize::from(n.as_bytes()[0] - b'0')] += 1;
        }
        // Each leading digit expects 500; a broken generator lands far outside this band.
        assert!(counts.iter().all(|c| (380..=620).contains(c)), "{counts:?}");
        for _ in 0..200 {
            let n = draw_number(3, &rng, |n| n.starts_with('0')).unwrap();
            assert!(!n.starts_with('0'));
        }
    }

    #[test]
    fn tags_are_per_user_and_compare_exactly() {
        let tagger = NumberTagger::new(&[1; 32]);
        let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let tag = tagger.tag(&alice, "042");
        assert!(tagger.matches(&alice, "042", &tag));
        assert!(!tagger.matches(&alice, "42", &tag), "leading zeros matter");
        assert!(!tagger.matches(&alice, "043", &tag));
        assert!(!tagger.matches(&bob, "042", &tag), "a tag is bound to its user");
    }

    proptest! {
        /// The state machine never leaves a final state, whatever sequence is attempted.
        #[test]
        fn final_states_stay_final(path in proptest::collection::vec(0usize..8, 1..20)) {
            let mut state = ChallengeState::Pending;
            for i in path {
                let next = ChallengeState::ALL[i];
                if state.can_become(next) {
                    prop_assert!(!state.is_final());
                    state = next;
                }
            }
            if state.is_final() {
                prop_assert!(ChallengeState::ALL.iter().all(|n| !state.can_become(*n)));
            }
        }

        #[test]
        fn drawn_numbers_have_exactly_the_digits(digits in MIN_DIGITS..=MAX_DIGITS) {
            let n = draw_number(digits, &rng(), |_| false).unwrap();
            prop_assert_eq!(n.len(), usize::from(digits));
            prop_assert!(n.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
