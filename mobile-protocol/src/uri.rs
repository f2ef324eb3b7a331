//! The enrollment URI held by the QR code, and the server base URL it names.
//!
//! `countersign://enroll?v=1&server=<base URL>&code=<activation code>&user=<username>`
//!
//! The parser is deliberately small and strict: every parameter is required exactly once,
//! unknown parameters and versions are refused, values may contain only RFC 3986 unreserved
//! characters and `%XX` escapes (no `+`-as-space), and every field has a size limit. A QR code is
//! attacker-controllable input (anyone can print one), so the phone must show the decoded server
//! and user before enrolling, and the server URL must be HTTPS.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::fields::{ActivationCode, check_text};
use crate::limits::{MAX_ENROLLMENT_URI_LEN, MAX_SERVER_URL_LEN, MAX_USERNAME_LEN, PROTOCOL_VERSION};

/// Scheme, host and query marker every enrollment URI starts with.
pub const ENROLLMENT_URI_PREFIX: &str = "countersign://enroll?";

/// Hosts allowed over plain `http://`, for tests and local demos only.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// A server base URL: `https://host[:port][/path]`, lowercase host, no trailing slash, no query,
/// fragment or user info. `http://` is accepted only for 127.0.0.1, localhost and [::1].
///
/// There is exactly one accepted spelling per URL, and it is compared byte for byte: the phone
/// signs it at enrollment and the server checks it against its own configured base URL, so an
/// enrollment relayed to a different server fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Validates a base URL.
    pub fn parse(url: &str) -> Result<Self, ProtocolError> {
        let invalid = |reason| ProtocolError::InvalidField { field: "server", reason };
        if url.len() > MAX_SERVER_URL_LEN {
            return Err(ProtocolError::FieldTooLong { field: "server", max: MAX_SERVER_URL_LEN });
        }
        let (is_https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(invalid("must start with https://"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = check_authority(authority).map_err(invalid)?;
        if !is_https && !LOOPBACK_HOSTS.contains(&host) {
            return Err(invalid("must use https:// (http:// only for 127.0.0.1, localhost or [::1])"));
        }
        check_path(path).map_err(invalid)?;
        Ok(Self(url.to_owned()))
    }

    /// The URL as text (also its canonical bytes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns the host of `host[:port]` after checking both.
fn check_authority(authority: &str) -> Result<&str, &'static str> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if let Some(port) = port {
        let is_valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u32>().is_ok_and(|p| p <= 65535);
        if !is_valid {
            return Err("port must be a number from 1 to 65535 without leading zeros");
        }
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("IPv6 host must be hex digits and ':' in brackets");
        }
        if inner.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("host must be lowercase");
        }
        return Ok(host);
    }
    if host.is_empty() {
        return Err("host is missing");
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("host must be lowercase");
    }
    let is_valid = host.split('.').all(|label| {
        !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !is_valid {
        return Err("host must be a DNS name or IP address (no user info, no empty labels)");
    }
    Ok(host)
}

/// An optional path: `/segment(/segment)*` of unreserved characters, no `.`/`..`, no trailing `/`.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("must not end with '/'");
    }
    let is_valid = path.split('/').skip(1).all(|segment| {
        !segment.is_empty() && segment != "." && segment != ".." && segment.bytes().all(is_unreserved)
    });
    if !is_valid {
        return Err("path may only hold non-empty segments of A-Z a-z 0-9 - . _ ~ (no query or fragment)");
    }
    Ok(())
}

impl TryFrom<String> for ServerUrl {
    type Error = ProtocolError;
    fn try_from(url: String) -> Result<Self, Self::Error> {
        Self::parse(&url)
    }
}

