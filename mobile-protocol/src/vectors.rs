//! Generates and checks `test-vectors.json`, the byte-exact reference for other implementations.
//!
//! `COUNTERSIGN_REGENERATE_VECTORS=1 cargo test -p countersign-mobile-protocol vectors` rewrites
//! the file (keeping its keys, so only the randomised ECDSA signatures change); a plain
//! `cargo test` loads the committed file and checks every vector against this crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use crate::canonical::Label;
use crate::challenge::{
    ChallengeAnswer, ChallengeDetails, ChallengeResponse, Decision, SignedChallengeDetails,
};
use crate::enrollment::{Enrollment, EnrollmentRequest};
use crate::error::ProtocolError;
use crate::fields::{ActivationCode, ChallengeId, DeviceId, Nonce, ServerId};
use crate::keys::{self, PublicKey};
use crate::push::{ApnsEnvironment, PushRegistration, PushToken};
use crate::request::{HttpRequest, RequestHeaders};
use crate::signature::Signature;
use crate::uri::{EnrollmentUri, ServerUrl};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test-vectors.json");
const REGENERATE: &str = "COUNTERSIGN_REGENERATE_VECTORS";

/// Order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const SERVER_URL: &str = "https://mfa.example.com";
const SERVER_ID: &str = "https://mfa.example.com";
const DEVICE_ID: &str = "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b";
const CHALLENGE_ID: &str = "9b1d6c7e-2f3a-4b5c-8d9e-0a1b2c3d4e5f";
const TIMESTAMP: u64 = 1_767_225_600;

struct Keys {
    device: (Vec<u8>, EcdsaKeyPair),
    other_device: (Vec<u8>, EcdsaKeyPair),
    server: (Vec<u8>, EcdsaKeyPair),
}

fn load_or_generate_keys(rng: &SystemRandom) -> Keys {
    let existing: Option<Value> =
        std::fs::read_to_string(PATH).ok().and_then(|text| serde_json::from_str(&text).ok());
    let key = |name: &str| {
        let pkcs8 = existing
            .as_ref()
            .and_then(|v| v["keys"][name]["pkcs8_hex"].as_str())
            .map(|h| hex::decode(h).unwrap())
            .unwrap_or_else(|| keys::generate_pkcs8(rng).unwrap());
        let pair = keys::key_pair_from_pkcs8(&pkcs8, rng).unwrap();
        (pkcs8, pair)
    };
    Keys { device: key("device"), other_device: key("other_device"), server: key("server") }
}

fn key_json((pkcs8, pair): &(Vec<u8>, EcdsaKeyPair)) -> Value {
    json!({
        "pkcs8_hex": hex::encode(pkcs8),
        "public_key": PublicKey::from_key_pair(pair).unwrap().to_base64url(),
        "public_key_hex": hex::encode(pair.public_key().as_ref()),
    })
}

fn device_id() -> DeviceId {
    DeviceId::new(DEVICE_ID).unwrap()
}

fn server_id() -> ServerId {
    ServerId::new(SERVER_ID).unwrap()
}

fn server_nonce() -> Nonce {
    Nonce::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap()
}

fn request_nonce() -> Nonce {
    Nonce::from_bytes(&(0xa0u8..0xc0).collect::<Vec<_>>()).unwrap()
}

fn details() -> ChallengeDetails {
    ChallengeDetails {
        challenge_id: ChallengeId::new(CHALLENGE_ID).unwrap(),
        server_nonce: server_nonce(),
        app_name: "Payroll".into(),
        ip: "203.0.113.7".into(),
        user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Firefox/125.0".into(),
        location: Some("Berlin, DE".into()),
        created_at: TIMESTAMP,
        expires_at: TIMESTAMP + 60,
    }
}

fn enrollment(public_key: PublicKey, push: PushRegistration) -> Enrollment {
    Enrollment {
        server: ServerUrl::parse(SERVER_URL).unwrap(),
        activation_code: ActivationCode::new("K7Q2-MX9P-4HTR-WB3N").unwrap(),
        public_key,
        push,
        device_name: "Alice's iPhone".into(),
        platform: "iOS 17.4".into(),
    }
}

