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

/// What is enrolled for a user, as far as the factors are concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enrolled<'a> {
    /// The push standing, when the user has an active device.
    pub push: Option<&'a PushState>,
    /// Passkeys registered to the user.
    pub passkeys: u32,
    /// The user's policy (or privilege) allows passkeys only.
    pub passkey_required: bool,
}

/// Every factor, in a stable order (push first), usable now or with why not. Enrollment is
/// required when nothing usable is enrolled: no factor at all, or no passkey for a user who may
/// use nothing else; a frozen push with a passkey is no reason to enroll.
pub fn factors(username: String, enrolled: Enrolled<'_>, now: OffsetDateTime) -> Factors {
    let push = if enrolled.passkey_required {
        Factor {
            kind: FactorKind::Push,
            unavailable_because: Some("this user signs in with a passkey only (policy)".to_owned()),
        }
    } else {
        enrolled.push.map_or_else(push_without_device, |state| push(state, now))
    };
    let nothing_else = enrolled.push.is_none() || enrolled.passkey_required;
    Factors {
        username,
        factors: vec![push, passkey(enrolled.passkeys)],
        enrollment_required: nothing_else && enrolled.passkeys == 0,
    }
}

/// Push for a user without an active device (or a user who does not exist).
fn push_without_device() -> Factor {
    Factor {
        kind: FactorKind::Push,
        unavailable_because: Some("no enrolled device: create an enrollment".to_owned()),
    }
}

/// Push for a user with a device: available unless their standing says otherwise.
fn push(state: &PushState, now: OffsetDateTime) -> Factor {
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

/// Passkeys: usable once one is registered. They are never frozen: the fatigue defence holds
/// push only, so a stronger factor always stays open.
fn passkey(registered: u32) -> Factor {
    let unavailable_because = (registered == 0).then(|| "no passkey registered".to_owned());
    Factor { kind: FactorKind::Passkey, unavailable_because }
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
        assert!(!push_without_device().is_available() && !passkey(0).is_available());
    }

    #[test]
    fn enrollment_is_required_only_when_nothing_is_enrolled() {
        let kinds = |f: &Factors| f.factors.iter().map(|f| f.kind).collect::<Vec<_>>();
        let nothing = factors("u".into(), Enrolled::default(), T0);
        assert!(nothing.enrollment_required);
        assert_eq!(kinds(&nothing), [FactorKind::Push, FactorKind::Passkey]);
        assert!(nothing.factors.iter().all(|f| !f.is_available()));

        let frozen = apply(PushState::default(), PushEvent::Reported, T0, &Policy::default());
        let phone = factors("u".into(), Enrolled { push: Some(&frozen), ..Enrolled::default() }, T0);
        assert!(!phone.enrollment_required, "a frozen phone is still enrolled");

        let passkey_only = factors("u".into(), Enrolled { passkeys: 1, ..Enrolled::default() }, T0);
        assert!(!passkey_only.enrollment_required);
        assert_eq!(passkey_only.factors.iter().map(Factor::is_available).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn a_passkey_only_user_has_no_push_and_must_enroll_a_passkey() {
        let clean = PushState::default();
        let phone = Enrolled { push: Some(&clean), passkeys: 0, passkey_required: true };
        let needs = factors("u".into(), phone, T0);
        assert_eq!(
            needs.factors[0].unavailable_because.as_deref(),
            Some("this user signs in with a passkey only (policy)")
        );
        assert!(needs.enrollment_required, "a phone is no usable factor for a passkey-only user");
        let ready = factors("u".into(), Enrolled { passkeys: 1, ..phone }, T0);
        assert_eq!(ready.factors.iter().map(Factor::is_available).collect::<Vec<_>>(), [false, true]);
        assert!(!ready.enrollment_required);
    }
}
