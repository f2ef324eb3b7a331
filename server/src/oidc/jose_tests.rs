//! Each forgery the verifier must refuse, with real keys (aws-lc-rs) and real signatures.

use countersign_e2e::jose::{TestKey, b64_json, forge, hs256};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);
const ISSUER: &str = "client-1";
const AUDIENCES: [&str; 2] = ["https://mfa.example.com/oidc/token", "https://mfa.example.com"];

fn policy() -> JwtPolicy<'static> {
    JwtPolicy {
        algorithms: &[Algorithm::ES256, Algorithm::RS256],
        issuer: ISSUER,
        audiences: &AUDIENCES,
        subject: Some(ISSUER),
        typ: None,
        max_lifetime: Duration::minutes(5),
        leeway: Duration::seconds(30),
        require_jti: true,
        expired_grace: Duration::ZERO,
    }
}

fn claims() -> Value {
    let now = NOW.unix_timestamp();
    json!({ "iss": ISSUER, "sub": ISSUER, "aud": AUDIENCES[0], "jti": "j-1", "iat": now, "exp": now + 60 })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn check(token: &str, keys: &[&TestKey]) -> Result<VerifiedJwt, JwtError> {
    let jwks: Vec<Jwk> = keys.iter().map(|k| k.jwk.clone()).collect();
    verify(token, &jwks, &policy(), NOW)
}

#[test]
fn a_good_es256_and_rs256_token_verify() {
    let (ec, rsa) = (TestKey::es256("ec-1"), TestKey::rs256("rsa-1"));
    let verified = check(&ec.sign(&claims()), &[&ec, &rsa]).unwrap();
    assert_eq!(
        (verified.alg, verified.kid.as_deref(), verified.jti.as_deref()),
        (Algorithm::ES256, Some("ec-1"), Some("j-1"))
    );
    assert_eq!(verified.expires_at, NOW + Duration::seconds(60));
    assert_eq!(check(&rsa.sign(&claims()), &[&ec, &rsa]).unwrap().alg, Algorithm::RS256);
    let to_issuer = with(claims(), "aud", json!(["other", AUDIENCES[1]]));
    assert!(check(&ec.sign(&to_issuer), &[&ec]).is_ok(), "aud may be an array naming the issuer");
}

/// Attack: `alg: none` with an empty signature, in every spelling.
#[test]
fn alg_none_is_refused() {
    let key = TestKey::es256("k");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = forge(&json!({ "alg": alg, "kid": "k" }), &claims(), b"");
        assert!(matches!(check(&token, &[&key]), Err(JwtError::AlgorithmNotAllowed(_))), "{alg}");
        let no_signature = token.trim_end_matches('.').to_owned();
        assert!(check(&no_signature, &[&key]).is_err(), "{alg} without a third part");
    }
}

/// Attack: HS256 keyed with the verifier's public key (the RSA modulus bytes, the PEM-like
/// JWK text, the EC point): a lax verifier would HMAC-check it with the "secret" it holds.
#[test]
fn hs256_keyed_with_a_public_key_is_refused() {
    let (ec, rsa) = (TestKey::es256("k"), TestKey::rs256("r"));
    let mut secrets: Vec<Vec<u8>> =
        vec![rsa.public_jwk().to_string().into_bytes(), ec.public_jwk().to_string().into_bytes()];
    if let jsonwebtoken::jwk::AlgorithmParameters::RSA(params) = &rsa.jwk.algorithm {
        secrets.push(params.n.clone().into_bytes());
        secrets.push(URL_SAFE_NO_PAD.decode(&params.n).unwrap());
    }
    for secret in secrets {
        for kid in ["k", "r"] {
            let token = hs256(&json!({ "alg": "HS256", "kid": kid }), &claims(), &secret);
            assert_eq!(
                check(&token, &[&ec, &rsa]).unwrap_err(),
                JwtError::AlgorithmNotAllowed("HS256".into())
            );
        }
    }
    let policy_with_hs = JwtPolicy { algorithms: &[Algorithm::HS256, Algorithm::ES256], ..policy() };
    let token = hs256(&json!({ "alg": "HS256" }), &claims(), b"secret");
    assert!(
        matches!(
            verify(&token, std::slice::from_ref(&ec.jwk), &policy_with_hs, NOW),
            Err(JwtError::AlgorithmNotAllowed(_))
        ),
        "HMAC is refused even if a caller lists it"
    );
}

