//! The device operations against the fake server: the exact requests a phone sends are checked
//! with the protocol crate's server-side verification (no Countersign server needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Fixture, Recorded, serve};
use countersign_authenticator::device::{self, DeviceInfo};
use countersign_authenticator::error::{EXIT_SERVER_FAULT, EXIT_SERVER_REFUSED};
use countersign_authenticator::state::StateFile;
use countersign_authenticator::{Error, commands};
use countersign_mobile_protocol::{
    ChallengeId, ChallengeResponse, Decision, EnrollmentRequest, EnrollmentUri, HEADER_SIGNATURE,
    PushRegistration, PushToken,
};

#[tokio::test]
async fn pending_is_signed_relative_to_the_base_url_and_only_verified_details_survive() {
    let fixture = Fixture::new();
    let good = fixture.details("ch-good");
    let forger = fixture.stranger_key();
    let mut tampered = fixture.signed_json(&fixture.details("ch-tampered"), &fixture.server_key);
    tampered["app_name"] = "Totally Legit Bank".into();
    let list = serde_json::json!({"challenges": [
        fixture.signed_json(&good, &fixture.server_key),
        fixture.signed_json(&fixture.details("ch-forged"), &forger),
        tampered,
        {"challenge_id": "ch-malformed", "app_name": "x"},
    ]});
    let (base, server) = serve(vec![Box::new(move |_| (200, list.to_string()))]).await;

    let pending = fixture.device(base).pending().await.unwrap();

    assert_eq!(pending.challenges, vec![good]);
    let discarded: Vec<_> = pending.discarded.iter().map(|d| d.challenge_id.as_deref().unwrap()).collect();
    assert_eq!(discarded, ["ch-forged", "ch-tampered", "ch-malformed"]);
    let [request] = <[Recorded; 1]>::try_from(server.await.unwrap()).unwrap();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("GET", "/cs/device/v1/challenges"));
    assert!(request.body.is_empty());
    assert_eq!(request.verify_signed(&fixture.device_public_key()), fixture.account.device_id);
}

#[tokio::test]
async fn approve_persists_the_counter_before_sending_a_verifiable_answer() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let details = fixture.details("ch-1");
    let details_json = fixture.signed_json(&details, &fixture.server_key).to_string();
    let state_path = dir.path().join("state.json");
    let device_key = fixture.device_public_key();
    let expected_nonce = details.server_nonce.clone();
    let (base, server) = serve(vec![
        Box::new(move |_| (200, details_json)),
        Box::new(move |request: &Recorded| {
            // The counter in the body must already be on disk when the request arrives.
            let on_disk = StateFile::new(&state_path).load().unwrap().last_counter;
            let response: ChallengeResponse = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(response.answer.counter, on_disk);
            let answer = response
                .verify(&device_key, &ChallengeId::new("ch-1").unwrap(), &expected_nonce)
                .expect("answer verifies");
            assert_eq!((answer.decision, answer.number.as_str()), (Decision::Approve, "042"));
            (200, r#"{"outcome":"approved"}"#.to_owned())
        }),
    ])
    .await;
    let file = fixture.state_file(&dir, &base);

    commands::respond(&file, &details.challenge_id, Decision::Approve, "042").await.unwrap();

    let [get, post] = <[Recorded; 2]>::try_from(server.await.unwrap()).unwrap();
    assert_eq!((get.method.as_str(), get.target.as_str()), ("GET", "/cs/device/v1/challenges/ch-1"));
    get.verify_signed(&fixture.device_public_key());
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/cs/device/v1/challenges/ch-1/response")
    );
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(post.header(HEADER_SIGNATURE), None, "the response carries its own signature only");
    assert_eq!(file.load().unwrap().last_counter, 1);
}

