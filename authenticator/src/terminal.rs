//! What the user sees and types: the enrollment confirmation, a challenge's context, the answer
//! prompt, and the machine-readable forms tests rely on.
//!
//! Everything shown here came through a check in `countersign-mobile-protocol` first (display text
//! has no control or bidirectional characters), so it can be printed as is. Nothing here ever
//! shows a matching number: the phone never has one.

use std::io::{self, BufRead as _};

use countersign_mobile_protocol::limits::MAX_NUMBER_DIGITS;
use countersign_mobile_protocol::{ChallengeDetails, ChallengeOutcome, EnrollmentUri, ServerUrl};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::clock::Zone;
use crate::error::Error;

/// Prompt of `watch` after showing a challenge. It is a whole line (the answer is typed on the
/// next one) so that piped output stays line-oriented: the outcome word gets a line of its own.
pub const ANSWER_PROMPT: &str = "Type the number shown on the sign-in screen to approve, d to deny, r to report \"not me\", Enter to skip:";

/// The host (with port) of a base URL: what the user must recognise before enrolling.
pub fn server_host(url: &ServerUrl) -> &str {
    let rest = url.as_str().split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The question shown before enrolling (PROTOCOL.md section 4: the phone MUST show the decoded
/// server host and username and ask the user to confirm, because anyone can print a QR code).
pub fn enrollment_confirmation(uri: &EnrollmentUri) -> String {
    format!(
        "Enroll this authenticator with a Countersign server?\n  \
         server: {host} ({url})\n  \
         user:   {user}\n\
         Continue only if you started this enrollment yourself: anyone can print a QR code.\n\
         Enroll? [y/N] ",
        host = server_host(&uri.server),
        url = uri.server,
        user = uri.user,
    )
}

/// Whether a confirmation answer is a yes (`y` or `yes`, any case); anything else is a no.
pub fn is_yes(line: &str) -> bool {
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A challenge's context for the user, one field per line, ending with a newline.
pub fn describe_challenge(details: &ChallengeDetails, now: u64, zone: Zone) -> String {
    let or_unknown = |text: &str| if text.is_empty() { "(unknown)".to_owned() } else { text.to_owned() };
    format!(
        "challenge {id}\n  \
         app:        {app}\n  \
         ip:         {ip}\n  \
         user agent: {user_agent}\n  \
         location:   {location}\n  \
         created:    {created}\n  \
         expires:    {expires}\n",
        id = details.challenge_id,
        app = details.app_name,
        ip = or_unknown(&details.ip),
        user_agent = or_unknown(&details.user_agent),
        location = or_unknown(details.location.as_deref().unwrap_or("")),
        created = format_time(details.created_at, now, zone),
        expires = if details.is_expired(now) {
            format!("{} (expired)", local_time(details.expires_at, zone))
        } else {
            format_time(details.expires_at, now, zone)
        },
    )
}

/// A unix time for people: `2026-01-01 01:00:42 +01:00 (in 42 s)`, or `… UTC (42 s ago)` when
/// the local offset is unknown.
pub fn format_time(at: u64, now: u64, zone: Zone) -> String {
    format!("{} ({})", local_time(at, zone), relative(at, now))
}

/// `2026-01-01 01:00:42 +01:00`, or `2026-01-01 00:00:42 UTC`; the raw number if out of range.
fn local_time(at: u64, zone: Zone) -> String {
    let Some(utc) = i64::try_from(at).ok().and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
    else {
        return at.to_string();
    };
    let formatted = match zone {
        Zone::Local(offset) => utc.to_offset(offset).format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
        )),
        Zone::Utc => utc.format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")),
    };
    formatted.unwrap_or_else(|_| at.to_string())
}

/// `in 48 s` / `12 s ago` / `now`. The server's clock decides expiry; this is only a hint.
fn relative(at: u64, now: u64) -> String {
    match at.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {} s", at - now),
        std::cmp::Ordering::Less => format!("{} s ago", now - at),
        std::cmp::Ordering::Equal => "now".to_owned(),
    }
}

