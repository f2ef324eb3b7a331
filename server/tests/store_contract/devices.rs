//! Devices: enrollments, enrolling (the code used once, factors bound to one user), lookups,
//! revocation, push registrations, request nonces, notices, and enrollments that consume an
//! approval.

use countersign::audit::{Action, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::ids::{DeviceId, EnrollmentId};
use countersign::store::{
    ApprovalProof, ChallengeTransition, Conflict, DeviceRecord, EnrollmentRecord, StoreError, UserRecord,
};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{Fixture, REDEEM_WINDOW, fixture, no_push, push};

/// Offers `proof` for a new second-device enrollment of `user`: the enrollment and the answer.
async fn consume(
    f: &Fixture,
    proof: ApprovalProof,
    user: &UserRecord,
) -> (EnrollmentRecord, Result<EnrollmentRecord, StoreError>) {
    let enrollment = f.enrollment_record(user, true);
    let redeemed = f.event(Action::Challenge(ChallengeState::Redeemed), Subject::Challenge(proof.challenge));
    let created = f.event(Action::EnrollmentCreated, Subject::User(user.id));
    let result =
        f.store.create_enrollment_consuming_approval(enrollment.clone(), proof, redeemed, created).await;
    (enrollment, result)
}

/// Alice's challenge from the app "portal", approved on her phone just now, as proof.
async fn approval(f: &Fixture) -> (UserRecord, ApprovalProof) {
    f.approval(&f.app("portal").await).await
}

/// `proof` was refused and its enrollment not written.
async fn assert_refused(
    f: &Fixture,
    label: &str,
    (enrollment, result): (EnrollmentRecord, Result<EnrollmentRecord, StoreError>),
) {
    assert!(matches!(result, Err(StoreError::NotFound)), "{label}: {result:?}");
    assert_eq!(f.store.enrollment_by_id(enrollment.id).await.unwrap(), None, "{label}: nothing written");
}

async fn enrollments_are_found_by_id_and_code_hash(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let before = f.audit_len().await;
    let created = f.enrollment(&alice, false).await;
    assert_eq!(f.audit_len().await, before + 1, "created with its audit event");
    let by_id = f.store.enrollment_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(by_id, created, "every field round-trips, timestamps to the microsecond");
    let by_hash = f.store.enrollment_by_code_hash(&created.code_hash).await.unwrap().unwrap();
    assert_eq!(by_hash, created);
    assert_eq!(f.store.enrollment_by_id(EnrollmentId::random()).await.unwrap(), None);
    assert_eq!(f.store.enrollment_by_code_hash(&[0u8; 32]).await.unwrap(), None);
}

/// The code is used once: the enrollment records its device and forgets the sealed code, and a
/// second use of it creates nothing.
async fn an_enrollment_is_used_once(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let enrollment = f.enrollment(&alice, false).await;
    f.advance(Duration::seconds(5)).await;
    let before = f.audit_len().await;
    let device = f.device_record(&alice, push("apns", "token-a"));
    let enrolled = f.enroll(&enrollment, device.clone()).await.unwrap();
    assert_eq!(enrolled, device);
    assert_eq!(f.audit_len().await, before + 1);
    assert_eq!(f.device_now(device.id).await, device, "stored as given, active, counter 0");

    let used = f.store.enrollment_by_id(enrollment.id).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(device.created_at));
    assert_eq!(used.device_id, Some(device.id));
    assert_eq!(used.code_sealed, None, "the sealed code is forgotten once used");

    let again = f.device_record(&alice, no_push());
    let result = f.enroll(&used, again.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    let result = f.enroll(&enrollment, again.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "a stale copy of the record: {result:?}");
    assert_eq!(f.store.device_by_id(again.id).await.unwrap(), None);
    assert_eq!(f.store.devices_for_user(alice.id).await.unwrap(), vec![device]);
    assert_eq!(f.audit_len().await, before + 1, "refusals write nothing");
}

async fn an_expired_enrollment_is_refused(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let enrollment = f.enrollment(&alice, false).await;
    f.advance(Duration::minutes(10)).await;
    let before = f.audit_len().await;
    let device = f.device_record(&alice, no_push());
    let result = f.enroll(&enrollment, device.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "at expiry: {result:?}");
    assert_eq!(f.store.device_by_id(device.id).await.unwrap(), None);
    assert_eq!(f.store.enrollment_by_id(enrollment.id).await.unwrap().unwrap(), enrollment, "unchanged");
    assert_eq!(f.audit_len().await, before);
}

/// A first-device enrollment cannot add a second device (the refusal leaves the code unused);
/// a second-device one can, and the user's other devices are told.
async fn second_devices_need_a_second_device_enrollment(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let first = f.device(&alice, no_push()).await;
    let enrollment = f.enrollment(&alice, false).await;
    let before = f.audit_len().await;
    let result = f.enroll(&enrollment, f.device_record(&alice, no_push())).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::SecondDevice))), "{result:?}");
    assert_eq!(f.store.enrollment_by_id(enrollment.id).await.unwrap().unwrap(), enrollment, "still unused");
    assert_eq!(f.audit_len().await, before);
    assert!(f.store.device_notices(first.id, f.now() - Duration::DAY).await.unwrap().is_empty());

    // Once the first device is revoked, the same enrollment adds a "first" device again.
    let event = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    f.store.revoke_device(first.id, f.now(), event).await.unwrap();
    let replacement = f.enroll(&enrollment, f.device_record(&alice, no_push())).await.unwrap();

    f.advance(Duration::seconds(1)).await;
    let second =
        f.enroll(&f.enrollment(&alice, true).await, f.device_record(&alice, no_push())).await.unwrap();
    let notices = f.store.device_notices(replacement.id, f.now() - Duration::DAY).await.unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].device_id, replacement.id);
    assert_eq!(notices[0].kind, "device_enrolled");
    assert_eq!(notices[0].created_at, second.created_at);
    let details: serde_json::Value = serde_json::from_str(&notices[0].details).unwrap();
    assert_eq!(details["device_id"], second.id.to_string());
    assert!(
        f.store.device_notices(second.id, f.now() - Duration::DAY).await.unwrap().is_empty(),
        "not itself"
    );
    assert!(
        f.store.device_notices(first.id, f.now() - Duration::DAY).await.unwrap().is_empty(),
        "not revoked"
    );
    let later = f.now() + Duration::seconds(1);
    assert!(f.store.device_notices(replacement.id, later).await.unwrap().is_empty(), "only since `since`");
}

