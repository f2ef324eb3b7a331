//! Strict verification of incoming JWTs: the one door every JWT we receive goes through —
//! client assertions (`private_key_jwt`) now; request objects (JAR), `id_token_hint` and
//! upstream channel tokens later. No I/O: the caller brings the keys.
//!
//! The caller pins the algorithms, the keys, the expected `iss`/`aud`/`sub` and the longest
//! lifetime. Before any signature check the header and claims are read by our own rules, where
//! libraries are lax: `alg` must be one the caller allows and never `none` or HMAC (an HMAC
//! keyed with a public key is the classic confusion); keys named or carried by the token
//! (`jwk`, `jku`, `x5u`, `x5c`) are refused, never fetched or trusted; `kid` only selects among
//! the caller's keys (compared as a string, used for nothing else); any `crit` is refused (we
//! implement no extension); `exp` must be a number and present; ECDSA signatures must have the
//! fixed size and non-zero `r` and `s`. The signature itself is checked by `jsonwebtoken`
//! (aws-lc-rs) with the selected key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

/// Header members that name or carry a key: the token would be choosing its own verifier.
const KEY_BEARING_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// Longest token accepted, in bytes (a request object with claims fits well within).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// What the caller expects of a token.
#[derive(Debug, Clone)]
pub struct JwtPolicy<'a> {
    /// Asymmetric algorithms accepted; HMAC and `none` are refused whatever this says.
    pub algorithms: &'a [Algorithm],
    pub issuer: &'a str,
    /// The token's `aud` must contain at least one of these.
    pub audiences: &'a [&'a str],
    /// The `sub` required, if any.
    pub subject: Option<&'a str>,
    /// The `typ` header required, if any (distinct token kinds are not interchangeable).
    pub typ: Option<&'a str>,
    /// `exp` may be at most this far after `iat` (when present) and after now.
    pub max_lifetime: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Whether a `jti` is required (single-use tokens).
    pub require_jti: bool,
    /// How long after `exp` a token is still accepted. Zero for every token but an upstream
    /// issuer's `id_token_hint`, which Microsoft Entra issues already expired (a hint is not an
    /// authentication); such a token must carry `iat`, and `iat` bounds its age instead.
    pub expired_grace: Duration,
}

/// A token whose signature and claims checked out.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    pub expires_at: OffsetDateTime,
    pub jti: Option<String>,
}

impl VerifiedJwt {
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Why a token was refused. Callers map every variant to one protocol error; the variants
/// exist for tests and the audit trail (never shown in detail to the presenter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a compact JWS (three base64url parts, JSON header and claims)")]
    Malformed,
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("the header carries or names a key (`{0}`): keys come from registration only")]
    KeyInHeader(&'static str),
    #[error("the header has `crit`: no JWS extension is supported")]
    CriticalHeader,
    #[error("the header `typ` is not the one expected")]
    WrongType,
    #[error("no registered key has this `kid` and fits the algorithm")]
    UnknownKey,
    #[error("several registered keys fit and the token has no `kid`")]
    AmbiguousKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("claim `{0}` is missing")]
    MissingClaim(&'static str),
    #[error("claim `{0}` has the wrong type")]
    ClaimType(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token was issued in the future (`iat`)")]
    IssuedInFuture,
    #[error("the token lives longer than allowed")]
    LifetimeTooLong,
    #[error("the issuer is not the one expected")]
    WrongIssuer,
    #[error("the audience is not the one expected")]
    WrongAudience,
    #[error("the subject is not the one expected")]
    WrongSubject,
}

impl JwtError {
    /// A stable snake_case name for the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::TooLarge => "too_large",
            JwtError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            JwtError::KeyInHeader(_) => "key_in_header",
            JwtError::CriticalHeader => "critical_header",
            JwtError::WrongType => "wrong_type",
            JwtError::UnknownKey => "unknown_key",
            JwtError::AmbiguousKey => "ambiguous_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::ClaimType(_) => "claim_type",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::IssuedInFuture => "issued_in_future",
            JwtError::LifetimeTooLong => "lifetime_too_long",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::WrongSubject => "wrong_subject",
        }
    }
}

