//! The kinds of security alert: one spelling each, as webhook receivers match on it.

use std::fmt;

/// What an alert warns about. The string form is the `kind` of the stored alert and of the
/// webhook body; it is a contract with receivers, so a kind is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Push frozen for a while after repeated wrong numbers or denials.
    PushFrozen,
    /// Push frozen until the user proves a strong factor (a passkey) or an admin unfreezes.
    PushFrozenUntilStrongFactor,
    /// The user reported a prompt as "not me": push waits for an admin's review.
    PushQuarantined,
    /// Push hard-locked: only an admin can lift it.
    PushLocked,
    /// A user's prompts are being refused by the budget: an incident, raised once per incident.
    PushBombing,
    /// One network is prompting many users: password spraying.
    PushSpray,
    /// A device's signature counter went backwards: its key may have been copied.
    PossibleClone,
    /// An admin asked for a four-eyes change that waits for a second admin.
    AdminRequestPending,
    /// An admin's removal was scheduled: signed out now, removed after the delay unless cancelled.
    AdminRemovalScheduled,
    /// A scheduled admin removal was taken back by one admin (with a step-up): the other
    /// admins should know, as it undoes two admins' decision.
    AdminRemovalCancelled,
    /// A help-desk agent issued a passkey enrollment link for a caller they verified.
    HelpdeskPasskeyLinkIssued,
    /// An admin was created with a bootstrap token (`countersign admin bootstrap`).
    AdminBootstrapped,
    /// An approved four-eyes request changed the fatigue policy.
    FatiguePolicyChanged,
}

impl AlertKind {
    /// Every kind, for docs and tests.
    pub const ALL: &'static [AlertKind] = &[
        AlertKind::PushFrozen,
        AlertKind::PushFrozenUntilStrongFactor,
        AlertKind::PushQuarantined,
        AlertKind::PushLocked,
        AlertKind::PushBombing,
        AlertKind::PushSpray,
        AlertKind::PossibleClone,
        AlertKind::AdminRequestPending,
        AlertKind::AdminRemovalScheduled,
        AlertKind::AdminRemovalCancelled,
        AlertKind::HelpdeskPasskeyLinkIssued,
        AlertKind::AdminBootstrapped,
        AlertKind::FatiguePolicyChanged,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::PushFrozen => "push_frozen",
            AlertKind::PushFrozenUntilStrongFactor => "push_frozen_until_strong_factor",
            AlertKind::PushQuarantined => "push_quarantined",
            AlertKind::PushLocked => "push_locked",
            AlertKind::PushBombing => "push_bombing",
            AlertKind::PushSpray => "push_spray",
            AlertKind::PossibleClone => "possible_clone",
            AlertKind::AdminRequestPending => "admin_request_pending",
            AlertKind::AdminRemovalScheduled => "admin_removal_scheduled",
            AlertKind::AdminRemovalCancelled => "admin_removal_cancelled",
            AlertKind::HelpdeskPasskeyLinkIssued => "helpdesk_passkey_link_issued",
            AlertKind::AdminBootstrapped => "admin_bootstrapped",
            AlertKind::FatiguePolicyChanged => "fatigue_policy_changed",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AlertKind;

    #[test]
    fn each_kind_has_its_own_snake_case_spelling() {
        let mut seen = std::collections::HashSet::new();
        for kind in AlertKind::ALL {
            let s = kind.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert!(seen.insert(s), "{s} spelled twice");
        }
    }
}