/// A public key serves one device ever; a push token one active device. Refusals leave the
/// enrollment unused and write nothing; the owners are found by the factor.
async fn factors_are_bound_to_one_user(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let phone = f.device(&alice, push("fcm", "shared-token")).await;
    assert_eq!(f.store.public_key_owner(&phone.public_key).await.unwrap(), Some(alice.id));
    assert_eq!(f.store.push_token_owner("fcm", "shared-token").await.unwrap(), Some(alice.id));
    assert_eq!(f.store.push_token_owner("apns", "shared-token").await.unwrap(), None, "per provider");
    assert_eq!(f.store.public_key_owner(&[4u8; 65]).await.unwrap(), None);

    let enrollment = f.enrollment(&bob, false).await;
    let before = f.audit_len().await;
    let same_key = DeviceRecord { public_key: phone.public_key.clone(), ..f.device_record(&bob, no_push()) };
    let result = f.enroll(&enrollment, same_key).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::DeviceKey))), "{result:?}");
    let result = f.enroll(&enrollment, f.device_record(&bob, push("fcm", "shared-token"))).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::PushToken))), "{result:?}");
    assert_eq!(f.store.enrollment_by_id(enrollment.id).await.unwrap().unwrap(), enrollment, "still unused");
    assert!(f.store.devices_for_user(bob.id).await.unwrap().is_empty());
    assert_eq!(f.audit_len().await, before);

    // Revoked, the device frees its push token but never its key.
    let event = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    f.store.revoke_device(phone.id, f.now(), event).await.unwrap();
    assert_eq!(f.store.push_token_owner("fcm", "shared-token").await.unwrap(), None);
    assert_eq!(f.store.public_key_owner(&phone.public_key).await.unwrap(), Some(alice.id));
    let same_key = DeviceRecord { public_key: phone.public_key.clone(), ..f.device_record(&bob, no_push()) };
    let result = f.enroll(&enrollment, same_key).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::DeviceKey))), "{result:?}");
    let bobs = f.enroll(&enrollment, f.device_record(&bob, push("fcm", "shared-token"))).await.unwrap();
    assert_eq!(f.store.push_token_owner("fcm", "shared-token").await.unwrap(), Some(bob.id));
    assert_eq!(f.store.devices_for_user(bob.id).await.unwrap(), vec![bobs]);
}

