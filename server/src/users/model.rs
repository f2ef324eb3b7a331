//! Rules for user records. No I/O.

/// Longest accepted username.
pub const MAX_USERNAME_LEN: usize = 128;
/// Longest accepted display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserInputError {
    #[error("username must be 1-{MAX_USERNAME_LEN} characters of letters, digits and . _ @ + -")]
    InvalidUsername,
    #[error("display_name must be at most {MAX_DISPLAY_NAME_LEN} characters with no control characters")]
    InvalidDisplayName,
}

/// Usernames are compared case-insensitively, so they are stored lower-cased: `Alice` and
/// `alice` must never become two users sharing one person's factors.
pub fn normalize_username(raw: &str) -> Result<String, UserInputError> {
    let ok = (1..=MAX_USERNAME_LEN).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'));
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
        for bad in ["", " alice", "al ice", "alice\n", "ålice", &"a".repeat(129)] {
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
