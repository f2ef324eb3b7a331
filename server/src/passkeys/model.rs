//! The relying party's rules, without I/O: which RP ID and origins, how a ceremony's failure is
//! named, what a passkey may be called, and how a stored credential reads back.

use serde::Deserialize;
use webauthn_rp::request::{AsciiDomain, RpId};
use webauthn_rp::response::Backup;

/// `[webauthn]`: the relying party. Every field is optional: the RP ID defaults to the public
/// URL's host (`localhost` when that is an IP address, which WebAuthn does not accept) and the
/// allowed origins to the public URL's origin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnConfig {
    /// The domain passkeys are bound to (`example.com`); browsers accept it from that domain and
    /// its subdomains.
    pub rp_id: Option<String>,
    /// Origins the browser may report (`https://login.example.com`), each on the RP ID's domain.
    #[serde(default)]
    pub origins: Vec<String>,
    /// When set, only authenticators of these AAGUIDs may register (security keys only).
    #[serde(default)]
    pub allowed_aaguids: Vec<uuid::Uuid>,
}

/// The resolved relying party.
#[derive(Debug)]
pub struct WebauthnSettings {
    pub rp_id: RpId,
    /// Exactly as browsers write them: `scheme://host[:port]`.
    pub origins: Vec<String>,
    pub allowed_aaguids: Vec<uuid::Uuid>,
}

/// How long a registration ceremony may take (the options tell the browser the same).
pub const REGISTRATION_TTL: time::Duration = time::Duration::minutes(5);

/// How long an enrollment link (and the ceremony it carries) lives, like a device activation
/// code: long enough to open it on another screen, short enough to be worthless once leaked.
pub const ENROLLMENT_LINK_TTL: time::Duration = time::Duration::minutes(10);

/// Longest passkey name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Longest `clientDataJSON` accepted: a browser's is a few hundred bytes.
pub const MAX_CLIENT_DATA_LEN: usize = 2048;

impl WebauthnSettings {
    /// Resolves `[webauthn]` against the public URL; an error names the key and the problem.
    pub fn resolve(config: &WebauthnConfig, public_url: &str) -> Result<Self, (&'static str, String)> {
        let (scheme, host, port) =
            split_origin(public_url).ok_or(("public_url", "has no host".to_owned()))?;
        let rp_id = match &config.rp_id {
            Some(rp_id) => rp_id.clone(),
            None if host.parse::<std::net::IpAddr>().is_ok() => "localhost".to_owned(),
            None => host.to_owned(),
        };
        if !is_domain_name(&rp_id) {
            let problem = format!("`{rp_id}` is not a lower-case domain name like example.com");
            return Err(("webauthn.rp_id", problem));
        }
        let domain = AsciiDomain::try_from(rp_id.clone())
            .map_err(|e| ("webauthn.rp_id", format!("`{rp_id}` is not a domain name: {e}")))?;
        let origins = if config.origins.is_empty() {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let host = if host.parse::<std::net::IpAddr>().is_ok() { "localhost" } else { host };
            vec![format!("{scheme}://{host}{port}")]
        } else {
            config.origins.clone()
        };
        for origin in &origins {
            check_origin(origin, &rp_id).map_err(|problem| ("webauthn.origins", problem))?;
        }
        Ok(Self { rp_id: RpId::Domain(domain), origins, allowed_aaguids: config.allowed_aaguids.clone() })
    }

    /// Whether an authenticator of this AAGUID may register.
    pub fn allows_aaguid(&self, aaguid: &[u8]) -> bool {
        self.allowed_aaguids.is_empty() || self.allowed_aaguids.iter().any(|a| a.as_bytes() == aaguid)
    }
}

/// Lower-case LDH labels (letters, digits, inner hyphens) of 1-63 characters, dot-separated.
fn is_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// `scheme://host[:port][/path]` → (scheme, host, port).
fn split_origin(url: &str) -> Option<(&str, &str, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((scheme, host, Some(port.parse().ok()?))),
        _ if !authority.is_empty() => Some((scheme, authority, None)),
        _ => None,
    }
}

/// An origin browsers would send for a page on the RP ID's domain: `https://` (or `http://` on
/// `localhost` only, which browsers treat as secure), no path.
fn check_origin(origin: &str, rp_id: &str) -> Result<(), String> {
    let Some((scheme, host, _)) = split_origin(origin) else {
        return Err(format!("`{origin}` is not an origin like https://login.example.com"));
    };
    if origin.trim_end_matches('/') != origin || origin.matches('/').count() != 2 {
        return Err(format!("`{origin}` must be scheme://host[:port], without a path"));
    }
    let secure = scheme == "https" || (scheme == "http" && host == "localhost");
    if !secure {
        return Err(format!("`{origin}` must use https:// (http:// only for localhost)"));
    }
    if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
        return Err(format!("`{origin}` is not on the RP ID's domain `{rp_id}`"));
    }
    Ok(())
}