/// Attack: the token carries its own key (`jwk`) or points at one (`jku`, `x5u`, `x5c`), signed
/// by the attacker's key: keys come from registration only, never from the token.
#[test]
fn an_embedded_jwk_or_key_url_is_refused() {
    let (ours, attacker) = (TestKey::es256("k"), TestKey::es256("k"));
    for (member, value) in [
        ("jwk", attacker.public_jwk()),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        let token = attacker.sign_raw(&json!({ "alg": "ES256", "kid": "k", member: value }), &claims());
        assert!(matches!(check(&token, &[&ours]), Err(JwtError::KeyInHeader(m)) if m == member), "{member}");
    }
    // Without the header member, the attacker's key is simply not ours.
    let plain = attacker.sign_raw(&json!({ "alg": "ES256", "kid": "k" }), &claims());
    assert_eq!(check(&plain, &[&ours]).unwrap_err(), JwtError::BadSignature);
}

/// Attack: `kid` values meant for a file path, SQL or a URL: kid only selects, by exact
/// string, among the keys given; anything else is an unknown key.
#[test]
fn kid_tricks_select_no_key() {
    let (ours, attacker) = (TestKey::es256("k1"), TestKey::es256("x"));
    for kid in [
        "../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1",
        "k1' --",
        "k1\u{0}",
        "K1",
        " k1",
        "https://attacker.example/key",
        "",
    ] {
        let token = attacker.sign_raw(&json!({ "alg": "ES256", "kid": kid }), &claims());
        assert_eq!(check(&token, &[&ours]).unwrap_err(), JwtError::UnknownKey, "{kid:?}");
    }
    let numeric_kid = attacker.sign_raw(&json!({ "alg": "ES256", "kid": 1 }), &claims());
    assert_eq!(check(&numeric_kid, &[&ours]).unwrap_err(), JwtError::Malformed);
}

#[test]
fn without_kid_exactly_one_fitting_key_is_used() {
    let (a, b, rsa) = (TestKey::es256("a"), TestKey::es256("b"), TestKey::rs256("r"));
    let token = a.sign_raw(&json!({ "alg": "ES256" }), &claims());
    assert!(check(&token, &[&a, &rsa]).is_ok(), "the only EC key fits");
    assert_eq!(check(&token, &[&a, &b]).unwrap_err(), JwtError::AmbiguousKey);
    // An RS256 header cannot select an EC key, even by its kid.
    let confused = a.sign_raw(&json!({ "alg": "RS256", "kid": "a" }), &claims());
    assert_eq!(check(&confused, &[&a]).unwrap_err(), JwtError::UnknownKey);
}

/// Attack: `exp` as a string (some libraries skip the check when the type is wrong), missing,
/// or absurd.
#[test]
fn exp_must_be_a_present_number() {
    let key = TestKey::es256("k");
    let later = (NOW + Duration::seconds(60)).unix_timestamp();
    for exp in [json!(later.to_string()), json!(null), json!(true), json!([later]), json!({ "v": later })] {
        let token = key.sign(&with(claims(), "exp", exp.clone()));
        assert_eq!(check(&token, &[&key]).unwrap_err(), JwtError::ClaimType("exp"), "{exp}");
    }
    let token = key.sign(&without(claims(), "exp"));
    assert_eq!(check(&token, &[&key]).unwrap_err(), JwtError::MissingClaim("exp"));
    let token = key.sign(&with(claims(), "exp", json!(1e300)));
    assert!(check(&token, &[&key]).is_err(), "a far-future float exp");
    let token = key.sign(&with(claims(), "exp", json!(later as f64 + 0.5)));
    assert!(check(&token, &[&key]).is_ok(), "a fractional NumericDate is a number");
}

/// Attack: `crit` naming an extension we would silently ignore (e.g. `b64: false`).
#[test]
fn unknown_crit_is_refused() {
    let key = TestKey::es256("k");
    for crit in [json!(["b64"]), json!(["exp"]), json!([]), json!("x")] {
        let token =
            key.sign_raw(&json!({ "alg": "ES256", "kid": "k", "crit": crit, "b64": false }), &claims());
        assert_eq!(check(&token, &[&key]).unwrap_err(), JwtError::CriticalHeader);
    }
}

