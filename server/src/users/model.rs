//! Rules for user records. No I/O.

/// Longest accepted username.
pub const MAX_USERNAME_LEN: usize = 128;
/// Longest accepted display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserInputError {
    #[error(
        "username must be 1-{MAX_USERNAME_LEN} characters of letters, digits and . _ @ + -, \
         not starting or ending with '.' and without '..'"
    )]
    InvalidUsername,
    #[error("display_name must be at most {MAX_DISPLAY_NAME_LEN} characters with no control characters")]
    InvalidDisplayName,
}

/// Whether the user must sign in with a passkey (push challenges refused): their own policy
/// when one is set, otherwise their privilege — privileged users are passkey-only by default
/// (phishing-resistant factors where it matters).
pub fn passkey_required(user: &crate::store::UserRecord) -> bool {
    user.passkey_required.unwrap_or(user.is_privileged)
}

/// Usernames are compared case-insensitively, so they are stored lower-cased: `Alice` and
/// `alice` must never become two users sharing one person's factors.
///
/// A username is a path segment (`/v1/users/{username}/...`), so it must be one that no URL
/// normaliser on the way (proxy, gateway, client library) rewrites, or a request for one user
/// would reach another route or user. The grammar:
///
/// ```text
/// username = 1*128( ALPHA / DIGIT / "." / "_" / "@" / "+" / "-" )
///            ; not starting or ending with ".", and no ".."
/// ```
///
/// Every character is RFC 3986 `unreserved` or a sub-delimiter allowed in a path segment, so
/// no percent-encoding is needed or changed; `%`, `/`, `\`, `;`, `?`, `#` and spaces are out.
/// The dot rules refuse the dot segments `.` and `..` (RFC 3986 §5.2.4 removes them) and
/// trailing dots (some servers strip them); they are the dot-atom rules of an e-mail address,
/// so e-mail addresses still pass.
pub fn normalize_username(raw: &str) -> Result<String, UserInputError> {
    let is_allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-');
    let ok = (1..=MAX_USERNAME_LEN).contains(&raw.len())
        && raw.bytes().all(is_allowed)
        && !raw.starts_with('.')
        && !raw.ends_with('.')
        && !raw.contains("..");
    if ok { Ok(raw.to_ascii_lowercase()) } else { Err(UserInputError::InvalidUsername) }
}

pub fn validate_display_name(name: &str) -> Result<(), UserInputError> {
    if name.chars().count() <= MAX_DISPLAY_NAME_LEN && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(UserInputError::InvalidDisplayName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(normalize_username("Alice.Smith@Example.com").unwrap(), "alice.smith@example.com");
        assert_eq!(normalize_username("a.b_c@d+e-f").unwrap(), "a.b_c@d+e-f");
        for bad in ["", " alice", "al ice", "alice\n", "ålice", &"a".repeat(129)] {
            assert_eq!(normalize_username(bad), Err(UserInputError::InvalidUsername), "{bad:?}");
        }
    }

    /// Names a URL normaliser would rewrite (dot segments, trailing dots, escapes, separators).
    #[test]
    fn usernames_that_normalisers_rewrite_are_refused() {
        for bad in [
            ".", "..", "...", ".alice", "alice.", "al..ice", "a%2e", "a/b", "a\\b", "a;b", "a?b", "a#b",
            "~alice",
        ] {
            assert_eq!(normalize_username(bad), Err(UserInputError::InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn display_names_reject_control_characters() {
        assert!(validate_display_name("Alice Smith").is_ok());
        assert!(validate_display_name("Alice\u{1b}[31m").is_err());
        assert!(validate_display_name(&"x".repeat(129)).is_err());
    }
}
