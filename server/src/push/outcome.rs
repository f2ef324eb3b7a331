//! Turning what happened on the wire into a [`PushOutcome`], the parts both providers share:
//! transient statuses and `retry-after`, transport failures, expired messages, and the one
//! log line and metric per attempt.
//!
//! Nothing here may log a device token, a provider credential or a payload: the challenge id
//! (a protocol `ChallengeId`, `[A-Za-z0-9_-]`) and the provider's reason code are all we log.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{PushMessage, PushOutcome};

/// Which provider an outcome came from, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }
}

/// Statuses both providers use for "not now": rate limited, or unavailable.
pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// A transient failure, honouring the provider's `retry-after` if it sent one.
pub fn retry(headers: &HeaderMap, now: OffsetDateTime, reason: String) -> PushOutcome {
    PushOutcome::Retry { after: retry_after(headers, now), reason }
}

/// `retry-after` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3); a date in the past means
/// "now". Anything unparseable is ignored: the caller's backoff applies instead.
pub fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let http_date = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, http_date).ok()?.assume_utc();
    Some((at - now).try_into().unwrap_or(Duration::ZERO))
}

/// A request that got no HTTP response. Timeouts and connection failures are the provider
/// being down or unreachable: transient. The error's URL is dropped first because APNs puts
/// the device token in the path.
pub fn from_request_error(error: reqwest::Error) -> PushOutcome {
    let error = error.without_url();
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_builder() {
        return PushOutcome::Failed { reason: format!("invalid request: {}", innermost(&error)) };
    } else {
        "request failed"
    };
    PushOutcome::Retry { after: None, reason: format!("{kind}: {}", innermost(&error)) }
}

/// The most specific cause of an error (e.g. "Connection refused (os error 111)").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A message whose challenge has already expired is not sent: the phone could only show a
/// dead challenge. `None` while it still matters.
pub fn already_expired(message: &PushMessage, now: OffsetDateTime) -> Option<PushOutcome> {
    (message.expires_at <= now)
        .then(|| PushOutcome::Failed { reason: "challenge already expired".to_owned() })
}

/// A provider's reason code, if it looks like one (`BadDeviceToken`, `UNREGISTERED`): anything
/// else is replaced, so a misbehaving endpoint cannot put arbitrary text into our logs.
pub fn reason_code(code: Option<&str>) -> &str {
    match code {
        Some(code)
            if !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            code
        }
        Some(_) => "unrecognised reason",
        None => "no reason given",
    }
}

/// The log line and metric for one attempt. Logs the challenge id and outcome only.
pub fn record(provider: Provider, challenge_id: &str, outcome: &PushOutcome) {
    let provider_name = provider.name();
    let kind = match outcome {
        PushOutcome::Delivered => {
            tracing::debug!(provider = provider_name, challenge_id, "push delivered");
            "delivered"
        }
        PushOutcome::TokenInvalid { reason } => {
            tracing::info!(
                provider = provider_name,
                challenge_id,
                reason,
                "push token rejected by the provider"
            );
            "token_invalid"
        }
        PushOutcome::Retry { after, reason } => {
            let retry_after_secs = after.map(|after| after.as_secs());
            tracing::info!(
                provider = provider_name,
                challenge_id,
                reason,
                retry_after_secs,
                "push not delivered, will retry"
            );
            "retry"
        }
        PushOutcome::Failed { reason } => {
            tracing::warn!(provider = provider_name, challenge_id, reason, "push failed");
            "failed"
        }
        PushOutcome::NotConfigured => {
            // Per push, so not a warning: `[push]` validation at start is where it is loud.
            tracing::info!(provider = provider_name, challenge_id, "push provider not configured");
            "not_configured"
        }
    };
    metrics::counter!("countersign_push_attempts_total", "provider" => provider_name, "outcome" => kind)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use time::macros::datetime;

    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = datetime!(2030-01-01 00:00:00 UTC);
        assert_eq!(retry_after(&headers("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after(&headers("Tue, 01 Jan 2030 00:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after(&headers("Mon, 31 Dec 2029 23:00:00 GMT"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-5"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn reason_codes_are_passed_through_only_when_they_look_like_codes() {
        assert_eq!(reason_code(Some("BadDeviceToken")), "BadDeviceToken");
        assert_eq!(reason_code(Some("UNREGISTERED")), "UNREGISTERED");
        assert_eq!(reason_code(Some("token abc\nforged log line")), "unrecognised reason");
        assert_eq!(reason_code(None), "no reason given");
    }
}
