//! The rules of a delegation request, no I/O: the body Keycloak sends (`AuthenticationChannelRequest`),
//! its binding message under Keycloak's own rule, and the number it must carry.

use serde::Deserialize;

/// Keycloak's binding-message rule (`BackchannelAuthenticationEndpoint.BINDING_MESSAGE_VALIDATION`,
/// `^[a-zA-Z0-9-._+/!?#]{1,50}$`): what Keycloak itself lets through to the channel.
pub const MAX_BINDING_MESSAGE_LEN: usize = 50;
/// Longest `login_hint` read (a Countersign username is far shorter; longer is no user).
const MAX_LOGIN_HINT_LEN: usize = 256;
/// Longest `scope` and `acr_values` accepted.
const MAX_SCOPE_LEN: usize = 4096;

/// The members of the body this channel uses; any other member (Keycloak spreads the client's
/// unrecognised request parameters at the top level) is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelRequest {
    /// A Keycloak username (the default `CIBALoginUserResolver`), not what the client sent.
    pub login_hint: String,
    pub scope: String,
    pub is_consent_required: bool,
    #[serde(default)]
    pub binding_message: Option<String>,
    #[serde(default)]
    pub acr_values: Option<String>,
}

/// Why a body is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not a JSON object with login_hint, scope and is_consent_required: {0}")]
    Shape(String),
    #[error("{0} is longer than this channel accepts")]
    TooLong(&'static str),
    #[error("login_hint must not be empty")]
    EmptyLoginHint,
}

/// Why a binding message cannot be the number (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingMessageError {
    #[error(
        "binding_message is required: Keycloak cannot return a number to its client, so the client must send the {0}-digit number it shows as binding_message"
    )]
    Missing(u8),
    #[error("binding_message must be 1-50 characters of [a-zA-Z0-9-._+/!?#] (Keycloak's own rule)")]
    Charset,
    #[error("binding_message must be the {0}-digit number the consumption device shows")]
    NotTheNumber(u8),
}

impl BindingMessageError {
    pub fn reason(&self) -> &'static str {
        match self {
            BindingMessageError::Missing(_) => "binding_message_missing",
            BindingMessageError::Charset => "binding_message_charset",
            BindingMessageError::NotTheNumber(_) => "binding_message_not_the_number",
        }
    }
}

/// Parses the body: the members this channel needs, of the right types and sizes.
pub fn parse_request(body: &[u8]) -> Result<ChannelRequest, BodyError> {
    let request: ChannelRequest =
        serde_json::from_slice(body).map_err(|e| BodyError::Shape(e.to_string()))?;
    if request.login_hint.is_empty() {
        return Err(BodyError::EmptyLoginHint);
    }
    if request.login_hint.len() > MAX_LOGIN_HINT_LEN {
        return Err(BodyError::TooLong("login_hint"));
    }
    if request.scope.len() > MAX_SCOPE_LEN {
        return Err(BodyError::TooLong("scope"));
    }
    if request.acr_values.as_ref().is_some_and(|acr| acr.len() > MAX_SCOPE_LEN) {
        return Err(BodyError::TooLong("acr_values"));
    }
    Ok(request)
}

/// Whether `message` passes Keycloak's binding-message rule.
pub fn is_keycloak_binding_message(message: &str) -> bool {
    (1..=MAX_BINDING_MESSAGE_LEN).contains(&message.len())
        && message.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._+/!?#".contains(&b))
}

/// The number the user must type: the binding message, which must be exactly `digits` ASCII
/// digits. There is no fallback to a number of our own (Keycloak has no way to show it to the
/// client) nor to a plain approve/deny prompt (that invites push-bombing): fail closed.
pub fn number(binding_message: Option<&str>, digits: u8) -> Result<String, BindingMessageError> {
    let message = binding_message.ok_or(BindingMessageError::Missing(digits))?;
    if !is_keycloak_binding_message(message) {
        return Err(BindingMessageError::Charset);
    }
    if message.len() != usize::from(digits) || !message.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BindingMessageError::NotTheNumber(digits));
    }
    Ok(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_message_is_the_number_or_the_request_is_refused() {
        assert_eq!(number(Some("482"), 3).unwrap(), "482");
        assert_eq!(number(Some("007"), 3).unwrap(), "007");
        assert_eq!(number(None, 3), Err(BindingMessageError::Missing(3)));
        assert_eq!(number(Some(""), 3), Err(BindingMessageError::Charset));
        assert_eq!(number(Some("48 2"), 3), Err(BindingMessageError::Charset));
        assert_eq!(number(Some("４８２"), 3), Err(BindingMessageError::Charset));
        assert_eq!(number(Some(&"1".repeat(51)), 3), Err(BindingMessageError::Charset));
        assert_eq!(number(Some("4821"), 3), Err(BindingMessageError::NotTheNumber(3)));
        assert_eq!(number(Some("48a"), 3), Err(BindingMessageError::NotTheNumber(3)));
        assert_eq!(number(Some("Pay-42.00#EUR"), 3), Err(BindingMessageError::NotTheNumber(3)));
        assert_eq!(number(Some("123456"), 6).unwrap(), "123456");
    }

    #[test]
    fn keycloaks_charset_is_the_rule() {
        assert!(is_keycloak_binding_message("aZ09-._+/!?#"));
        assert!(is_keycloak_binding_message(&"a".repeat(50)));
        assert!(!is_keycloak_binding_message(&"a".repeat(51)));
        for bad in ["a b", "a\nb", "a<b", "a%b", "é", "a\u{202e}b"] {
            assert!(!is_keycloak_binding_message(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_body_needs_its_three_members_and_ignores_others() {
        let ok = br#"{"login_hint":"alice","scope":"openid","is_consent_required":false,"binding_message":null,"extra":{"x":1}}"#;
        let parsed = parse_request(ok).unwrap();
        assert_eq!((parsed.login_hint.as_str(), parsed.binding_message), ("alice", None));
        for bad in [
            &br#"{"scope":"openid","is_consent_required":false}"#[..],
            br#"{"login_hint":"alice","scope":"openid","is_consent_required":"no"}"#,
            br#"{"login_hint":null,"scope":"openid","is_consent_required":true}"#,
            br#"["alice"]"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_request(bad), Err(BodyError::Shape(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let empty = br#"{"login_hint":"","scope":"openid","is_consent_required":true}"#;
        assert_eq!(parse_request(empty), Err(BodyError::EmptyLoginHint));
    }
}
