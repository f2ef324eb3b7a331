//! The rules of the signing-key timeline, without I/O: which key signs, which keys are
//! published, when a rotation's key may start signing and when a superseded key drops out.
//!
//! A key's state follows from its own times and those of the later keys of its algorithm:
//!
//! ```text
//! created ──(publish overlap)──▶ activates_at ──────▶ successor activates ──(token lifetime + skew)──▶ gone
//!   Pending: published,          Active: published,    Retiring: published,                           Retired:
//!   not signing yet              signs                 signs no more                                  not published
//! ```
//!
//! Revoked (at any point): not published, never signs. Only revocation is ever written after a
//! key is created, so two instances reading the same rows agree on every state at every moment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::store::SigningKeyRecord;

/// The JWS algorithms Countersign signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256: the default for every token.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for relying parties that only do RS256.
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::Es256, SigningAlg::Rs256];

    /// The JOSE name (`alg` header and JWK member).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::Rs256 => "RS256",
        }
    }

    /// The same algorithm for `jsonwebtoken` (verification).
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unsupported signing algorithm `{0}`: use ES256 or RS256")]
pub struct UnknownAlg(pub String);

impl FromStr for SigningAlg {
    type Err = UnknownAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(SigningAlg::Es256),
            "RS256" => Ok(SigningAlg::Rs256),
            other => Err(UnknownAlg(other.to_owned())),
        }
    }
}

/// The lifetimes the key timeline is built on, in one place. The defaults ([`KeyTimings::DEFAULT`])
/// are what the server and the CLI use. Whatever mints tokens must give them these lifetimes
/// (`id_token_lifetime`, `access_token_lifetime`): a token living longer could outlive its key
/// in the JWKS after a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTimings {
    /// How long relying parties may cache the JWKS (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// How long a rotation's new key is published before it signs. At least `jwks_max_age` plus
    /// `refresh`: a relying party that fetched the JWKS from the slowest instance just before the
    /// rotation has fetched it again (and found the new key) before any token carries it.
    pub publish_overlap: Duration,
    /// How long an ID token is valid (`exp - iat`).
    pub id_token_lifetime: Duration,
    /// How long an access token (`at+jwt`, for `/userinfo`) is valid.
    pub access_token_lifetime: Duration,
    /// The clock skew a relying party may allow past `exp`: a superseded key stays published
    /// this long after its last token expired.
    pub clock_skew: Duration,
    /// How long an instance trusts its in-memory view of the key table before reading it again
    /// (a rotation or revocation by the CLI or another instance is seen within this).
    pub refresh: Duration,
}

impl KeyTimings {
    pub const DEFAULT: KeyTimings = KeyTimings {
        jwks_max_age: Duration::minutes(10),
        // Relying parties may cache a JWKS far longer than its max-age: Microsoft Entra caches a
        // provider's metadata and keys for a day and asks that a new key be published about two
        // days before it signs ("external method provider reference", key rollover).
        publish_overlap: Duration::hours(48),
        id_token_lifetime: Duration::minutes(5),
        access_token_lifetime: Duration::minutes(5),
        clock_skew: Duration::minutes(5),
        refresh: Duration::seconds(1),
    };

    /// How long a superseded key stays published after it signed last: every token it signed
    /// has expired by then, even on a relying party whose clock is `clock_skew` behind.
    pub fn retirement_delay(&self) -> Duration {
        self.id_token_lifetime.max(self.access_token_lifetime) + self.clock_skew
    }

    /// Checks the rule the timeline depends on; names the setting at fault.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.publish_overlap < self.jwks_max_age + self.refresh {
            return Err("publish_overlap must be at least jwks_max_age + refresh");
        }
        if self.jwks_max_age <= Duration::ZERO || self.refresh < Duration::ZERO {
            return Err("jwks_max_age must be positive and refresh not negative");
        }
        Ok(())
    }
}