/// A deleted user's enrollment adds no device.
async fn a_deleted_users_enrollment_adds_nothing(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let enrollment = f.enrollment(&alice, false).await;
    let event = f.event(Action::UserDeleted, Subject::User(alice.id));
    f.store.delete_user(alice.id, f.now(), event).await.unwrap();
    let device = f.device_record(&alice, no_push());
    let result = f.enroll(&enrollment, device.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.store.device_by_id(device.id).await.unwrap(), None);
}

/// Devices of a user, oldest first, revoked ones included; revoking happens once.
async fn devices_are_listed_and_revoked_once(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let first = f.device(&alice, no_push()).await;
    f.advance(Duration::seconds(1)).await;
    let second = f.device(&alice, push("apns", "alice-2")).await;
    let bobs = f.device(&bob, no_push()).await;
    assert_eq!(f.store.devices_for_user(alice.id).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(f.store.devices_for_user(bob.id).await.unwrap(), vec![bobs]);

    f.advance(Duration::seconds(1)).await;
    let before = f.audit_len().await;
    let event = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    let revoked = f.store.revoke_device(first.id, f.now(), event.clone()).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(f.now()));
    assert!(!revoked.is_active());
    assert_eq!(f.device_now(first.id).await, revoked);
    let result = f.store.revoke_device(first.id, f.now(), event.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "a second revocation: {result:?}");
    let result = f.store.revoke_device(DeviceId::random(), f.now(), event).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "an unknown device: {result:?}");
    assert_eq!(f.audit_len().await, before + 1, "one event, for the one revocation");
    assert_eq!(f.store.devices_for_user(alice.id).await.unwrap(), vec![revoked, second]);
    assert_eq!(f.store.device_by_id(DeviceId::random()).await.unwrap(), None);
}

/// An active device's push registration is replaced; a token bound to another active device is
/// refused; a revoked device has none to change.
async fn push_registrations_change_while_active(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let phone = f.device(&alice, push("apns", "old-token")).await;
    let bobs = f.device(&bob, push("apns", "bobs-token")).await;
    let before = f.audit_len().await;
    let event = || f.event(Action::PushTokenUpdated, Subject::User(alice.id));

    f.store.update_push(phone.id, push("fcm", "new-token"), event()).await.unwrap();
    assert_eq!(f.device_now(phone.id).await.push, push("fcm", "new-token"));
    assert_eq!(f.store.push_token_owner("fcm", "new-token").await.unwrap(), Some(alice.id));
    assert_eq!(f.store.push_token_owner("apns", "old-token").await.unwrap(), None, "the old token is free");
    assert_eq!(f.audit_len().await, before + 1);

    let result = f.store.update_push(phone.id, push("apns", "bobs-token"), event()).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::PushToken))), "{result:?}");
    assert_eq!(f.device_now(phone.id).await.push, push("fcm", "new-token"), "unchanged");
    assert_eq!(f.device_now(bobs.id).await.push, push("apns", "bobs-token"));

    f.store.update_push(phone.id, no_push(), event()).await.unwrap();
    assert_eq!(f.device_now(phone.id).await.push, no_push());
    let revoke = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    f.store.revoke_device(phone.id, f.now(), revoke).await.unwrap();
    let result = f.store.update_push(phone.id, push("fcm", "late-token"), event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.device_now(phone.id).await.push, no_push());
    let result = f.store.update_push(DeviceId::random(), push("fcm", "x"), event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.audit_len().await, before + 3, "two updates and the revocation");
}

/// A request nonce is accepted once per device until purged after its window.
async fn request_nonces_are_single_use(engine: Engine) {
    let f = fixture(engine).await;
    let alice = f.user("alice").await;
    let (phone, tablet) = (f.device(&alice, no_push()).await, f.device(&alice, no_push()).await);
    let window_end = f.now() + Duration::minutes(5);
    assert!(f.store.remember_request_nonce(phone.id, b"nonce-1", window_end, f.now()).await.unwrap());
    assert!(
        !f.store.remember_request_nonce(phone.id, b"nonce-1", window_end, f.now()).await.unwrap(),
        "replay"
    );
    assert!(
        f.store.remember_request_nonce(tablet.id, b"nonce-1", window_end, f.now()).await.unwrap(),
        "per device"
    );
    let short_end = f.now() + Duration::minutes(1);
    assert!(f.store.remember_request_nonce(phone.id, b"nonce-2", short_end, f.now()).await.unwrap());

    assert_eq!(f.store.purge_expired_nonces(short_end).await.unwrap(), 0, "none has passed its window");
    assert_eq!(f.store.purge_expired_nonces(short_end + Duration::SECOND).await.unwrap(), 1);
    assert!(
        !f.store.remember_request_nonce(phone.id, b"nonce-1", window_end, f.now()).await.unwrap(),
        "kept"
    );
    assert_eq!(f.store.purge_expired_nonces(window_end + Duration::SECOND).await.unwrap(), 2);
    let later = window_end + Duration::minutes(5);
    assert!(f.store.remember_request_nonce(phone.id, b"nonce-1", later, f.now()).await.unwrap(), "purged");
}