/// Attack: the "psychic signature" — r = s = 0 verifies in broken ECDSA verifiers.
#[test]
fn an_all_zero_ecdsa_signature_is_refused() {
    let key = TestKey::es256("k");
    let header = json!({ "alg": "ES256", "kid": "k" });
    for signature in [vec![0u8; 64], vec![0u8; 96], vec![], [vec![0u8; 32], vec![1u8; 32]].concat()] {
        let token = forge(&header, &claims(), &signature);
        assert_eq!(check(&token, &[&key]).unwrap_err(), JwtError::BadSignature, "{} bytes", signature.len());
    }
}

#[test]
fn a_tampered_claim_or_signature_fails() {
    let key = TestKey::es256("k");
    let token = key.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let swapped = format!("{}.{}.{}", parts[0], b64_json(&with(claims(), "sub", json!("admin"))), parts[2]);
    assert_eq!(check(&swapped, &[&key]).unwrap_err(), JwtError::BadSignature);
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(check(&flipped, &[&key]).unwrap_err(), JwtError::BadSignature);
    assert_eq!(check(&format!("{token}.x"), &[&key]).unwrap_err(), JwtError::Malformed);
    assert_eq!(check(&format!("{token}="), &[&key]).unwrap_err(), JwtError::Malformed);
}

/// Attack: replaying an old token, or using one minted for later.
#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let key = TestKey::es256("k");
    let at = |offset: i64| json!((NOW + Duration::seconds(offset)).unix_timestamp());
    let expired = with(with(claims(), "iat", at(-300)), "exp", at(-31));
    assert_eq!(check(&key.sign(&expired), &[&key]).unwrap_err(), JwtError::Expired);
    let within_leeway = with(with(claims(), "iat", at(-200)), "exp", at(-10));
    assert!(check(&key.sign(&within_leeway), &[&key]).is_ok(), "30 s of clock skew tolerated");
    let not_yet = with(claims(), "nbf", at(120));
    assert_eq!(check(&key.sign(&not_yet), &[&key]).unwrap_err(), JwtError::NotYetValid);
    let future_iat = with(with(claims(), "iat", at(3600)), "exp", at(3660));
    assert_eq!(check(&key.sign(&future_iat), &[&key]).unwrap_err(), JwtError::IssuedInFuture);
    let long_lived = with(claims(), "exp", at(3600));
    assert_eq!(check(&key.sign(&long_lived), &[&key]).unwrap_err(), JwtError::LifetimeTooLong);
    let long_lived_no_iat = without(long_lived, "iat");
    assert_eq!(check(&key.sign(&long_lived_no_iat), &[&key]).unwrap_err(), JwtError::LifetimeTooLong);
    let string_nbf = with(claims(), "nbf", json!("0"));
    assert_eq!(check(&key.sign(&string_nbf), &[&key]).unwrap_err(), JwtError::ClaimType("nbf"));
}

/// Attack: a token minted for another issuer, audience or subject (a token from one client
/// presented as another's, or one meant for another server).
#[test]
fn wrong_iss_aud_or_sub_is_refused() {
    let key = TestKey::es256("k");
    let cases = [
        (with(claims(), "iss", json!("client-2")), JwtError::WrongIssuer),
        (without(claims(), "iss"), JwtError::MissingClaim("iss")),
        (with(claims(), "iss", json!(["client-1"])), JwtError::ClaimType("iss")),
        (with(claims(), "aud", json!("https://other.example/token")), JwtError::WrongAudience),
        (with(claims(), "aud", json!(["https://other.example", "x"])), JwtError::WrongAudience),
        (with(claims(), "aud", json!("https://mfa.example.com/oidc/token/")), JwtError::WrongAudience),
        (with(claims(), "aud", json!([1])), JwtError::ClaimType("aud")),
        (without(claims(), "aud"), JwtError::MissingClaim("aud")),
        (with(claims(), "sub", json!("client-2")), JwtError::WrongSubject),
        (without(claims(), "sub"), JwtError::MissingClaim("sub")),
        (without(claims(), "jti"), JwtError::MissingClaim("jti")),
        (with(claims(), "jti", json!(7)), JwtError::ClaimType("jti")),
        (with(claims(), "jti", json!("")), JwtError::ClaimType("jti")),
    ];
    for (claims, expected) in cases {
        assert_eq!(check(&key.sign(&claims), &[&key]).unwrap_err(), expected, "{claims}");
    }
}