impl Default for KeyTimings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a key is on its timeline at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet (a rotation's key during the publish overlap).
    Pending,
    /// Published and the key its algorithm signs with.
    Active,
    /// Published until the tokens it signed have expired; signs no more.
    Retiring,
    /// Out of the JWKS: every token it signed has expired.
    Retired,
    /// Out of the JWKS at once, never signs again.
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
        }
    }

    /// Whether the key belongs in the JWKS.
    pub fn is_published(self) -> bool {
        matches!(self, KeyState::Pending | KeyState::Active | KeyState::Retiring)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order keys of one algorithm take over in: activation time, then generation.
fn order(key: &SigningKeyRecord) -> (OffsetDateTime, i64) {
    (key.activates_at, key.generation)
}

/// The unrevoked keys of `alg`.
fn live(keys: &[SigningKeyRecord], alg: SigningAlg) -> impl Iterator<Item = &SigningKeyRecord> {
    keys.iter().filter(move |k| k.alg == alg && k.revoked_at.is_none())
}

/// The key `alg` signs with at `now`: of the unrevoked keys already activated, the latest —
/// unless a later key took over since (and was revoked after it did): a superseded key never
/// signs again.
pub fn active_key(
    keys: &[SigningKeyRecord],
    alg: SigningAlg,
    now: OffsetDateTime,
) -> Option<&SigningKeyRecord> {
    live(keys, alg)
        .filter(|k| k.activates_at <= now)
        .max_by_key(|k| order(k))
        .filter(|k| superseded_at(keys, k).is_none_or(|at| at > now))
}

/// A published key of `alg` still waiting to sign, if any.
pub fn pending_key(
    keys: &[SigningKeyRecord],
    alg: SigningAlg,
    now: OffsetDateTime,
) -> Option<&SigningKeyRecord> {
    live(keys, alg).filter(|k| k.activates_at > now).min_by_key(|k| order(k))
}

/// When `key` stops (or stopped) signing: when the next key of its algorithm activates (or
/// activated: a key revoked after it took over still ended its predecessor's turn; one revoked
/// while pending never did). `None` while nothing follows it.
pub fn superseded_at(keys: &[SigningKeyRecord], key: &SigningKeyRecord) -> Option<OffsetDateTime> {
    keys.iter()
        .filter(|k| k.alg == key.alg && order(k) > order(key))
        .filter(|k| k.revoked_at.is_none_or(|revoked| revoked > k.activates_at))
        .map(|k| k.activates_at)
        .min()
}

/// When `key` leaves the JWKS: revocation at once; a superseded key once its last tokens expired.
pub fn published_until(
    keys: &[SigningKeyRecord],
    key: &SigningKeyRecord,
    timings: &KeyTimings,
) -> Option<OffsetDateTime> {
    match key.revoked_at {
        Some(revoked) => Some(revoked),
        None => superseded_at(keys, key).map(|at| at.max(key.activates_at) + timings.retirement_delay()),
    }
}

/// The state of `key` at `now`.
pub fn state(
    keys: &[SigningKeyRecord],
    key: &SigningKeyRecord,
    now: OffsetDateTime,
    timings: &KeyTimings,
) -> KeyState {
    if key.revoked_at.is_some() {
        return KeyState::Revoked;
    }
    if now < key.activates_at {
        return KeyState::Pending;
    }
    match superseded_at(keys, key) {
        Some(at) if at <= now => match published_until(keys, key, timings) {
            Some(until) if until <= now => KeyState::Retired,
            _ => KeyState::Retiring,
        },
        _ => KeyState::Active,
    }
}

/// The generation the next key of `alg` takes.
pub fn next_generation(keys: &[SigningKeyRecord], alg: SigningAlg) -> i64 {
    keys.iter().filter(|k| k.alg == alg).map(|k| k.generation).max().unwrap_or(0) + 1
}

/// Why a rotation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationRefused {
    #[error(
        "key {kid} of {alg} is already published and starts signing at {activates_at}; revoke it or let it activate first"
    )]
    AlreadyPending { kid: String, alg: SigningAlg, activates_at: OffsetDateTime },
}