#[tokio::test]
async fn counters_increase_across_answers_even_when_the_server_refuses() {
    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let details = fixture.details("ch-1");
    let counter_of = |request: &Recorded| {
        serde_json::from_slice::<ChallengeResponse>(&request.body).unwrap().answer.counter
    };
    let (base, server) = serve(vec![
        Box::new(|_| (409, r#"{"error":"challenge_not_pending","message":"already decided"}"#.to_owned())),
        Box::new(|_| (200, r#"{"outcome":"denied"}"#.to_owned())),
    ])
    .await;
    let file = fixture.state_file(&dir, &base);
    let device = fixture.device(base);

    for decision in [Decision::Deny, Decision::Report] {
        let counter = file.next_counter().unwrap();
        let _ = device.answer(&details, decision, "", counter).await;
    }

    let counters: Vec<u64> = server.await.unwrap().iter().map(counter_of).collect();
    assert_eq!(counters, [1, 2]);
}

#[tokio::test]
async fn server_errors_keep_their_code_and_exit_1() {
    let fixture = Fixture::new();
    let (base, _server) = serve(vec![Box::new(|_| {
        (410, r#"{"error":"challenge_expired","message":"too late","request_id":"r-1"}"#.to_owned())
    })])
    .await;

    let error = fixture.device(base).challenge(&ChallengeId::new("ch-1").unwrap()).await.unwrap_err();

    assert_eq!(error.report(), "challenge_expired: too late");
    assert_eq!(error.exit_code(), EXIT_SERVER_REFUSED);
    assert!(matches!(error, Error::Refused { status: 410, .. }));
}

#[tokio::test]
async fn forged_or_substituted_details_are_refused() {
    let fixture = Fixture::new();
    let forger = fixture.stranger_key();
    let forged = fixture.signed_json(&fixture.details("ch-1"), &forger).to_string();
    let other = fixture.signed_json(&fixture.details("ch-2"), &fixture.server_key).to_string();
    let (base, _server) = serve(vec![
        Box::new(move |_| (200, forged)),
        Box::new(move |_| (200, other)),
        Box::new(|_| (200, "<html>".into())),
    ])
    .await;
    let device = fixture.device(base);
    let id = ChallengeId::new("ch-1").unwrap();

    let forged = device.challenge(&id).await.unwrap_err();
    assert!(matches!(forged, Error::DetailsRejected { .. }), "{forged}");
    let substituted = device.challenge(&id).await.unwrap_err();
    assert!(substituted.to_string().contains("details are for challenge ch-2"), "{substituted}");
    let garbage = device.challenge(&id).await.unwrap_err();
    assert!(matches!(garbage, Error::InvalidAnswer { .. }), "{garbage}");
    for error in [forged, substituted, garbage] {
        assert_eq!(error.exit_code(), EXIT_SERVER_FAULT);
    }
}

#[tokio::test]
async fn push_token_and_unenroll_sign_method_path_and_body() {
    let fixture = Fixture::new();
    let (base, server) =
        serve(vec![Box::new(|_| (204, String::new())), Box::new(|_| (204, String::new()))]).await;
    let device = fixture.device(base);
    let registration = PushRegistration::Fcm { token: PushToken::new("dXk1:APA91b").unwrap() };

    device.set_push(&registration).await.unwrap();
    device.unenroll().await.unwrap();

    let [put, delete] = <[Recorded; 2]>::try_from(server.await.unwrap()).unwrap();
    assert_eq!((put.method.as_str(), put.target.as_str()), ("PUT", "/cs/device/v1/push-token"));
    assert_eq!(serde_json::from_slice::<PushRegistration>(&put.body).unwrap(), registration);
    put.verify_signed(&fixture.device_public_key());
    assert_eq!((delete.method.as_str(), delete.target.as_str()), ("DELETE", "/cs/device/v1"));
    assert!(delete.body.is_empty());
    delete.verify_signed(&fixture.device_public_key());
}

#[tokio::test]
async fn enrollment_proof_verifies_for_the_uri_server_and_the_answer_is_kept() {
    let fixture = Fixture::new();
    let account = serde_json::to_string(&fixture.account).unwrap();
    let (base, server) = serve(vec![Box::new(move |_| (201, account))]).await;
    let uri = EnrollmentUri::parse(&format!(
        "countersign://enroll?v=1&server={}&code=K7Q2-MX9P&user=alice",
        common::percent_encode(base.as_str())
    ))
    .unwrap();
    let push = PushRegistration::None;
    let info = DeviceInfo { name: "test phone".into(), platform: "linux".into() };

    let request = device::sign_enrollment(&uri, &fixture.device_key, push, info).unwrap();
    let answer = device::enroll(&request).await.unwrap();

    assert_eq!(answer, fixture.account);
    let [request] = <[Recorded; 1]>::try_from(server.await.unwrap()).unwrap();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("POST", "/cs/device/v1/enroll"));
    let enrollment: EnrollmentRequest = serde_json::from_slice(&request.body).unwrap();
    enrollment.verify(&base).expect("proof of possession verifies for this server");
    assert_eq!(enrollment.enrollment.public_key, fixture.device_public_key());
    assert_eq!(enrollment.enrollment.activation_code.as_str(), "K7Q2-MX9P");
}

#[tokio::test]
async fn unexpected_success_status_is_a_protocol_fault() {
    let fixture = Fixture::new();
    let (base, _server) = serve(vec![Box::new(|_| (200, String::new()))]).await;

    let error = fixture.device(base).unenroll().await.unwrap_err();

    assert!(matches!(error, Error::UnexpectedStatus { status: 200, expected: 204, .. }), "{error}");
    assert_eq!(error.exit_code(), EXIT_SERVER_FAULT);
}