/// `(r, s)` of a DER signature, each left-padded to 32 bytes.
fn scalars(der: &[u8]) -> ([u8; 32], [u8; 32]) {
    let take = |input: &[u8]| -> ([u8; 32], usize) {
        let len = usize::from(input[1]);
        let value = &input[2..2 + len];
        let value = value.strip_prefix(&[0]).unwrap_or(value);
        let mut out = [0u8; 32];
        out[32 - value.len()..].copy_from_slice(value);
        (out, 2 + len)
    };
    let (r, used) = take(&der[2..]);
    let (s, _) = take(&der[2 + used..]);
    (r, s)
}

fn der_integer(value: &[u8; 32]) -> Vec<u8> {
    let start = value.iter().position(|&b| b != 0).unwrap_or(31);
    let mut body = value[start..].to_vec();
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

fn der(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
    let mut content = der_integer(r);
    content.extend(der_integer(s));
    let mut out = vec![0x30, u8::try_from(content.len()).unwrap()];
    out.extend(content);
    out
}

fn n_minus(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = u8::try_from(d).unwrap();
    }
    out
}

/// Returns (low-S form, high-S twin) of a signature; both verify.
fn low_and_high(signature: &Signature) -> (Signature, Signature) {
    let (r, s) = scalars(signature.as_der());
    let twin = n_minus(&s);
    let (low, high) = if s < twin { (s, twin) } else { (twin, s) };
    (Signature::from_der(&der(&r, &low)).unwrap(), Signature::from_der(&der(&r, &high)).unwrap())
}