/// When a rotation of `alg` at `now` may let its new key sign. With a key signing, after the
/// publish overlap (relying parties see it first); with none (no key of `alg` yet, or none
/// usable), at once: no relying party holds a token of `alg` to be confused. One rotation at a
/// time: a key already waiting must activate (or be revoked) first.
pub fn rotation_activates_at(
    keys: &[SigningKeyRecord],
    alg: SigningAlg,
    now: OffsetDateTime,
    timings: &KeyTimings,
) -> Result<OffsetDateTime, RotationRefused> {
    if let Some(pending) = pending_key(keys, alg, now) {
        return Err(RotationRefused::AlreadyPending {
            kid: pending.kid.clone(),
            alg,
            activates_at: pending.activates_at,
        });
    }
    Ok(match active_key(keys, alg, now) {
        Some(_) => now + timings.publish_overlap,
        None => now,
    })
}

/// Why a revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationRefused {
    #[error("no signing key has kid `{0}`")]
    Unknown(String),
    #[error("signing key {0} is already revoked")]
    AlreadyRevoked(String),
}

/// What revoking `kid` at `now` takes: the key, and whether it is the key its algorithm signs
/// with now, so a fresh key must replace it at once (an emergency beats cache overlap: relying
/// parties that cached the JWKS refetch it on the unknown kid).
pub fn revocation<'a>(
    keys: &'a [SigningKeyRecord],
    kid: &str,
    now: OffsetDateTime,
) -> Result<(&'a SigningKeyRecord, bool), RevocationRefused> {
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| RevocationRefused::Unknown(kid.to_owned()))?;
    if key.revoked_at.is_some() {
        return Err(RevocationRefused::AlreadyRevoked(kid.to_owned()));
    }
    let is_active = active_key(keys, key.alg, now).is_some_and(|active| active.kid == key.kid);
    Ok((key, is_active))
}