/// One item of `pending --json`.
#[derive(Debug, Serialize)]
pub struct PendingItem<'a> {
    /// Challenge id.
    pub id: &'a str,
    /// Application name.
    pub app_name: &'a str,
    /// IP of the sign-in, `""` if unknown.
    pub ip: &'a str,
    /// User agent of the sign-in, `""` if unknown.
    pub user_agent: &'a str,
    /// Approximate location, `null` if unknown.
    pub location: Option<&'a str>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

impl<'a> From<&'a ChallengeDetails> for PendingItem<'a> {
    fn from(details: &'a ChallengeDetails) -> Self {
        Self {
            id: details.challenge_id.as_str(),
            app_name: &details.app_name,
            ip: &details.ip,
            user_agent: &details.user_agent,
            location: details.location.as_deref(),
            created_at: details.created_at,
            expires_at: details.expires_at,
        }
    }
}

/// The word printed for an outcome; the same snake_case names as on the wire.
pub const fn outcome_word(outcome: ChallengeOutcome) -> &'static str {
    match outcome {
        ChallengeOutcome::Approved => "approved",
        ChallengeOutcome::Denied => "denied",
        ChallengeOutcome::DeniedWrongNumber => "denied_wrong_number",
        ChallengeOutcome::Reported => "reported",
    }
}

/// What a phone should tell the user after an outcome, when there is more to say than the word.
pub const fn outcome_advice(outcome: ChallengeOutcome) -> Option<&'static str> {
    match outcome {
        ChallengeOutcome::DeniedWrongNumber => Some(
            "the number did not match, so the sign-in was refused and push is paused for a while; \
             if you did not start this sign-in, someone else may be trying to sign in as you",
        ),
        ChallengeOutcome::Reported => {
            Some("reported as \"not me\": push is paused until an administrator has reviewed it")
        }
        ChallengeOutcome::Approved | ChallengeOutcome::Denied => None,
    }
}

/// Checks a typed number: 1 to 10 ASCII digits, leading zeros kept. The phone does not know the
/// real number, so it checks nothing more (PROTOCOL.md 6.4).
pub fn parse_number(text: &str) -> Result<String, String> {
    let is_valid =
        !text.is_empty() && text.len() <= MAX_NUMBER_DIGITS && text.bytes().all(|b| b.is_ascii_digit());
    if is_valid {
        Ok(text.to_owned())
    } else {
        Err(format!("the number must be 1 to {MAX_NUMBER_DIGITS} digits, as shown on the sign-in screen"))
    }
}

/// The user's answer to [`ANSWER_PROMPT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Approve with the digits typed.
    Approve(String),
    /// Deny ("not now").
    Deny,
    /// Report "this was not me".
    Report,
    /// Leave the challenge pending.
    Skip,
}

/// Parses a line typed at [`ANSWER_PROMPT`]: digits, `d`/`deny`, `r`/`report`, or empty.
pub fn parse_answer(line: &str) -> Result<Answer, String> {
    match line.trim() {
        "" => Ok(Answer::Skip),
        "d" | "D" | "deny" => Ok(Answer::Deny),
        "r" | "R" | "report" => Ok(Answer::Report),
        number => parse_number(number).map(Answer::Approve),
    }
}