#[test]
fn typ_is_enforced_when_the_caller_pins_it() {
    let key = TestKey::es256("k");
    let pinned = JwtPolicy { typ: Some("oauth-authz-req+jwt"), ..policy() };
    let jwt = key.sign(&claims());
    assert_eq!(verify(&jwt, std::slice::from_ref(&key.jwk), &pinned, NOW).unwrap_err(), JwtError::WrongType);
    let typed = key.sign_raw(&json!({ "alg": "ES256", "kid": "k", "typ": "oauth-authz-req+jwt" }), &claims());
    assert!(verify(&typed, std::slice::from_ref(&key.jwk), &pinned, NOW).is_ok());
}

#[test]
fn oversized_and_garbage_tokens_are_refused_without_panicking() {
    let key = TestKey::es256("k");
    for garbage in [
        "",
        ".",
        "..",
        "a.b.c",
        "e30.e30.",
        "e30.e30.e30",
        "W10.e30.AA",
        "e30",
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.AA",
    ] {
        assert!(check(garbage, &[&key]).is_err(), "{garbage}");
    }
    let huge = format!("{}.{}.AA", "e".repeat(MAX_TOKEN_BYTES), "e");
    assert_eq!(check(&huge, &[&key]).unwrap_err(), JwtError::TooLarge);
}

proptest::proptest! {
    /// Any flipped bit anywhere in a signed token makes it fail (header, claims or signature).
    #[test]
    fn any_flipped_bit_fails(at in 0usize..4096, bit in 0u8..8) {
        use std::sync::LazyLock;
        static SIGNED: LazyLock<(TestKey, String)> = LazyLock::new(|| {
            let key = TestKey::es256("k");
            let token = key.sign(&claims());
            (key, token)
        });
        let (key, token) = &*SIGNED;
        let mut bytes = token.as_bytes().to_vec();
        let i = at % bytes.len();
        bytes[i] ^= 1 << bit;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        // A flip may land on a base64 padding bit that decodes to the same bytes: then the
        // token is unchanged in meaning, and verifying it is right.
        let same_meaning = URL_SAFE_NO_PAD.decode(altered.split('.').nth(2).unwrap_or("")).ok()
            == URL_SAFE_NO_PAD.decode(token.split('.').nth(2).unwrap_or("")).ok()
            && altered.split('.').take(2).eq(token.split('.').take(2));
        proptest::prop_assert!(same_meaning || check(&altered, &[key]).is_err());
    }
}

/// An upstream issuer's hint arrives already expired (Microsoft Entra issues it so): it is
/// accepted within the policy's grace, measured from `iat`, and never without `iat`.
#[test]
fn an_expired_hint_is_accepted_only_within_its_grace() {
    let key = TestKey::rs256("r");
    let hints = JwtPolicy {
        expired_grace: Duration::minutes(10),
        max_lifetime: Duration::minutes(10),
        require_jti: false,
        ..policy()
    };
    let jwks = [key.jwk.clone()];
    let issued = |age: i64| {
        let iat = (NOW - Duration::seconds(age)).unix_timestamp();
        // Entra's own example: exp one second before iat.
        with(with(claims(), "iat", json!(iat)), "exp", json!(iat - 1))
    };
    assert!(verify(&key.sign(&issued(5)), &jwks, &hints, NOW).is_ok());
    assert!(verify(&key.sign(&issued(9 * 60)), &jwks, &hints, NOW).is_ok());
    assert_eq!(verify(&key.sign(&issued(11 * 60)), &jwks, &hints, NOW).unwrap_err(), JwtError::Expired);
    let no_iat = without(issued(5), "iat");
    assert_eq!(verify(&key.sign(&no_iat), &jwks, &hints, NOW).unwrap_err(), JwtError::MissingClaim("iat"));
    // Without a grace (every other token kind) the same hint is expired.
    assert_eq!(verify(&key.sign(&issued(60)), &jwks, &policy(), NOW).unwrap_err(), JwtError::Expired);
}
