//! API keys and scopes: the key format, generation and checking. No I/O.
//!
//! A key reads `csk_<key id>_<secret>`: the key id (16 hex characters) finds the row, the whole
//! key is compared by its SHA-256 hash in constant time. 256 random bits make a slow password
//! hash unnecessary; only the hash is stored, so a database leak yields no usable key.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

const PREFIX: &str = "csk_";
const KEY_ID_HEX_LEN: usize = 16;
const SECRET_B64_LEN: usize = 43;

/// What an app may do. The string forms are stable: they appear in the CLI and the OpenAPI doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    UsersRead,
    UsersWrite,
    ChallengesRead,
    ChallengesWrite,
    FatigueRead,
    FatigueWrite,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::ChallengesRead,
        Scope::ChallengesWrite,
        Scope::FatigueRead,
        Scope::FatigueWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::ChallengesRead => "challenges:read",
            Scope::ChallengesWrite => "challenges:write",
            Scope::FatigueRead => "fatigue:read",
            Scope::FatigueWrite => "fatigue:write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope `{0}` (known: users:read users:write challenges:read challenges:write fatigue:read fatigue:write)"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A non-empty set of scopes; stored as a space-separated list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl FromStr for Scopes {
    type Err = UnknownScope;
    /// Accepts spaces or commas between scopes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split([' ', ','])
            .filter(|part| !part.is_empty())
            .map(Scope::from_str)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Scopes)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(" "))
    }
}

/// A freshly generated key: the plaintext is shown once, the rest is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    pub plaintext: SecretString,
    pub key_id: String,
    pub hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomFailure;

pub fn generate(rng: &SystemRandom) -> Result<GeneratedKey, RandomFailure> {
    let mut id = [0u8; KEY_ID_HEX_LEN / 2];
    rng.fill(&mut id).map_err(|_| RandomFailure)?;
    let key_id = hex::encode(id);
    let plaintext = SecretString::from(format!("{PREFIX}{key_id}_{}", random_urlsafe(rng, 32)?));
    let hash = hash_key(plaintext.expose_secret());
    Ok(GeneratedKey { plaintext, key_id, hash })
}

/// `bytes` random bytes as unpadded base64url: unguessable identifiers and secrets (API keys,
/// OIDC client ids and client secrets), made and hashed one way.
pub fn random_urlsafe(rng: &SystemRandom, bytes: usize) -> Result<String, RandomFailure> {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf).map_err(|_| RandomFailure)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The key id of a well-formed key, or `None` if the presented string cannot be a key.
pub fn parse_key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let id_ok =
        key_id.len() == KEY_ID_HEX_LEN && key_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let secret_ok = secret.len() == SECRET_B64_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(key_id)
}

pub fn hash_key(presented: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, presented.as_bytes()).as_ref());
    out
}

/// Constant-time check of a presented key against a stored hash.
pub fn key_matches(presented: &str, stored_hash: &[u8]) -> bool {
    bool::from(hash_key(presented).as_slice().ct_eq(stored_hash))
}

/// App names: 1–64 characters of letters, digits, `.`, `_`, `-`.
pub fn is_valid_app_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_match_only_themselves() {
        let rng = SystemRandom::new();
        let a = generate(&rng).unwrap();
        let b = generate(&rng).unwrap();
        assert_eq!(parse_key_id(a.plaintext.expose_secret()), Some(a.key_id.as_str()));
        assert!(key_matches(a.plaintext.expose_secret(), &a.hash));
        assert!(!key_matches(b.plaintext.expose_secret(), &a.hash));
        assert_ne!(a.key_id, b.key_id);
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        for bad in [
            "",
            "csk_",
            "Bearer x",
            "csk_0123456789abcdef_short",
            "csk_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(parse_key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_round_trip_and_reject_unknown() {
        let scopes: Scopes = "users:write, challenges:write users:write".parse().unwrap();
        assert_eq!(scopes.to_string(), "users:write challenges:write");
        assert!(scopes.contains(Scope::UsersWrite) && !scopes.contains(Scope::UsersRead));
        assert_eq!("users:admin".parse::<Scopes>(), Err(UnknownScope("users:admin".into())));
    }

    proptest! {
        #[test]
        fn any_altered_key_fails(flip in 0usize..64) {
            let key = generate(&SystemRandom::new()).unwrap();
            let mut bytes = key.plaintext.expose_secret().as_bytes().to_vec();
            let i = flip % bytes.len();
            bytes[i] ^= 0x01;
            let altered = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert!(!key_matches(&altered, &key.hash));
        }
    }
}