/// A public key as a JWK (RFC 7517): public members only, by construction — this type has no
/// field a private member (`d`, `p`, `q`, `dp`, `dq`, `qi`) could go in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// `EC` or `RSA`.
    pub kty: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    pub kid: String,
    /// `P-256` (EC keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// The EC point's x coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// The EC point's y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// The RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// One self-signed X.509 certificate of this key (DER, standard base64): a key carrier,
    /// not a trust anchor (see `keys::certificate`). Microsoft Entra ID requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
    /// The certificate's SHA-1 thumbprint, base64url (a name for it, not a security check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// The certificate's SHA-256 thumbprint, base64url.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// The JWKS document (`{"keys": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 09:00 UTC);

    fn key(kid: &str, alg: SigningAlg, generation: i64, activates_at: OffsetDateTime) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            alg,
            generation,
            public_jwk: "{}".into(),
            sealed_pkcs8: vec![],
            created_at: T0,
            activates_at,
            revoked_at: None,
        }
    }

    #[test]
    fn the_default_overlap_outlasts_a_cached_jwks() {
        let t = KeyTimings::DEFAULT;
        assert!(t.check().is_ok());
        assert!(t.publish_overlap >= t.jwks_max_age + t.refresh);
        let short = KeyTimings { publish_overlap: t.jwks_max_age, ..t };
        assert!(short.check().is_err(), "an overlap no longer than the cache leaves no room for refresh");
    }

    #[test]
    fn a_rotated_key_is_published_before_it_signs_and_the_old_one_until_its_tokens_expire() {
        let t = KeyTimings::DEFAULT;
        let old = key("old", SigningAlg::Es256, 1, T0);
        let mut keys = vec![old.clone()];
        let rotated_at = T0 + Duration::days(30);
        let activates = rotation_activates_at(&keys, SigningAlg::Es256, rotated_at, &t).unwrap();
        assert_eq!(activates, rotated_at + t.publish_overlap);
        let new = key("new", SigningAlg::Es256, next_generation(&keys, SigningAlg::Es256), activates);
        assert_eq!(new.generation, 2);
        keys.push(new.clone());

        let during_overlap = activates - Duration::SECOND;
        assert_eq!(state(&keys, &new, during_overlap, &t), KeyState::Pending);
        assert_eq!(active_key(&keys, SigningAlg::Es256, during_overlap).unwrap().kid, "old");
        assert_eq!(state(&keys, &new, activates, &t), KeyState::Active);
        assert_eq!(state(&keys, &old, activates, &t), KeyState::Retiring);
        let gone = activates + t.retirement_delay();
        assert_eq!(state(&keys, &old, gone - Duration::SECOND, &t), KeyState::Retiring);
        assert_eq!(state(&keys, &old, gone, &t), KeyState::Retired);
        assert_eq!(published_until(&keys, &old, &t), Some(gone));
        assert_eq!(published_until(&keys, &new, &t), None, "nothing follows it yet");
    }

    #[test]
    fn one_rotation_at_a_time_and_the_first_key_of_an_algorithm_signs_at_once() {
        let t = KeyTimings::DEFAULT;
        assert_eq!(rotation_activates_at(&[], SigningAlg::Rs256, T0, &t), Ok(T0));
        let keys =
            vec![key("a", SigningAlg::Es256, 1, T0), key("b", SigningAlg::Es256, 2, T0 + Duration::hours(1))];
        assert!(matches!(
            rotation_activates_at(&keys, SigningAlg::Es256, T0, &t),
            Err(RotationRefused::AlreadyPending { kid, .. }) if kid == "b"
        ));
        assert_eq!(rotation_activates_at(&keys, SigningAlg::Rs256, T0, &t), Ok(T0), "per algorithm");
    }

    #[test]
    fn revoking_the_active_key_calls_for_a_replacement_and_others_do_not() {
        let mut keys =
            vec![key("a", SigningAlg::Es256, 1, T0), key("b", SigningAlg::Es256, 2, T0 + Duration::hours(1))];
        assert_eq!(revocation(&keys, "a", T0).map(|(k, active)| (k.kid.as_str(), active)), Ok(("a", true)));
        assert_eq!(revocation(&keys, "b", T0).map(|(_, active)| active), Ok(false), "pending");
        assert_eq!(revocation(&keys, "zz", T0).map(|_| ()), Err(RevocationRefused::Unknown("zz".into())));
        keys[1].revoked_at = Some(T0);
        assert_eq!(
            revocation(&keys, "b", T0).map(|_| ()),
            Err(RevocationRefused::AlreadyRevoked("b".into()))
        );
        let t = KeyTimings::DEFAULT;
        assert_eq!(state(&keys, &keys[1], T0, &t), KeyState::Revoked);
        assert_eq!(
            state(&keys, &keys[0], T0 + Duration::hours(2), &t),
            KeyState::Active,
            "a revoked successor supersedes nothing"
        );
    }

    #[test]
    fn a_retired_key_never_comes_back_when_its_successor_is_revoked() {
        let t = KeyTimings::DEFAULT;
        let later = T0 + Duration::days(1);
        let mut keys =
            vec![key("a", SigningAlg::Es256, 1, T0), key("b", SigningAlg::Es256, 2, T0 + Duration::hours(1))];
        assert_eq!(state(&keys, &keys[0], later, &t), KeyState::Retired);
        keys[1].revoked_at = Some(later);
        assert_eq!(state(&keys, &keys[0], later, &t), KeyState::Retired, "still out of the JWKS");
        assert_eq!(active_key(&keys, SigningAlg::Es256, later), None, "so a fresh key is due");
        assert_eq!(rotation_activates_at(&keys, SigningAlg::Es256, later, &t), Ok(later));
    }
}