/// The header of a token, read by our rules, and the parts the signature covers.
#[derive(Debug)]
pub struct UnverifiedHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

fn decode_part(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice::<Value>(&decode_part(part)?) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// Only asymmetric algorithms can be verified with keys a client or an upstream publishes.
fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Reads and checks a token's header without verifying anything else: which key it wants
/// (`kid`) is all a caller may use before [`verify`], e.g. to refresh a remote key set.
pub fn read_header(token: &str, policy: &JwtPolicy<'_>) -> Result<UnverifiedHeader, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let header = parts.next().ok_or(JwtError::Malformed)?;
    let header = decode_object(header)?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed)?;
    let alg: Algorithm = alg_name.parse().map_err(|_| JwtError::AlgorithmNotAllowed(alg_name.to_owned()))?;
    if !is_asymmetric(alg) || !policy.algorithms.contains(&alg) {
        return Err(JwtError::AlgorithmNotAllowed(alg_name.to_owned()));
    }
    if let Some(member) = KEY_BEARING_HEADERS.into_iter().find(|m| header.contains_key(*m)) {
        return Err(JwtError::KeyInHeader(member));
    }
    if header.contains_key("crit") {
        return Err(JwtError::CriticalHeader);
    }
    let text = |name: &'static str| match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::Malformed),
    };
    let (kid, typ) = (text("kid")?, text("typ")?);
    if let Some(expected) = policy.typ
        && !typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(expected))
    {
        return Err(JwtError::WrongType);
    }
    Ok(UnverifiedHeader { alg, kid, typ })
}

/// A string claim read WITHOUT verification, only to find which keys to verify the token with
/// (the client an assertion claims to come from); [`verify`] then checks it.
pub fn unverified_claim(token: &str, name: &'static str) -> Result<String, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let claims = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    string_claim(&decode_object(claims)?, name)?.map(str::to_owned).ok_or(JwtError::MissingClaim(name))
}

/// Whether a key can verify `alg`: the right type and curve, a signing key, and its own `alg`
/// (if it names one) the same.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let type_fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => ec.curve == EllipticCurve::P384,
        (AlgorithmParameters::RSA(_), a) => matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    let use_fits =
        jwk.common.public_key_use.as_ref().is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
    let alg_fits = jwk.common.key_algorithm.is_none_or(|k| k == alg.into());
    type_fits && use_fits && alg_fits
}

/// The one key a token may be verified with: `kid` selects by exact string among the keys
/// that fit the algorithm; without a `kid` there must be exactly one.
fn select_key<'k>(keys: &'k [Jwk], header: &UnverifiedHeader) -> Result<&'k Jwk, JwtError> {
    let mut fitting = keys.iter().filter(|k| key_fits(k, header.alg));
    match &header.kid {
        Some(kid) => {
            fitting.find(|k| k.common.key_id.as_deref() == Some(kid.as_str())).ok_or(JwtError::UnknownKey)
        }
        None => match (fitting.next(), fitting.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(JwtError::UnknownKey),
            (Some(_), Some(_)) => Err(JwtError::AmbiguousKey),
        },
    }
}

/// ECDSA signatures in JWS are `r || s` of a fixed size; zero `r` or `s` is never valid (the
/// "psychic signature" forgery passes verifiers that forget to check).
fn ecdsa_signature_is_well_formed(alg: Algorithm, signature: &[u8]) -> bool {
    let half = match alg {
        Algorithm::ES256 => 32,
        Algorithm::ES384 => 48,
        _ => return true,
    };
    signature.len() == 2 * half
        && signature[..half].iter().any(|b| *b != 0)
        && signature[half..].iter().any(|b| *b != 0)
}

/// A NumericDate claim: a JSON number (never a string), seconds since the epoch.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<OffsetDateTime>, JwtError> {
    let Some(value) = claims.get(name) else { return Ok(None) };
    let seconds = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
        }
        _ => None,
    }
    .ok_or(JwtError::ClaimType(name))?;
    OffsetDateTime::from_unix_timestamp(seconds).map(Some).map_err(|_| JwtError::ClaimType(name))
}