fn relabel(canonical: &[u8], from: Label, to: Label) -> Vec<u8> {
    let prefix_len = 4 + from.as_str().len();
    let mut out = u32::try_from(to.as_str().len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(to.as_str().as_bytes());
    out.extend_from_slice(&canonical[prefix_len..]);
    out
}

fn generate() -> Value {
    let rng = SystemRandom::new();
    let k = load_or_generate_keys(&rng);
    let device_key = PublicKey::from_key_pair(&k.device.1).unwrap();
    let other_key = PublicKey::from_key_pair(&k.other_device.1).unwrap();
    let sign = |pair: &EcdsaKeyPair, bytes: &[u8]| keys::sign(pair, &rng, bytes).unwrap();
    let mut messages = Vec::new();

    for (name, push) in [
        (
            "enrollment_apns",
            PushRegistration::Apns {
                token: PushToken::new("5f3c8e0a9b7d6c4e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e")
                    .unwrap(),
                environment: ApnsEnvironment::Production,
            },
        ),
        ("enrollment_no_push", PushRegistration::None),
    ] {
        let request = enrollment(device_key.clone(), push).sign(&k.device.1, &rng).unwrap();
        messages.push(json!({
            "name": name,
            "type": "enrollment",
            "signer": "device",
            "json": request,
            "canonical_hex": hex::encode(request.enrollment.canonical_bytes().unwrap()),
        }));
    }

    let body = br#"{"provider":"fcm","token":"dXNlcjpmY20tdG9rZW4tZXhhbXBsZQ"}"#;
    for (name, method, path, body) in [
        ("device_request_list_challenges", "GET", "/device/v1/challenges", &b""[..]),
        ("device_request_update_push_token", "PUT", "/device/v1/push-token", &body[..]),
    ] {
        let request = HttpRequest { method, path_and_query: path, body };
        let canonical = request.canonical_bytes(TIMESTAMP, &request_nonce(), &device_id()).unwrap();
        let headers = RequestHeaders {
            device_id: device_id(),
            timestamp: TIMESTAMP,
            nonce: request_nonce(),
            signature: sign(&k.device.1, &canonical),
        };
        let headers: serde_json::Map<String, Value> =
            headers.to_pairs().into_iter().map(|(n, v)| (n.to_owned(), Value::String(v))).collect();
        messages.push(json!({
            "name": name,
            "type": "device_request",
            "signer": "device",
            "request": {
                "method": method,
                "path_and_query": path,
                "body_utf8": std::str::from_utf8(body).unwrap(),
            },
            "headers": headers,
            "now": TIMESTAMP + 30,
            "max_skew_secs": 300,
            "canonical_hex": hex::encode(&canonical),
        }));
    }

    let signed_details = details().sign(&server_id(), &device_id(), &k.server.1, &rng).unwrap();
    messages.push(json!({
        "name": "challenge_details",
        "type": "challenge_details",
        "signer": "server",
        "json": signed_details,
        "canonical_hex": hex::encode(details().canonical_bytes(&server_id(), &device_id()).unwrap()),
    }));

    let mut approve = None;
    for (name, decision, number, counter) in [
        ("challenge_response_approve", Decision::Approve, "042", 7),
        ("challenge_response_deny", Decision::Deny, "", 8),
        ("challenge_response_report", Decision::Report, "", 9),
    ] {
        let answer = ChallengeAnswer::new(&details(), decision, number, device_id(), counter);
        let canonical = answer.canonical_bytes().unwrap();
        let mut response = answer.sign(&k.device.1, &rng).unwrap();
        let (low, high) = low_and_high(&response.signature);
        response.signature = low;
        messages.push(json!({
            "name": name,
            "type": "challenge_response",
            "signer": "device",
            "json": response,
            "canonical_hex": hex::encode(&canonical),
        }));
        if decision == Decision::Approve {
            let mut twin = response.clone();
            twin.signature = high;
            messages.push(json!({
                "name": "challenge_response_approve_high_s",
                "type": "challenge_response",
                "signer": "device",
                "note": "Same message as challenge_response_approve with s replaced by n - s (the high-S twin). It MUST verify: the protocol does not normalise S because phones do not, and replay protection never depends on signature bytes.",
                "json": twin,
                "canonical_hex": hex::encode(&canonical),
            }));
            approve = Some((canonical, response.signature));
        }
    }

    let (canonical, good_sig) = approve.unwrap();
    let device_b64 = device_key.to_base64url();
    let mut invalid = Vec::new();
    let mut add = |name: &str,
                   reason: &str,
                   key: String,
                   message: Vec<u8>,
                   sig: String,
                   expected: &str,
                   signed: Option<Vec<u8>>| {
        let mut v = json!({
            "name": name,
            "reason": reason,
            "type": "challenge_response",
            "public_key": key,
            "canonical_hex": hex::encode(message),
            "signature": sig,
            "expected_error": expected,
        });
        if let Some(signed) = signed {
            v["signed_hex"] = Value::String(hex::encode(signed));
        }
        invalid.push(v);
    };
    let mut flipped = canonical.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    add(
        "flipped_message_byte",
        "last byte of the canonical bytes (the counter) flipped after signing",
        device_b64.clone(),
        flipped,
        good_sig.to_base64url(),
        "signature_invalid",
        None,
    );
    let mut sig_bytes = good_sig.as_der().to_vec();
    let last = sig_bytes.len() - 1;
    sig_bytes[last] ^= 0x01;
    add(
        "flipped_signature_byte",
        "last byte of the DER signature (inside s) flipped",
        device_b64.clone(),
        canonical.clone(),
        crate::encoding::encode(&sig_bytes),
        "signature_invalid",
        None,
    );
    let wrong_label = relabel(&canonical, Label::ChallengeResponse, Label::DeviceRequest);
    add(
        "wrong_label",
        "a genuine device signature over the same fields under the device-request label (signed_hex): domain separation makes it useless as a challenge response",
        device_b64.clone(),
        canonical.clone(),
        sign(&k.device.1, &wrong_label).to_base64url(),
        "signature_invalid",
        Some(wrong_label),
    );
    let details_label = relabel(&canonical, Label::ChallengeResponse, Label::ChallengeDetails);
    add(
        "server_label",
        "a genuine signature under the challenge-details label (signed_hex)",
        device_b64.clone(),
        canonical.clone(),
        sign(&k.device.1, &details_label).to_base64url(),
        "signature_invalid",
        Some(details_label),
    );
    add(
        "wrong_key",
        "signed by other_device, verified with device",
        device_b64.clone(),
        canonical.clone(),
        sign(&k.other_device.1, &canonical).to_base64url(),
        "signature_invalid",
        None,
    );
    let mut off_curve = device_key.as_bytes().to_vec();
    off_curve[64] ^= 0x01;
    add(
        "public_key_not_on_curve",
        "device public key with the last byte of Y flipped: well-formed SEC1, but not a P-256 point; ring rejects it at verification",
        crate::encoding::encode(&off_curve),
        canonical.clone(),
        good_sig.to_base64url(),
        "signature_invalid",
        None,
    );
    let mut wrong_tag = good_sig.as_der().to_vec();
    wrong_tag[0] = 0x31;
    add(
        "malformed_der_wrong_tag",
        "SEQUENCE tag 0x30 replaced by 0x31",
        device_b64.clone(),
        canonical.clone(),
        crate::encoding::encode(&wrong_tag),
        "signature_invalid",
        None,
    );
    let (r, s) = scalars(good_sig.as_der());
    let mut padded = vec![0x02, 34, 0, 0];
    padded.extend_from_slice(&r);
    padded.extend(der_integer(&s));
    let mut non_minimal = vec![0x30, u8::try_from(padded.len()).unwrap()];
    non_minimal.extend(padded);
    add(
        "malformed_der_non_minimal_integer",
        "r encoded with superfluous leading zero bytes",
        device_b64.clone(),
        canonical.clone(),
        crate::encoding::encode(&non_minimal),
        "signature_invalid",
        None,
    );
    let mut trailing = good_sig.as_der().to_vec();
    trailing.push(0);
    add(
        "malformed_der_trailing_byte",
        "one byte appended after the SEQUENCE",
        device_b64.clone(),
        canonical.clone(),
        crate::encoding::encode(&trailing),
        "signature_invalid",
        None,
    );
    let mut raw = r.to_vec();
    raw.extend_from_slice(&s);
    add(
        "raw_r_s_signature",
        "64-byte r || s (IEEE P1363 / CryptoKit rawRepresentation) instead of DER",
        device_b64.clone(),
        canonical.clone(),
        crate::encoding::encode(&raw),
        "signature_invalid",
        None,
    );

    let point = device_key.as_bytes();
    let mut compressed = vec![0x02 | (point[64] & 1)];
    compressed.extend_from_slice(&point[1..33]);
    let mut bad_prefix = point.to_vec();
    bad_prefix[0] = 0x06;
    let invalid_keys = json!([
        {"name": "truncated_public_key", "reason": "last byte removed (64 bytes)", "public_key": crate::encoding::encode(&point[..64]), "expected_error": "invalid_request"},
        {"name": "compressed_public_key", "reason": "33-byte compressed SEC1 form of the device key", "public_key": crate::encoding::encode(&compressed), "expected_error": "invalid_request"},
        {"name": "raw_x_y_public_key", "reason": "64-byte X || Y without the 0x04 prefix", "public_key": crate::encoding::encode(&point[1..]), "expected_error": "invalid_request"},
        {"name": "hybrid_prefix_public_key", "reason": "65 bytes with prefix 0x06 instead of 0x04", "public_key": crate::encoding::encode(&bad_prefix), "expected_error": "invalid_request"},
        {"name": "padded_base64_public_key", "reason": "base64url with '=' padding", "public_key": format!("{}=", crate::encoding::encode(&point[..64])), "expected_error": "invalid_request"},
    ]);

    let uri = EnrollmentUri::new(
        ServerUrl::parse(SERVER_URL).unwrap(),
        ActivationCode::new("K7Q2-MX9P-4HTR-WB3N").unwrap(),
        "alice@example.com",
    )
    .unwrap();
    let uris = json!([
        {"uri": uri.to_uri_string(), "valid": true, "server": SERVER_URL, "code": "K7Q2-MX9P-4HTR-WB3N", "user": "alice@example.com"},
        {"uri": "countersign://enroll?user=z%C3%B6e&code=abc_123&server=http%3a%2f%2f127.0.0.1%3a8080&v=1", "valid": true, "server": "http://127.0.0.1:8080", "code": "abc_123", "user": "zöe"},
        {"uri": "countersign://enroll?v=2&server=https%3A%2F%2Fmfa.example.com&code=abc&user=alice", "valid": false, "expected_error": "unsupported_protocol_version"},
        {"uri": "countersign://enroll?v=1&server=http%3A%2F%2Fmfa.example.com&code=abc&user=alice", "valid": false, "expected_error": "invalid_request", "reason": "plain http to a non-loopback host"},
        {"uri": "countersign://enroll?v=1&server=https%3A%2F%2Fmfa.example.com&user=alice", "valid": false, "expected_error": "invalid_request", "reason": "no code"},
        {"uri": "countersign://enroll?v=1&server=https://mfa.example.com&code=abc&user=alice", "valid": false, "expected_error": "invalid_request", "reason": "':' and '/' not percent-encoded"},
        {"uri": "countersign://enroll?v=1&server=https%3A%2F%2Fmfa.example.com&code=abc&user=al+ice", "valid": false, "expected_error": "invalid_request", "reason": "'+' is not a space here"},
        {"uri": "countersign://enroll?v=1&server=https%3A%2F%2Fmfa.example.com&code=abc&user=alice&code=def", "valid": false, "expected_error": "invalid_request", "reason": "duplicate parameter"},
    ]);

    json!({
        "description": "Countersign device protocol v1 test vectors. See PROTOCOL.md. ECDSA signatures are randomised, so regenerating changes them; keys stay fixed. Canonical bytes are deterministic.",
        "protocol_version": crate::limits::PROTOCOL_VERSION,
        "labels": Label::ALL.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "keys": {
            "device": key_json(&k.device),
            "other_device": key_json(&k.other_device),
            "server": key_json(&k.server),
        },
        "context": {
            "server": SERVER_URL,
            "server_id": SERVER_ID,
            "device_id": DEVICE_ID,
            "server_public_key": PublicKey::from_key_pair(&k.server.1).unwrap().to_base64url(),
            "other_device_public_key": other_key.to_base64url(),
        },
        "messages": messages,
        "invalid_signatures": invalid,
        "invalid_public_keys": invalid_keys,
        "enrollment_uris": uris,
    })
}

/// The wire code (PROTOCOL.md §9) a server answers for `error`: what `expected_error` names.
fn error_name(error: &ProtocolError) -> &'static str {
    error.error_code().as_str()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("missing {key} in {v}"))
}

