//! What a user's standing and devices mean for each factor. Pure: no I/O.

use time::OffsetDateTime;

use crate::fatigue::model::{Availability, PushState, availability};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    /// Number matching on an enrolled phone.
    Push,
    Passkey,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Push => "push",
            FactorKind::Passkey => "passkey",
        }
    }
}

/// One factor: usable now, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub kind: FactorKind,
    /// Why it cannot be used now; `None` when it can.
    pub unavailable_because: Option<String>,
}

impl Factor {
    pub fn is_available(&self) -> bool {
        self.unavailable_because.is_none()
    }
}

/// Everything a user may use, for `GET /v1/users/{u}/factors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factors {
    pub username: String,
    pub factors: Vec<Factor>,
    /// No usable device: the user must enroll first.
    pub enrollment_required: bool,
}

/// Push for a user without an active device (or a user who does not exist).
pub fn push_without_device() -> Factor {
    Factor {
        kind: FactorKind::Push,
        unavailable_because: Some("no enrolled device: create an enrollment".to_owned()),
    }
}

/// Push for a user with a device: available unless their standing says otherwise.
pub fn push(state: &PushState, now: OffsetDateTime) -> Factor {
    let unavailable_because = match availability(state, now) {
        Availability::Available => None,
        Availability::Frozen { until: Some(until), reason } => Some(format!(
            "push frozen until {} ({reason}); use a passkey",
            until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        )),
        Availability::Frozen { until: None, reason } => {
            Some(format!("push frozen ({reason}); use a passkey or ask an admin"))
        }
        Availability::HardLocked => Some(format!(
            "push locked ({}); use a passkey or ask an admin",
            state.reason.clone().unwrap_or_default()
        )),
    };
    Factor { kind: FactorKind::Push, unavailable_because }
}

/// Passkeys, until they are built.
pub fn passkey() -> Factor {
    Factor { kind: FactorKind::Passkey, unavailable_because: Some("no passkey registered".to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fatigue::model::{Policy, PushEvent, apply};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-30 10:00 UTC);

    #[test]
    fn push_says_why_it_is_unavailable() {
        assert!(push(&PushState::default(), T0).is_available());
        let frozen = apply(PushState::default(), PushEvent::WrongNumber, T0, &Policy::default());
        let reason = push(&frozen, T0).unavailable_because.unwrap();
        assert!(reason.starts_with("push frozen until 2026-11-30T10:15:00Z (wrong_number)"), "{reason}");
        let reported = apply(PushState::default(), PushEvent::Reported, T0, &Policy::default());
        assert!(push(&reported, T0).unavailable_because.unwrap().contains("ask an admin"));
        assert!(!push_without_device().is_available() && !passkey().is_available());
    }
}