impl From<ServerUrl> for String {
    fn from(url: ServerUrl) -> Self {
        url.0
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the enrollment QR code holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentUri {
    /// Base URL of the server to enroll with (signed into the enrollment proof).
    pub server: ServerUrl,
    /// Single-use activation code.
    pub code: ActivationCode,
    /// Username, for display only: the server decides the user from the code.
    pub user: String,
}

impl EnrollmentUri {
    /// Builds a URI value, validating the username.
    pub fn new(
        server: ServerUrl,
        code: ActivationCode,
        user: impl Into<String>,
    ) -> Result<Self, ProtocolError> {
        let user = user.into();
        check_text("user", &user, MAX_USERNAME_LEN, false)?;
        Ok(Self { server, code, user })
    }

    /// Parses `countersign://enroll?v=1&server=...&code=...&user=...` (parameters in any order).
    pub fn parse(uri: &str) -> Result<Self, ProtocolError> {
        if uri.len() > MAX_ENROLLMENT_URI_LEN {
            return Err(ProtocolError::FieldTooLong { field: "uri", max: MAX_ENROLLMENT_URI_LEN });
        }
        let query = uri.strip_prefix(ENROLLMENT_URI_PREFIX).ok_or(ProtocolError::InvalidField {
            field: "uri",
            reason: "must start with countersign://enroll?",
        })?;
        let [mut version, mut server, mut code, mut user] = [None, None, None, None];
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').ok_or(ProtocolError::InvalidField {
                field: "uri",
                reason: "every parameter must be key=value",
            })?;
            let (field, slot) = match key {
                "v" => ("v", &mut version),
                "server" => ("server", &mut server),
                "code" => ("code", &mut code),
                "user" => ("user", &mut user),
                _ => {
                    return Err(ProtocolError::InvalidField {
                        field: "uri",
                        reason: "unknown parameter (allowed: v, server, code, user)",
                    });
                }
            };
            if slot.is_some() {
                return Err(ProtocolError::InvalidField { field, reason: "appears more than once" });
            }
            *slot = Some(percent_decode(field, value)?);
        }
        let version = version.ok_or(ProtocolError::MissingField { field: "v" })?;
        if version != PROTOCOL_VERSION.to_string() {
            return Err(ProtocolError::UnsupportedVersion { version });
        }
        let server = ServerUrl::parse(&server.ok_or(ProtocolError::MissingField { field: "server" })?)?;
        let code = ActivationCode::new(code.ok_or(ProtocolError::MissingField { field: "code" })?)?;
        let user = user.ok_or(ProtocolError::MissingField { field: "user" })?;
        Self::new(server, code, user)
    }

    /// Formats the URI with every value percent-encoded (only unreserved characters stay literal).
    pub fn to_uri_string(&self) -> String {
        format!(
            "{ENROLLMENT_URI_PREFIX}v={PROTOCOL_VERSION}&server={}&code={}&user={}",
            percent_encode(self.server.as_str()),
            percent_encode(self.code.as_str()),
            percent_encode(&self.user),
        )
    }
}

impl std::fmt::Display for EnrollmentUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_uri_string())
    }
}