fn check(file: &Value) {
    let key = |name: &str| PublicKey::from_base64url(str_of(&file["keys"][name], "public_key")).unwrap();
    let rng = SystemRandom::new();
    for name in ["device", "other_device", "server"] {
        let pkcs8 = hex::decode(str_of(&file["keys"][name], "pkcs8_hex")).unwrap();
        let pair = keys::key_pair_from_pkcs8(&pkcs8, &rng).unwrap();
        assert_eq!(PublicKey::from_key_pair(&pair).unwrap(), key(name));
        assert_eq!(hex::encode(key(name).as_bytes()), str_of(&file["keys"][name], "public_key_hex"));
    }
    let (server_id, device_id) = (server_id(), device_id());
    let this_server = ServerUrl::parse(str_of(&file["context"], "server")).unwrap();
    let messages = file["messages"].as_array().unwrap();
    assert!(messages.len() >= 9);
    for m in messages {
        let name = str_of(m, "name");
        let expected = str_of(m, "canonical_hex");
        let signer = key(str_of(m, "signer"));
        let canonical = match str_of(m, "type") {
            "enrollment" => {
                let request: EnrollmentRequest = serde_json::from_value(m["json"].clone()).unwrap();
                assert_eq!(request.enrollment.public_key, signer);
                request.verify(&this_server).unwrap_or_else(|e| panic!("{name}: {e}"));
                request.enrollment.canonical_bytes().unwrap()
            }
            "device_request" => {
                let h = &m["headers"];
                let headers = RequestHeaders::parse(
                    h[crate::request::HEADER_DEVICE_ID].as_str(),
                    h[crate::request::HEADER_TIMESTAMP].as_str(),
                    h[crate::request::HEADER_NONCE].as_str(),
                    h[crate::request::HEADER_SIGNATURE].as_str(),
                )
                .unwrap();
                let r = &m["request"];
                let request = HttpRequest {
                    method: str_of(r, "method"),
                    path_and_query: str_of(r, "path_and_query"),
                    body: str_of(r, "body_utf8").as_bytes(),
                };
                let now = m["now"].as_u64().unwrap();
                let skew = m["max_skew_secs"].as_u64().unwrap();
                headers.verify(&signer, &request, now, skew).unwrap_or_else(|e| panic!("{name}: {e}"));
                request.canonical_bytes(headers.timestamp, &headers.nonce, &headers.device_id).unwrap()
            }
            "challenge_details" => {
                let signed: SignedChallengeDetails = serde_json::from_value(m["json"].clone()).unwrap();
                signed.verify(&signer, &server_id, &device_id).unwrap_or_else(|e| panic!("{name}: {e}"));
                signed.details.canonical_bytes(&server_id, &device_id).unwrap()
            }
            "challenge_response" => {
                let response: ChallengeResponse = serde_json::from_value(m["json"].clone()).unwrap();
                let d = details();
                response
                    .verify(&signer, &d.challenge_id, &d.server_nonce)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                response.answer.canonical_bytes().unwrap()
            }
            other => panic!("unknown type {other}"),
        };
        assert_eq!(hex::encode(&canonical), expected, "{name}: canonical bytes changed");
    }
    let high = messages.iter().find(|m| m["name"] == "challenge_response_approve_high_s").unwrap();
    let low = messages.iter().find(|m| m["name"] == "challenge_response_approve").unwrap();
    let sig = |m: &Value| Signature::from_base64url(str_of(&m["json"], "signature")).unwrap();
    let (low_form, high_form) = low_and_high(&sig(low));
    assert_eq!((low_form, high_form), (sig(low), sig(high)), "high-S vector is the twin of the low-S one");

    for v in file["invalid_signatures"].as_array().unwrap() {
        let name = str_of(v, "name");
        let result = PublicKey::from_base64url(str_of(v, "public_key")).and_then(|key| {
            let signature = Signature::from_base64url(str_of(v, "signature"))?;
            key.verify(&hex::decode(str_of(v, "canonical_hex")).unwrap(), &signature)
        });
        let error = result.expect_err(name);
        assert_eq!(error_name(&error), str_of(v, "expected_error"), "{name}: {error}");
        if let Some(signed) = v["signed_hex"].as_str() {
            let signature = Signature::from_base64url(str_of(v, "signature")).unwrap();
            key("device")
                .verify(&hex::decode(signed).unwrap(), &signature)
                .unwrap_or_else(|e| panic!("{name}: signed_hex must verify: {e}"));
        }
    }
    for v in file["invalid_public_keys"].as_array().unwrap() {
        let name = str_of(v, "name");
        let error = PublicKey::from_base64url(str_of(v, "public_key")).expect_err(name);
        assert_eq!(error_name(&error), str_of(v, "expected_error"), "{name}: {error}");
    }
    for v in file["enrollment_uris"].as_array().unwrap() {
        let uri = str_of(v, "uri");
        match EnrollmentUri::parse(uri) {
            Ok(parsed) => {
                assert_eq!(v["valid"], true, "{uri}");
                assert_eq!(parsed.server.as_str(), str_of(v, "server"));
                assert_eq!(parsed.code.as_str(), str_of(v, "code"));
                assert_eq!(parsed.user, str_of(v, "user"));
            }
            Err(error) => {
                assert_eq!(v["valid"], false, "{uri}: {error}");
                assert_eq!(error_name(&error), str_of(v, "expected_error"), "{uri}: {error}");
            }
        }
    }
}