/// An approval proves one enrollment: the challenge becomes `redeemed` with the enrollment in
/// one transaction, and nothing is written for an approval that does not qualify.
async fn an_approval_is_consumed_by_one_enrollment(engine: Engine) {
    let f = fixture(engine).await;
    let (app, other_app) = (f.app("portal").await, f.app("other").await);
    let (alice, phone, challenge, proof) = f.approval_request(&app).await;
    let bob = f.user("bob").await;
    let before = f.audit_len().await;
    assert_refused(&f, "still pending", consume(&f, proof, &alice).await).await;
    f.decide(&challenge, &phone, ChallengeState::Approved).await.unwrap();
    assert_refused(
        &f,
        "another app's",
        consume(&f, ApprovalProof { app_id: other_app.id, ..proof }, &alice).await,
    )
    .await;
    assert_refused(&f, "another user's", consume(&f, ApprovalProof { user: bob.id, ..proof }, &bob).await)
        .await;
    assert_eq!(f.audit_len().await, before + 1, "only the approval");

    f.advance(Duration::minutes(1)).await;
    let (enrollment, result) = consume(&f, proof, &alice).await;
    assert_eq!(result.unwrap(), enrollment);
    assert_eq!(f.store.enrollment_by_id(enrollment.id).await.unwrap(), Some(enrollment));
    let redeemed = f.challenge_now(challenge.id).await;
    assert_eq!(redeemed.state, ChallengeState::Redeemed);
    assert_eq!(redeemed.redeemed_at, Some(f.now()));
    let actions: Vec<String> =
        f.audit_since(before + 1).await.into_iter().map(|(action, ..)| action).collect();
    assert_eq!(actions, ["challenge.redeemed", "enrollment.created"]);
    assert_refused(&f, "already consumed", consume(&f, proof, &alice).await).await;
    let result =
        f.transition(&challenge, ChallengeTransition::Redeem { app_id: app.id, window: REDEEM_WINDOW }).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "nor redeemed for a sign-in: {result:?}");
    assert_eq!(f.audit_len().await, before + 3);
}

/// An approval older than the window proves nothing.
async fn a_stale_approval_is_not_consumed(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, proof) = approval(&f).await;
    f.advance(REDEEM_WINDOW).await;
    let before = f.audit_len().await;
    assert_refused(&f, "stale", consume(&f, proof, &alice).await).await;
    assert_eq!(f.challenge_now(proof.challenge).await.state, ChallengeState::Approved);
    assert_eq!(f.audit_len().await, before);
}

/// Eight enrollments racing for one approval on two instances: exactly one wins.
async fn concurrent_enrollments_consume_an_approval_once(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, proof) = approval(&f).await;
    let before = f.audit_len().await;
    let results = f
        .race(8, |_, store| {
            let enrollment = f.enrollment_record(&alice, true);
            let redeemed = f.event(Action::Challenge(ChallengeState::Redeemed), Subject::Challenge(proof.challenge));
            let created = f.event(Action::EnrollmentCreated, Subject::User(alice.id));
            async move { store.create_enrollment_consuming_approval(enrollment, proof, redeemed, created).await }
        })
        .await;
    let mut won = 0;
    for result in results {
        match result {
            Ok(_) => won += 1,
            Err(StoreError::NotFound) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(f.audit_len().await, before + 2, "one redemption, one enrollment");
}

on_both_engines!(
    enrollments_are_found_by_id_and_code_hash,
    an_enrollment_is_used_once,
    an_expired_enrollment_is_refused,
    second_devices_need_a_second_device_enrollment,
    factors_are_bound_to_one_user,
    a_deleted_users_enrollment_adds_nothing,
    devices_are_listed_and_revoked_once,
    push_registrations_change_while_active,
    request_nonces_are_single_use,
    an_approval_is_consumed_by_one_enrollment,
    a_stale_approval_is_not_consumed,
    concurrent_enrollments_consume_an_approval_once,
);