fn string_claim<'c>(claims: &'c Map<String, Value>, name: &'static str) -> Result<Option<&'c str>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::ClaimType(name)),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[&str]) -> Result<(), JwtError> {
    let presented: Vec<&str> = match claims.get("aud") {
        None => return Err(JwtError::MissingClaim("aud")),
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => {
            many.iter().map(|v| v.as_str().ok_or(JwtError::ClaimType("aud"))).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(JwtError::ClaimType("aud")),
    };
    if presented.iter().any(|aud| accepted.contains(aud)) { Ok(()) } else { Err(JwtError::WrongAudience) }
}

/// Checks the time claims: `exp` required and a number, not passed; `nbf` and `iat` not in the
/// future; the lifetime within the policy's bound.
fn check_times(
    claims: &Map<String, Value>,
    policy: &JwtPolicy<'_>,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, JwtError> {
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
    if exp + policy.leeway + policy.expired_grace <= now {
        return Err(JwtError::Expired);
    }
    if policy.expired_grace > Duration::ZERO {
        // Past its exp on purpose: its age is bounded by iat instead.
        let iat = numeric_date(claims, "iat")?.ok_or(JwtError::MissingClaim("iat"))?;
        if iat + policy.expired_grace + policy.leeway <= now {
            return Err(JwtError::Expired);
        }
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now + policy.leeway) {
        return Err(JwtError::NotYetValid);
    }
    let iat = numeric_date(claims, "iat")?;
    if iat.is_some_and(|iat| iat > now + policy.leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    let lifetime_from = iat.map_or(now, |iat| iat.min(now));
    if exp - lifetime_from > policy.max_lifetime + policy.leeway {
        return Err(JwtError::LifetimeTooLong);
    }
    Ok(exp)
}

/// Verifies a compact JWS against `keys` under `policy` at `now`.
pub fn verify(
    token: &str,
    keys: &[Jwk],
    policy: &JwtPolicy<'_>,
    now: OffsetDateTime,
) -> Result<VerifiedJwt, JwtError> {
    let header = read_header(token, policy)?;
    let parts: Vec<&str> = token.split('.').collect();
    let [encoded_header, encoded_claims, encoded_signature] = parts.as_slice() else {
        return Err(JwtError::Malformed);
    };
    let claims = decode_object(encoded_claims)?;
    let signature = decode_part(encoded_signature)?;
    if !ecdsa_signature_is_well_formed(header.alg, &signature) {
        return Err(JwtError::BadSignature);
    }
    let key = select_key(keys, &header)?;
    let decoding_key = DecodingKey::from_jwk(key).map_err(|_| JwtError::UnknownKey)?;
    let signing_input = &token[..encoded_header.len() + 1 + encoded_claims.len()];
    let verified =
        jsonwebtoken::crypto::verify(encoded_signature, signing_input.as_bytes(), &decoding_key, header.alg)
            .map_err(|_| JwtError::BadSignature)?;
    if !verified {
        return Err(JwtError::BadSignature);
    }
    // Claims are judged only once the signature holds, so a forger learns nothing from them.
    let expires_at = check_times(&claims, policy, now)?;
    match string_claim(&claims, "iss")? {
        None => return Err(JwtError::MissingClaim("iss")),
        Some(iss) if iss != policy.issuer => return Err(JwtError::WrongIssuer),
        Some(_) => {}
    }
    check_audience(&claims, policy.audiences)?;
    if let Some(expected) = policy.subject {
        match string_claim(&claims, "sub")? {
            None => return Err(JwtError::MissingClaim("sub")),
            Some(sub) if sub != expected => return Err(JwtError::WrongSubject),
            Some(_) => {}
        }
    }
    let jti = string_claim(&claims, "jti")?.map(str::to_owned);
    match &jti {
        None if policy.require_jti => return Err(JwtError::MissingClaim("jti")),
        Some(jti) if jti.is_empty() || jti.len() > MAX_JTI_LEN => return Err(JwtError::ClaimType("jti")),
        _ => {}
    }
    Ok(VerifiedJwt { alg: header.alg, kid: header.kid, claims, expires_at, jti })
}

#[cfg(test)]
#[path = "jose_tests.rs"]
mod tests;