#[test]
fn committed_vectors_hold() {
    if std::env::var_os(REGENERATE).is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&generate()).unwrap();
        std::fs::write(PATH, format!("{text}\n")).unwrap();
    }
    let text = std::fs::read_to_string(PATH)
        .unwrap_or_else(|e| panic!("{PATH}: {e}; run with {REGENERATE}=1 to create it"));
    check(&serde_json::from_str(&text).unwrap());
}

#[test]
fn freshly_generated_vectors_hold() {
    // Catches a generator/checker disagreement without touching the committed file.
    check(&generate());
}

/// The worked hex examples in PROTOCOL.md must be the vectors' canonical bytes, item by item, so
/// the document a phone developer copies from can never drift from the code.
#[test]
fn protocol_md_worked_examples_match_the_vectors() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let section = doc.split("### Worked example").nth(1).unwrap();
    let blocks: Vec<String> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .take(2)
        .map(|block| {
            block
                .lines()
                .flat_map(|line| {
                    line.split_whitespace()
                        .take_while(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    let file: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let canonical = |name: &str| {
        file["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| str_of(m, "canonical_hex").to_owned())
            .unwrap()
    };
    assert_eq!(blocks[0], canonical("challenge_response_approve"));
    assert_eq!(blocks[1], canonical("device_request_list_challenges"));
}

/// The codes in PROTOCOL.md §9's table.
fn spec_error_codes() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let section = doc.split("## 9. Errors").nth(1).unwrap().split("\n## ").next().unwrap().to_owned();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// A phone written from the spec alone met error names in the vectors (`signature_malformed`,
/// `public_key_length`, …) that the spec never defines. Every `expected_error` is now a §9 code,
/// and §9 lists every code the server can answer.
#[test]
fn every_error_name_in_the_vectors_is_defined_in_the_spec() {
    let codes = spec_error_codes();
    for code in crate::ErrorCode::ALL {
        assert!(codes.iter().any(|c| c == code.as_str()), "{} missing from PROTOCOL.md §9", code.as_str());
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let mut named = 0;
    for group in ["invalid_signatures", "invalid_public_keys", "enrollment_uris"] {
        for v in file[group].as_array().unwrap() {
            if let Some(expected) = v["expected_error"].as_str() {
                assert!(codes.iter().any(|c| c == expected), "{group}: `{expected}` is not defined in §9");
                named += 1;
            }
        }
    }
    assert!(named >= 20, "{named}");
}