/// RFC 3986 unreserved: `A-Z a-z 0-9 - . _ ~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (either hex case); every other byte must be unreserved; the result must
/// be UTF-8.
fn percent_decode(field: &'static str, value: &str) -> Result<String, ProtocolError> {
    let invalid = |reason| ProtocolError::InvalidField { field, reason };
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(hex_value);
            let lo = bytes.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(invalid("'%' must be followed by two hex digits")),
            }
        } else if is_unreserved(b) {
            out.push(b);
        } else {
            return Err(invalid("characters other than A-Z a-z 0-9 - . _ ~ must be percent-encoded"));
        }
    }
    String::from_utf8(out).map_err(|_| invalid("percent-decoded value is not UTF-8"))
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const GOOD: &str = "countersign://enroll?v=1&server=https%3A%2F%2Fmfa.example.com&code=K7Q2-MX9P-4HTR-WB3N&user=alice%40example.com";

    #[test]
    fn parses_and_formats_round_trip() {
        let uri = EnrollmentUri::parse(GOOD).unwrap();
        assert_eq!(uri.server.as_str(), "https://mfa.example.com");
        assert_eq!(uri.code.as_str(), "K7Q2-MX9P-4HTR-WB3N");
        assert_eq!(uri.user, "alice@example.com");
        assert_eq!(uri.to_uri_string(), GOOD);
        let reordered = "countersign://enroll?user=bob&code=abc&server=https%3a%2f%2fx.example&v=1";
        assert_eq!(EnrollmentUri::parse(reordered).unwrap().user, "bob");
    }

    #[test]
    fn unicode_user_round_trips() {
        let server = ServerUrl::parse("http://127.0.0.1:8080").unwrap();
        let uri = EnrollmentUri::new(server, ActivationCode::new("c").unwrap(), "zoë ü").unwrap();
        assert_eq!(EnrollmentUri::parse(&uri.to_uri_string()).unwrap(), uri);
    }

    #[test]
    fn rejects_bad_uris() {
        let cases: &[(&str, ProtocolError)] = &[
            (
                "countersign://enroll?v=2&server=https%3A%2F%2Fa.example&code=c&user=u",
                ProtocolError::UnsupportedVersion { version: "2".into() },
            ),
            (
                "countersign://enroll?server=https%3A%2F%2Fa.example&code=c&user=u",
                ProtocolError::MissingField { field: "v" },
            ),
            ("countersign://enroll?v=1&code=c&user=u", ProtocolError::MissingField { field: "server" }),
            (
                "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&user=u",
                ProtocolError::MissingField { field: "code" },
            ),
            (
                "countersign://enroll?v=1&v=1&server=https%3A%2F%2Fa.example&code=c&user=u",
                ProtocolError::InvalidField { field: "v", reason: "appears more than once" },
            ),
        ];
        for (uri, expected) in cases {
            assert_eq!(&EnrollmentUri::parse(uri).unwrap_err(), expected, "{uri}");
        }
        for uri in [
            "https://enroll?v=1",
            "countersign://enroll?v=1&server=http%3A%2F%2Fa.example&code=c&user=u",
            "countersign://enroll?v=1&server=https://a.example&code=c&user=u",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user=a+b",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user=%4",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user=%FF",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user=u&extra=1",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c%20d&user=u",
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user=%0A",
        ] {
            assert!(EnrollmentUri::parse(uri).is_err(), "{uri}");
        }
        let huge = format!("{GOOD}{}", "a".repeat(MAX_ENROLLMENT_URI_LEN));
        assert!(matches!(EnrollmentUri::parse(&huge), Err(ProtocolError::FieldTooLong { field: "uri", .. })));
        let long_user = format!(
            "countersign://enroll?v=1&server=https%3A%2F%2Fa.example&code=c&user={}",
            "u".repeat(MAX_USERNAME_LEN + 1)
        );
        assert!(matches!(
            EnrollmentUri::parse(&long_user),
            Err(ProtocolError::FieldTooLong { field: "user", .. })
        ));
    }

    #[test]
    fn server_url_rules() {
        for ok in [
            "https://mfa.example.com",
            "https://mfa.example.com:8443",
            "https://example.com/countersign",
            "https://10.0.0.1",
            "https://[2001:db8::1]:443",
            "http://127.0.0.1:3000",
            "http://localhost",
            "http://[::1]:8080",
        ] {
            assert!(ServerUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://mfa.example.com",
            "http://127.0.0.2",
            "http://localhost.evil.example",
            "ftp://mfa.example.com",
            "HTTPS://mfa.example.com",
            "https://MFA.example.com",
            "https://mfa.example.com/",
            "https://user@mfa.example.com",
            "https://mfa.example.com?x=1",
            "https://mfa.example.com#f",
            "https://mfa.example.com/a/../b",
            "https://mfa.example.com:0",
            "https://mfa.example.com:65536",
            "https://",
            "https://a..b",
            "https://a b",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