/// A passkey name: trimmed, 1–64 characters, no control characters.
pub fn clean_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(format!("name must be 1 to {MAX_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// The backup flags as stored and shown: (eligible, backed up).
pub fn backup_flags(backup: Backup) -> (bool, bool) {
    match backup {
        Backup::NotEligible => (false, false),
        Backup::Eligible => (true, false),
        Backup::Exists => (true, true),
    }
}

/// Why a ceremony's response was refused, named for clients and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The browser reports an origin that is not configured.
    OriginMismatch,
    /// The authenticator data is for another relying party.
    RpIdMismatch,
    /// The authenticator did not verify the user (PIN, biometrics).
    UserNotVerified,
    /// The response answers another ceremony's challenge.
    ChallengeMismatch,
    /// A signature (or the counter that goes with it) does not check out.
    SignatureInvalid,
    /// The response is malformed or breaks another rule of the ceremony.
    Invalid,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::OriginMismatch => "origin_mismatch",
            Rejection::RpIdMismatch => "rp_id_mismatch",
            Rejection::UserNotVerified => "user_not_verified",
            Rejection::ChallengeMismatch => "challenge_mismatch",
            Rejection::SignatureInvalid => "signature_invalid",
            Rejection::Invalid => "invalid",
        }
    }

    /// Names a failed registration.
    pub fn of_registration(error: &webauthn_rp::response::register::error::RegCeremonyErr) -> Self {
        use webauthn_rp::response::register::error::RegCeremonyErr as E;
        match error {
            E::OriginMismatch | E::CrossOrigin | E::TopOriginMismatch => Rejection::OriginMismatch,
            E::RpIdHashMismatch => Rejection::RpIdMismatch,
            E::UserNotVerified | E::UserNotPresent => Rejection::UserNotVerified,
            E::ChallengeMismatch => Rejection::ChallengeMismatch,
            E::AttestationSignature => Rejection::SignatureInvalid,
            _ => Rejection::Invalid,
        }
    }
}

impl Rejection {
    /// Names a failed assertion (sign-in).
    pub fn of_authentication(error: &webauthn_rp::response::auth::error::AuthCeremonyErr) -> Self {
        use webauthn_rp::response::auth::error::AuthCeremonyErr as E;
        match error {
            E::OriginMismatch | E::CrossOrigin | E::TopOriginMismatch => Rejection::OriginMismatch,
            E::RpIdHashMismatch => Rejection::RpIdMismatch,
            E::UserNotVerified => Rejection::UserNotVerified,
            E::ChallengeMismatch => Rejection::ChallengeMismatch,
            E::AssertionSignature => Rejection::SignatureInvalid,
            _ => Rejection::Invalid,
        }
    }
}

/// Refused assertions a passkey sign-in takes before it is denied (its own budget, apart from
/// push: a passkey is never locked out by push failures).
pub const MAX_FAILED_ASSERTIONS: i32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rp_id: Option<&str>, origins: &[&str]) -> WebauthnConfig {
        WebauthnConfig {
            rp_id: rp_id.map(str::to_owned),
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allowed_aaguids: Vec::new(),
        }
    }

    #[test]
    fn defaults_follow_the_public_url_and_localhost_stands_in_for_an_ip() {
        let s = WebauthnSettings::resolve(&config(None, &[]), "https://mfa.example.com").unwrap();
        assert_eq!(
            (s.rp_id.as_ref(), s.origins.as_slice()),
            ("mfa.example.com", ["https://mfa.example.com".to_owned()].as_slice())
        );
        let s = WebauthnSettings::resolve(&config(None, &[]), "http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (s.rp_id.as_ref(), s.origins.as_slice()),
            ("localhost", ["http://localhost:8080".to_owned()].as_slice())
        );
    }

    #[test]
    fn origins_must_be_secure_and_on_the_rp_id_domain() {
        let url = "https://mfa.example.com";
        assert!(
            WebauthnSettings::resolve(&config(Some("example.com"), &["https://login.example.com"]), url)
                .is_ok()
        );
        for bad in ["http://login.example.com", "https://evil.com", "https://example.com/path", "example.com"]
        {
            let err = WebauthnSettings::resolve(&config(Some("example.com"), &[bad]), url).unwrap_err();
            assert_eq!(err.0, "webauthn.origins", "{bad}");
        }
        assert_eq!(
            WebauthnSettings::resolve(&config(Some("Example.com"), &[]), url).unwrap_err().0,
            "webauthn.rp_id"
        );
        assert_eq!(
            WebauthnSettings::resolve(&config(Some("not a domain"), &[]), url).unwrap_err().0,
            "webauthn.rp_id"
        );
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(clean_name("  YubiKey 5 ").unwrap(), "YubiKey 5");
        assert!(clean_name("").is_err());
        assert!(clean_name("a\u{7}b").is_err());
        assert!(clean_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn an_empty_allow_list_allows_every_authenticator() {
        let mut s = WebauthnSettings::resolve(&config(None, &[]), "https://mfa.example.com").unwrap();
        assert!(s.allows_aaguid(&[0; 16]));
        s.allowed_aaguids = vec![uuid::Uuid::from_bytes([7; 16])];
        assert!(s.allows_aaguid(&[7; 16]) && !s.allows_aaguid(&[0; 16]));
    }
}