/// Reads one line from standard input; `None` at end of input.
///
/// Runs on the blocking pool so that the runtime (and reqwest's connection tasks) keep running
/// while the user thinks. Input is line-based, so a test or `tmux send-keys` can drive it.
pub async fn read_line() -> Result<Option<String>, Error> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let read = io::stdin().lock().read_line(&mut line)?;
        Ok((read > 0).then_some(line))
    })
    .await
    .map_err(|error| Error::Terminal(io::Error::other(error)))?
    .map_err(Error::Terminal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_mobile_protocol::{ChallengeId, Nonce};

    #[test]
    fn confirmation_shows_decoded_host_and_user() {
        let uri = EnrollmentUri::parse(
            "countersign://enroll?v=1&server=https%3A%2F%2Fmfa.example.com%3A8443%2Fcs&code=K7Q2-MX9P&user=alice%40example.com",
        )
        .unwrap();
        let text = enrollment_confirmation(&uri);
        assert!(text.contains("server: mfa.example.com:8443 (https://mfa.example.com:8443/cs)"), "{text}");
        assert!(text.contains("user:   alice@example.com"), "{text}");
        assert!(!text.contains("K7Q2"), "the activation code is not shown: {text}");
        assert!(text.ends_with("[y/N] "));
        let local = ServerUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(server_host(&local), "[::1]:8080");
    }

    #[test]
    fn only_yes_confirms() {
        for yes in ["y", "Y", "yes", "YES\n", " yes \r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "y es", "ja"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("042\n"), Ok(Answer::Approve("042".into())));
        assert_eq!(parse_answer("  7 "), Ok(Answer::Approve("7".into())));
        assert_eq!(parse_answer("d\n"), Ok(Answer::Deny));
        assert_eq!(parse_answer("deny"), Ok(Answer::Deny));
        assert_eq!(parse_answer("r"), Ok(Answer::Report));
        assert_eq!(parse_answer("report\r\n"), Ok(Answer::Report));
        assert_eq!(parse_answer("\n"), Ok(Answer::Skip));
        for bad in ["12a", "-1", "1 2", "12345678901", "approve", "٣"] {
            assert!(parse_answer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn challenge_description_has_context_and_no_number() {
        let details = ChallengeDetails {
            challenge_id: ChallengeId::new("ch-1").unwrap(),
            server_nonce: Nonce::from_bytes(&[7; 32]).unwrap(),
            app_name: "Payroll".into(),
            ip: String::new(),
            user_agent: "Firefox/125.0".into(),
            location: None,
            created_at: 100,
            expires_at: 160,
        };
        let text = describe_challenge(&details, 110, Zone::Utc);
        assert!(text.starts_with("challenge ch-1\n"));
        assert!(text.contains("app:        Payroll\n"));
        assert!(text.contains("ip:         (unknown)\n"));
        assert!(text.contains("location:   (unknown)\n"));
        assert!(text.contains("created:    1970-01-01 00:01:40 UTC (10 s ago)\n"), "{text}");
        assert!(text.contains("expires:    1970-01-01 00:02:40 UTC (in 50 s)\n"), "{text}");
        assert!(describe_challenge(&details, 160, Zone::Utc).contains("00:02:40 UTC (expired)"));
        let json = serde_json::to_value(PendingItem::from(&details)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "ch-1", "app_name": "Payroll", "ip": "", "user_agent": "Firefox/125.0",
                               "location": null, "created_at": 100, "expires_at": 160})
        );
    }

    /// Times were printed as raw unix seconds (`expires: 1767225660 (in 42 s)`), which no
    /// user can read: they are shown in local time with the offset, or in UTC saying so.
    #[test]
    fn times_are_shown_in_local_time_with_the_offset_and_relative_to_now() {
        const AT: u64 = 1_767_225_642; // 2026-01-01 00:00:42 UTC
        let paris = Zone::Local(time::UtcOffset::from_hms(1, 0, 0).unwrap());
        let new_york = Zone::Local(time::UtcOffset::from_hms(-5, 0, 0).unwrap());
        let kolkata = Zone::Local(time::UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(format_time(AT, AT - 42, paris), "2026-01-01 01:00:42 +01:00 (in 42 s)");
        assert_eq!(format_time(AT, AT + 42, new_york), "2025-12-31 19:00:42 -05:00 (42 s ago)");
        assert_eq!(format_time(AT, AT, kolkata), "2026-01-01 05:30:42 +05:30 (now)");
        assert_eq!(format_time(AT, AT - 3, Zone::Utc), "2026-01-01 00:00:42 UTC (in 3 s)");
        assert_eq!(format_time(u64::MAX, 0, Zone::Utc), format!("{} (in {} s)", u64::MAX, u64::MAX));
    }

    #[test]
    fn outcome_words_match_the_wire_names() {
        for outcome in [
            ChallengeOutcome::Approved,
            ChallengeOutcome::Denied,
            ChallengeOutcome::DeniedWrongNumber,
            ChallengeOutcome::Reported,
        ] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome_word(outcome));
        }
    }
}
