//! Passkeys: user handles, registration ceremonies (used once, before they expire, under the
//! first-factor and second-device rules), credential ids bound to one user forever, enrollment
//! links, rename and revoke, and passkey sign-ins (assertions applied by compare-and-set, failed
//! assertions counted, denial).

use countersign::audit::{Action, Subject};
use countersign::challenges::model::ChallengeState;
use countersign::ids::{ChallengeId, PasskeyId, RegistrationId};
use countersign::store::{
    AppRecord, ApprovalProof, ChallengeRecord, ChallengeTransition, Conflict, EnrollmentLink,
    PasskeyAssertion, PasskeyRecord, Precondition, RegistrationCeremony, RegistrationProof, SignInPage,
    StoreError, UserRecord,
};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{CHALLENGE_TTL, Fixture, REDEEM_WINDOW, fixture, no_push};

/// How long the ceremonies the builders begin stay open.
const CEREMONY_TTL: Duration = Duration::minutes(5);

/// A passkey of `user` with a fresh credential id, created now (not stored).
fn passkey_record(f: &Fixture, user: &UserRecord) -> PasskeyRecord {
    PasskeyRecord {
        id: PasskeyId::random(),
        user_id: user.id,
        credential_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
        name: "YubiKey".into(),
        static_state: vec![1u8; 77],
        dynamic_state: vec![2u8; 7],
        transports: 5,
        aaguid: vec![3u8; 16],
        backup_eligible: true,
        backed_up: false,
        sign_count: 0,
        created_at: f.now(),
        last_used_at: None,
        revoked_at: None,
    }
}

/// A ceremony of `app` for `user`, begun now and open for [`CEREMONY_TTL`] (not stored).
fn ceremony_record(
    f: &Fixture,
    app: &AppRecord,
    user: &UserRecord,
    is_first_factor: bool,
) -> RegistrationCeremony {
    RegistrationCeremony {
        id: RegistrationId::random(),
        user_id: user.id,
        app_id: Some(app.id),
        name: "Laptop".into(),
        is_first_factor,
        server_state: vec![9u8; 64],
        created_at: f.now(),
        expires_at: f.now() + CEREMONY_TTL,
    }
}

/// The enrollment link carrying `ceremony` (not stored).
fn link_record(ceremony: &RegistrationCeremony, user: &UserRecord, app: &AppRecord) -> EnrollmentLink {
    EnrollmentLink {
        code_hash: uuid::Uuid::new_v4().as_bytes().repeat(2),
        registration_id: ceremony.id,
        user_id: user.id,
        username: user.username.clone(),
        app_id: Some(app.id),
        app_name: Some(app.name.clone()),
        options: r#"{"challenge":"abc"}"#.into(),
        created_at: ceremony.created_at,
        expires_at: ceremony.expires_at,
    }
}

async fn begin(
    f: &Fixture,
    ceremony: &RegistrationCeremony,
    proof: RegistrationProof,
    link: Option<&EnrollmentLink>,
) -> Result<(), StoreError> {
    let event = f.event(Action::PasskeyRegistrationStarted, Subject::User(ceremony.user_id));
    f.store.begin_registration(ceremony.clone(), proof, link, event).await
}

/// A first-factor ceremony of `app` for `user`, stored.
async fn first_factor_ceremony(f: &Fixture, app: &AppRecord, user: &UserRecord) -> RegistrationCeremony {
    let ceremony = ceremony_record(f, app, user, true);
    begin(f, &ceremony, RegistrationProof::FirstFactor, None).await.unwrap();
    ceremony
}

/// An operator's (recovery) ceremony for `user`, stored: it completes whatever factors they have.
async fn operator_ceremony(f: &Fixture, app: &AppRecord, user: &UserRecord) -> RegistrationCeremony {
    let ceremony = RegistrationCeremony { app_id: None, ..ceremony_record(f, app, user, false) };
    begin(f, &ceremony, RegistrationProof::Operator, None).await.unwrap();
    ceremony
}

async fn complete(
    f: &Fixture,
    ceremony: &RegistrationCeremony,
    passkey: PasskeyRecord,
) -> Result<PasskeyRecord, StoreError> {
    let notice = serde_json::json!({ "passkey_id": passkey.id, "name": passkey.name }).to_string();
    let event = f.event(Action::PasskeyRegistered, Subject::User(passkey.user_id));
    f.store.complete_registration(ceremony, passkey, ("passkey_added", notice), event).await
}

/// A passkey of `user`, registered through an operator's ceremony.
async fn passkey(f: &Fixture, app: &AppRecord, user: &UserRecord) -> PasskeyRecord {
    let ceremony = operator_ceremony(f, app, user).await;
    complete(f, &ceremony, passkey_record(f, user)).await.unwrap()
}

/// `proof` offered for a new ceremony of `user`: the ceremony, its link and the answer.
async fn begin_with_approval(
    f: &Fixture,
    app: &AppRecord,
    user: &UserRecord,
    proof: ApprovalProof,
) -> (RegistrationCeremony, EnrollmentLink, Result<(), StoreError>) {
    let ceremony = ceremony_record(f, app, user, false);
    let link = link_record(&ceremony, user, app);
    let redeemed = f.event(Action::Challenge(ChallengeState::Redeemed), Subject::Challenge(proof.challenge));
    let approval = RegistrationProof::Approval { proof, redeemed: Box::new(redeemed) };
    let result = begin(f, &ceremony, approval, Some(&link)).await;
    (ceremony, link, result)
}

/// The approval was refused and neither the ceremony nor its link was written.
async fn assert_refused(
    f: &Fixture,
    label: &str,
    (ceremony, link, result): (RegistrationCeremony, EnrollmentLink, Result<(), StoreError>),
) {
    assert!(matches!(result, Err(StoreError::NotFound)), "{label}: {result:?}");
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), None, "{label}: no ceremony");
    assert_eq!(f.store.enrollment_link(&link.code_hash).await.unwrap(), None, "{label}: no link");
}

/// A passkey sign-in of `app` for `user`: a challenge without a number, open for
/// [`CHALLENGE_TTL`], and its page.
async fn sign_in(f: &Fixture, app: &AppRecord, user: &UserRecord) -> (ChallengeRecord, SignInPage) {
    let record = ChallengeRecord {
        number_tag: Vec::new(),
        number_sealed: Vec::new(),
        number_digits: 0,
        request_hash: None,
        is_silent: true,
        ..f.challenge_record(app, user)
    };
    let page = SignInPage {
        token_hash: uuid::Uuid::new_v4().as_bytes().repeat(2),
        options: r#"{"challenge":"xyz"}"#.into(),
        app_name: app.name.clone(),
    };
    let event = f.event(Action::Challenge(ChallengeState::Pending), Subject::User(user.id));
    let created =
        f.store.create_passkey_challenge(record.clone(), b"auth-state", &page, event).await.unwrap();
    assert_eq!(created, record);
    (created, page)
}

/// `passkey` answers `challenge`, its counter moving from `previous` to `previous + 1`.
fn assertion(challenge: &ChallengeRecord, passkey: &PasskeyRecord, previous: i64) -> PasskeyAssertion {
    PasskeyAssertion {
        challenge: challenge.id,
        user: challenge.user_id,
        passkey: passkey.id,
        previous_sign_count: previous,
        sign_count: previous + 1,
        dynamic_state: (previous + 1).to_be_bytes().to_vec(),
        backed_up: true,
    }
}

async fn approve(f: &Fixture, a: &PasskeyAssertion) -> Result<ChallengeRecord, StoreError> {
    let event = f.event(Action::Challenge(ChallengeState::Approved), Subject::User(a.user));
    f.store.approve_with_passkey(a, f.now(), event).await
}

async fn passkey_now(f: &Fixture, passkey: &PasskeyRecord) -> PasskeyRecord {
    f.store.passkey_by_credential_id(&passkey.credential_id).await.unwrap().unwrap()
}

/// The user's handle is the first candidate stored, whatever is offered later or concurrently;
/// reading it writes nothing.
async fn a_user_handle_is_stored_once_and_read_without_writing(engine: Engine) {
    let f = fixture(engine).await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    assert_eq!(f.store.user_handle(alice.id).await.unwrap(), None);
    assert_eq!(f.store.user_handle(alice.id).await.unwrap(), None, "reading stored nothing");
    assert_eq!(f.store.ensure_user_handle(alice.id, b"handle-a").await.unwrap(), b"handle-a");
    assert_eq!(f.store.ensure_user_handle(alice.id, b"handle-b").await.unwrap(), b"handle-a", "kept");
    assert_eq!(f.store.user_handle(alice.id).await.unwrap(), Some(b"handle-a".to_vec()));
    assert_eq!(f.store.user_handle(bob.id).await.unwrap(), None, "per user");

    let handles = f
        .race(8, |i, store| {
            let bob = bob.id;
            async move { store.ensure_user_handle(bob, format!("bob-{i}").as_bytes()).await.unwrap() }
        })
        .await;
    let stored = f.store.user_handle(bob.id).await.unwrap().unwrap();
    assert!(handles.iter().all(|h| *h == stored), "concurrent first registrations agree: {handles:?}");
}

/// A ceremony and its link are stored with their audit event, every field round-tripping;
/// the link is found only by its code's hash.
async fn a_ceremony_and_its_link_are_stored_together(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let ceremony = ceremony_record(&f, &app, &alice, true);
    let link = link_record(&ceremony, &alice, &app);
    let before = f.audit_len().await;
    begin(&f, &ceremony, RegistrationProof::FirstFactor, Some(&link)).await.unwrap();
    assert_eq!(f.audit_len().await, before + 1);
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), Some(ceremony.clone()));
    assert_eq!(f.store.enrollment_link(&link.code_hash).await.unwrap(), Some(link.clone()));
    assert_eq!(f.store.enrollment_link(&link.code_hash[..16]).await.unwrap(), None, "the whole hash");
    assert_eq!(f.store.enrollment_link(ceremony.id.0.as_bytes()).await.unwrap(), None);
    assert_eq!(f.store.registration(RegistrationId::random()).await.unwrap(), None);

    let operator = operator_ceremony(&f, &app, &alice).await;
    assert_eq!(f.store.registration(operator.id).await.unwrap().unwrap().app_id, None, "the operator's");
}

/// A ceremony is used once: the passkey is stored as given, the user's devices are told, and a
/// second completion (or a stale copy of the ceremony) stores nothing. Its link outlives it, so
/// a used link is told apart from an unknown one.
async fn a_registration_ceremony_completes_once(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let phone = f.device(&alice, no_push()).await;
    let ceremony = RegistrationCeremony { app_id: None, ..ceremony_record(&f, &app, &alice, false) };
    let link = EnrollmentLink { app_id: None, app_name: None, ..link_record(&ceremony, &alice, &app) };
    begin(&f, &ceremony, RegistrationProof::Operator, Some(&link)).await.unwrap();
    f.advance(Duration::seconds(30)).await;
    let before = f.audit_len().await;
    let passkey = passkey_record(&f, &alice);
    assert_eq!(complete(&f, &ceremony, passkey.clone()).await.unwrap(), passkey);
    assert_eq!(f.audit_len().await, before + 1);
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap(), vec![passkey.clone()], "as given");
    assert_eq!(passkey_now(&f, &passkey).await, passkey);
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), None, "used");
    assert_eq!(f.store.enrollment_link(&link.code_hash).await.unwrap(), Some(link), "the link outlives it");
    let notices = f.store.device_notices(phone.id, f.now() - Duration::DAY).await.unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!((notices[0].kind.as_str(), notices[0].created_at), ("passkey_added", passkey.created_at));

    let again = passkey_record(&f, &alice);
    let result = complete(&f, &ceremony, again.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.store.passkey_by_credential_id(&again.credential_id).await.unwrap(), None);
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap(), vec![passkey]);
    assert_eq!(f.audit_len().await, before + 1, "the refusal writes nothing");
}

/// A ceremony completes only before it expires; the expired one stays until purged.
async fn an_expired_ceremony_cannot_complete(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let ceremony = first_factor_ceremony(&f, &app, &alice).await;
    f.advance(CEREMONY_TTL).await;
    let before = f.audit_len().await;
    let passkey = passkey_record(&f, &alice);
    let result = complete(&f, &ceremony, passkey.clone()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "at expiry: {result:?}");
    assert!(f.store.passkeys_for_user(alice.id).await.unwrap().is_empty());
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), Some(ceremony), "unchanged");
    assert_eq!(f.audit_len().await, before);
}

/// Eight completions of one ceremony racing on two instances: exactly one passkey.
async fn concurrent_completions_use_a_ceremony_once(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let ceremony = operator_ceremony(&f, &app, &alice).await;
    let before = f.audit_len().await;
    let results = f
        .race(8, |_, store| {
            let (ceremony, passkey) = (ceremony.clone(), passkey_record(&f, &alice));
            let event = f.event(Action::PasskeyRegistered, Subject::User(alice.id));
            async move {
                store.complete_registration(&ceremony, passkey, ("passkey_added", "{}".into()), event).await
            }
        })
        .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::NotFound))), "{results:?}");
    assert_eq!(won, 1);
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap().len(), 1);
    assert_eq!(f.audit_len().await, before + 1);
}

/// An approval proves one registration: the challenge becomes `redeemed` with the ceremony in
/// one transaction; an approval that does not qualify writes nothing (no ceremony, no link, no
/// audit event) and stays unused.
async fn an_approval_begins_one_registration(engine: Engine) {
    let f = fixture(engine).await;
    let (app, other_app) = (f.app("portal").await, f.app("other").await);
    let (alice, phone, challenge, proof) = f.approval_request(&app).await;
    let bob = f.user("bob").await;
    let before = f.audit_len().await;
    assert_refused(&f, "still pending", begin_with_approval(&f, &app, &alice, proof).await).await;
    f.decide(&challenge, &phone, ChallengeState::Approved).await.unwrap();
    let wrong_app = ApprovalProof { app_id: other_app.id, ..proof };
    assert_refused(&f, "another app's", begin_with_approval(&f, &other_app, &alice, wrong_app).await).await;
    let wrong_user = ApprovalProof { user: bob.id, ..proof };
    assert_refused(&f, "another user's", begin_with_approval(&f, &app, &bob, wrong_user).await).await;
    assert_eq!(f.audit_len().await, before + 1, "only the approval");
    assert_eq!(f.challenge_now(challenge.id).await.state, ChallengeState::Approved, "still unused");

    f.advance(Duration::minutes(1)).await;
    let (ceremony, link, result) = begin_with_approval(&f, &app, &alice, proof).await;
    result.unwrap();
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), Some(ceremony));
    assert_eq!(f.store.enrollment_link(&link.code_hash).await.unwrap(), Some(link));
    let redeemed = f.challenge_now(challenge.id).await;
    assert_eq!((redeemed.state, redeemed.redeemed_at), (ChallengeState::Redeemed, Some(f.now())));
    let actions: Vec<String> =
        f.audit_since(before + 1).await.into_iter().map(|(action, ..)| action).collect();
    assert_eq!(actions, ["challenge.redeemed", "passkey.registration_started"]);

    assert_refused(&f, "already consumed", begin_with_approval(&f, &app, &alice, proof).await).await;
    let result =
        f.transition(&challenge, ChallengeTransition::Redeem { app_id: app.id, window: REDEEM_WINDOW }).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "nor redeemed for a sign-in: {result:?}");
    assert_eq!(f.audit_len().await, before + 3);
}

/// An approval older than the window begins nothing.
async fn a_stale_approval_begins_no_registration(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, proof) = f.approval(&app).await;
    f.advance(REDEEM_WINDOW).await;
    let before = f.audit_len().await;
    assert_refused(&f, "stale", begin_with_approval(&f, &app, &alice, proof).await).await;
    assert_eq!(f.challenge_now(proof.challenge).await.state, ChallengeState::Approved);
    assert_eq!(f.audit_len().await, before);
}

/// Eight registrations racing for one approval on two instances: exactly one begins.
async fn concurrent_registrations_consume_an_approval_once(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, proof) = f.approval(&app).await;
    let before = f.audit_len().await;
    let results = f
        .race(8, |_, store| {
            let ceremony = ceremony_record(&f, &app, &alice, false);
            let redeemed =
                f.event(Action::Challenge(ChallengeState::Redeemed), Subject::Challenge(proof.challenge));
            let approval = RegistrationProof::Approval { proof, redeemed: Box::new(redeemed) };
            let event = f.event(Action::PasskeyRegistrationStarted, Subject::User(alice.id));
            async move { store.begin_registration(ceremony, approval, None, event).await }
        })
        .await;
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(StoreError::NotFound))), "{results:?}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(f.audit_len().await, before + 2, "one redemption, one ceremony");
}

/// A first-factor ceremony is refused at completion once the user has a device, and stays
/// unused (the refusal writes nothing); with the device revoked it completes.
async fn a_first_factor_ceremony_is_refused_once_a_device_appeared(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let ceremony = first_factor_ceremony(&f, &app, &alice).await;
    let phone = f.device(&alice, no_push()).await;
    let before = f.audit_len().await;
    let result = complete(&f, &ceremony, passkey_record(&f, &alice)).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::SecondDevice))), "{result:?}");
    assert!(f.store.passkeys_for_user(alice.id).await.unwrap().is_empty());
    assert_eq!(f.store.registration(ceremony.id).await.unwrap(), Some(ceremony.clone()), "still unused");
    assert!(f.store.device_notices(phone.id, f.now() - Duration::DAY).await.unwrap().is_empty());
    assert_eq!(f.audit_len().await, before);

    let event = f.event(Action::DeviceRevoked, Subject::User(alice.id));
    f.store.revoke_device(phone.id, f.now(), event).await.unwrap();
    complete(&f, &ceremony, passkey_record(&f, &alice)).await.unwrap();
}

/// A first-factor ceremony is refused at completion once the user has a passkey (another
/// ceremony finished first); an operator's ceremony still adds one.
async fn a_first_factor_ceremony_is_refused_once_a_passkey_appeared(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let (first, second) =
        (first_factor_ceremony(&f, &app, &alice).await, first_factor_ceremony(&f, &app, &alice).await);
    let winner = complete(&f, &first, passkey_record(&f, &alice)).await.unwrap();
    let before = f.audit_len().await;
    let result = complete(&f, &second, passkey_record(&f, &alice)).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::SecondDevice))), "{result:?}");
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap(), vec![winner]);
    assert_eq!(f.store.registration(second.id).await.unwrap(), Some(second), "still unused");
    assert_eq!(f.audit_len().await, before);

    passkey(&f, &app, &alice).await;
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap().len(), 2);
}

/// Eight first-factor ceremonies of one user completing at once on two instances: one factor.
async fn concurrent_first_factor_ceremonies_add_one_factor(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let mut ceremonies = Vec::new();
    for _ in 0..8 {
        ceremonies.push(first_factor_ceremony(&f, &app, &alice).await);
    }
    let results = f
        .race(8, |i, store| {
            let (ceremony, passkey) = (ceremonies[i].clone(), passkey_record(&f, &alice));
            let event = f.event(Action::PasskeyRegistered, Subject::User(alice.id));
            async move {
                store.complete_registration(&ceremony, passkey, ("passkey_added", "{}".into()), event).await
            }
        })
        .await;
    let refused = |r: &Result<PasskeyRecord, StoreError>| {
        matches!(r, Err(StoreError::Conflict(Conflict::SecondDevice)))
    };
    assert!(results.iter().all(|r| r.is_ok() || refused(r)), "{results:?}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap().len(), 1);
}

/// A credential id serves one passkey ever: a second registration of it, for the same user or
/// another, even after the first was revoked, is refused and writes nothing (the ceremony stays
/// unused); its holder is found by it.
async fn a_credential_id_is_bound_to_one_user_forever(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let held = passkey(&f, &app, &alice).await;
    assert_eq!(passkey_now(&f, &held).await, held);
    assert_eq!(f.store.passkey_by_credential_id(b"unknown").await.unwrap(), None);

    let copy = |user: &UserRecord| PasskeyRecord {
        credential_id: held.credential_id.clone(),
        ..passkey_record(&f, user)
    };
    for revoked in [false, true] {
        if revoked {
            let event = f.event(Action::PasskeyRevoked, Subject::User(alice.id));
            f.store.revoke_passkey(alice.id, held.id, f.now(), event).await.unwrap();
        }
        for user in [&alice, &bob] {
            let ceremony = operator_ceremony(&f, &app, user).await;
            let before = f.audit_len().await;
            let result = complete(&f, &ceremony, copy(user)).await;
            let label = format!("{} (revoked: {revoked})", user.username);
            assert!(
                matches!(result, Err(StoreError::Conflict(Conflict::PasskeyCredential))),
                "{label}: {result:?}"
            );
            assert_eq!(f.store.registration(ceremony.id).await.unwrap(), Some(ceremony), "{label}: unused");
            assert_eq!(f.audit_len().await, before, "{label}: nothing written");
        }
    }
    assert!(f.store.passkeys_for_user(bob.id).await.unwrap().is_empty());
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap().len(), 1);
    assert_eq!(passkey_now(&f, &held).await.user_id, alice.id, "still Alice's, revoked");
}

/// Ceremonies and links are purged once expired (at their expiry, not before); a used link is
/// purged too.
async fn expired_ceremonies_and_links_are_purged(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let short = first_factor_ceremony(&f, &app, &alice).await;
    let long = RegistrationCeremony {
        expires_at: f.now() + Duration::minutes(10),
        ..ceremony_record(&f, &app, &alice, false)
    };
    let long_link = link_record(&long, &alice, &app);
    begin(&f, &long, RegistrationProof::Operator, Some(&long_link)).await.unwrap();
    let used = RegistrationCeremony { app_id: None, ..ceremony_record(&f, &app, &alice, false) };
    let used_link = link_record(&used, &alice, &app);
    begin(&f, &used, RegistrationProof::Operator, Some(&used_link)).await.unwrap();
    complete(&f, &used, passkey_record(&f, &alice)).await.unwrap();

    assert_eq!(f.store.purge_expired_registrations(f.now()).await.unwrap(), 0);
    let expiry = short.expires_at;
    assert_eq!(f.store.purge_expired_registrations(expiry - Duration::SECOND).await.unwrap(), 0);
    assert_eq!(f.store.purge_expired_registrations(expiry).await.unwrap(), 2, "a ceremony and a used link");
    assert_eq!(f.store.registration(short.id).await.unwrap(), None);
    assert_eq!(f.store.enrollment_link(&used_link.code_hash).await.unwrap(), None);
    assert_eq!(f.store.enrollment_link(&long_link.code_hash).await.unwrap(), Some(long_link.clone()));
    assert_eq!(f.store.registration(long.id).await.unwrap(), Some(long.clone()));
    assert_eq!(f.store.purge_expired_registrations(long.expires_at).await.unwrap(), 2);
    assert_eq!(f.store.registration(long.id).await.unwrap(), None);
    assert_eq!(f.store.enrollment_link(&long_link.code_hash).await.unwrap(), None);
}

/// A user's passkeys are listed oldest first, revoked ones included; only their own user renames
/// or revokes an active one, and a revocation happens once.
async fn passkeys_are_renamed_and_revoked_only_by_their_user(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let first = passkey(&f, &app, &alice).await;
    f.advance(Duration::seconds(1)).await;
    let second = passkey(&f, &app, &alice).await;
    let before = f.audit_len().await;
    let renamed_event = || f.event(Action::PasskeyRenamed, Subject::User(alice.id));
    let revoked_event = || f.event(Action::PasskeyRevoked, Subject::User(alice.id));

    let result = f.store.rename_passkey(bob.id, first.id, "Bob's now", renamed_event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "another user's: {result:?}");
    let result = f.store.revoke_passkey(bob.id, first.id, f.now(), revoked_event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "another user's: {result:?}");
    let result = f.store.rename_passkey(alice.id, PasskeyId::random(), "x", renamed_event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "unknown: {result:?}");
    assert_eq!(f.audit_len().await, before, "refusals write nothing");
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap(), vec![first.clone(), second.clone()]);

    let renamed = f.store.rename_passkey(alice.id, first.id, "Work key", renamed_event()).await.unwrap();
    assert_eq!(renamed, PasskeyRecord { name: "Work key".into(), ..first.clone() });
    let revoked = f.store.revoke_passkey(alice.id, first.id, f.now(), revoked_event()).await.unwrap();
    assert_eq!(revoked, PasskeyRecord { revoked_at: Some(f.now()), ..renamed });
    assert!(!revoked.is_active());
    assert_eq!(f.audit_len().await, before + 2);

    let result = f.store.revoke_passkey(alice.id, first.id, f.now(), revoked_event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "a second revocation: {result:?}");
    let result = f.store.rename_passkey(alice.id, first.id, "Again", renamed_event()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "a revoked one: {result:?}");
    assert_eq!(f.audit_len().await, before + 2);
    assert_eq!(f.store.passkeys_for_user(alice.id).await.unwrap(), vec![revoked, second]);
    assert!(f.store.passkeys_for_user(bob.id).await.unwrap().is_empty());
}

/// A passkey sign-in is a challenge without a number, stored with its request state and page;
/// it is found by challenge and by page token, and leaves the user's push challenge alone.
async fn passkey_sign_ins_are_found_by_challenge_and_page_token(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let push_challenge = f.challenge(&app, &alice).await;
    let before = f.audit_len().await;
    let (challenge, page) = sign_in(&f, &app, &alice).await;
    assert_eq!(f.audit_len().await, before + 1);
    assert_eq!(f.challenge_now(challenge.id).await, challenge);
    let stored = f.store.passkey_sign_in(challenge.id).await.unwrap().unwrap();
    assert_eq!(stored.challenge_id, challenge.id);
    assert_eq!(stored.server_state, b"auth-state");
    assert_eq!(stored.failed_assertions, 0);
    assert_eq!(stored.page.as_ref(), Some(&page));
    assert_eq!(f.store.passkey_sign_in_by_page_token(&page.token_hash).await.unwrap(), Some(stored));
    assert_eq!(f.store.passkey_sign_in_by_page_token(&[0u8; 32]).await.unwrap(), None);
    assert_eq!(f.store.passkey_sign_in(push_challenge.id).await.unwrap(), None, "a push challenge");
    assert_eq!(f.store.passkey_sign_in(ChallengeId::random()).await.unwrap(), None);
    assert_eq!(f.challenge_now(push_challenge.id).await, push_challenge, "not superseded");
}

/// Refused assertions are counted per sign-in (its own budget), each with its audit event.
async fn failed_assertions_are_counted_per_sign_in(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let ((one, _), (other, _)) = (sign_in(&f, &app, &alice).await, sign_in(&f, &app, &alice).await);
    let before = f.audit_len().await;
    let refused = |id| f.event(Action::PasskeyAssertionRefused, Subject::Challenge(id));
    for expected in 1..=3 {
        assert_eq!(f.store.count_failed_assertion(one.id, refused(one.id)).await.unwrap(), expected);
    }
    assert_eq!(f.store.count_failed_assertion(other.id, refused(other.id)).await.unwrap(), 1, "per sign-in");
    assert_eq!(f.store.passkey_sign_in(one.id).await.unwrap().unwrap().failed_assertions, 3);
    assert_eq!(f.audit_len().await, before + 4);
    let unknown = ChallengeId::random();
    let result = f.store.count_failed_assertion(unknown, refused(unknown)).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.audit_len().await, before + 4, "nothing audited for an unknown sign-in");
    assert_eq!(f.challenge_now(one.id).await.state, ChallengeState::Pending, "counting decides nothing");
}

/// An assertion approves a pending sign-in once: the challenge and the passkey's new state
/// (counter, flags, last use) change together.
async fn an_assertion_approves_a_pending_sign_in_once(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    f.advance(Duration::seconds(3)).await;
    let before = f.audit_len().await;
    let a = assertion(&challenge, &key, 0);
    let approved = approve(&f, &a).await.unwrap();
    assert_eq!((approved.state, approved.decided_at), (ChallengeState::Approved, Some(f.now())));
    assert_eq!(f.challenge_now(challenge.id).await, approved);
    let used = PasskeyRecord {
        sign_count: 1,
        dynamic_state: a.dynamic_state.clone(),
        backed_up: true,
        last_used_at: Some(f.now()),
        ..key
    };
    assert_eq!(passkey_now(&f, &used).await, used);
    assert_eq!(f.audit_len().await, before + 1);

    let result = approve(&f, &assertion(&challenge, &used, 1)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "{result:?}"
    );
    assert_eq!(passkey_now(&f, &used).await, used, "the counter did not move");
    assert_eq!(f.audit_len().await, before + 1);
}

/// The passkey's counter must still be the one the assertion was verified against: a stale
/// previous count approves nothing and changes nothing.
async fn a_stale_previous_sign_count_approves_nothing(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let ((first, _), (second, _)) = (sign_in(&f, &app, &alice).await, sign_in(&f, &app, &alice).await);
    approve(&f, &assertion(&first, &key, 0)).await.unwrap();
    let used = passkey_now(&f, &key).await;
    let before = f.audit_len().await;
    let result = approve(&f, &assertion(&second, &key, 0)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::CounterNotIncreasing))),
        "{result:?}"
    );
    assert_eq!(f.challenge_now(second.id).await, second, "still pending");
    assert_eq!(passkey_now(&f, &key).await, used, "unchanged");
    assert_eq!(f.audit_len().await, before);
}

/// An expired sign-in cannot be approved, even while still marked pending.
async fn an_expired_sign_in_cannot_be_approved(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    f.advance(CHALLENGE_TTL).await;
    let before = f.audit_len().await;
    let result = approve(&f, &assertion(&challenge, &key, 0)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "{result:?}"
    );
    assert_eq!(f.challenge_now(challenge.id).await, challenge);
    assert_eq!(passkey_now(&f, &key).await, key);
    assert_eq!(f.audit_len().await, before);
}

/// A revoked passkey, or another user's, approves nothing: the sign-in stays pending.
async fn a_revoked_or_foreign_passkey_cannot_approve(engine: Engine) {
    let f = fixture(engine).await;
    let app = f.app("portal").await;
    let (alice, bob) = (f.user("alice").await, f.user("bob").await);
    let (alices, bobs) = (passkey(&f, &app, &alice).await, passkey(&f, &app, &bob).await);
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    let event = f.event(Action::PasskeyRevoked, Subject::User(alice.id));
    let revoked = f.store.revoke_passkey(alice.id, alices.id, f.now(), event).await.unwrap();
    let before = f.audit_len().await;
    for (label, key) in [("revoked", &revoked), ("Bob's", &bobs)] {
        let result = approve(&f, &assertion(&challenge, key, 0)).await;
        assert!(
            matches!(result, Err(StoreError::PreconditionFailed(Precondition::DeviceInactive))),
            "{label}: {result:?}"
        );
        assert_eq!(passkey_now(&f, key).await, *key, "{label}: unchanged");
    }
    let as_bob = PasskeyAssertion { user: bob.id, ..assertion(&challenge, &bobs, 0) };
    let result = approve(&f, &as_bob).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "not Bob's sign-in: {result:?}"
    );
    assert_eq!(f.challenge_now(challenge.id).await, challenge, "still pending");
    assert_eq!(f.audit_len().await, before);
}

/// A challenge with a number (a push one) is decided by its device, never by a passkey.
async fn a_push_challenge_is_not_decided_by_a_passkey(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let challenge = f.challenge(&app, &alice).await;
    let before = f.audit_len().await;
    let result = approve(&f, &assertion(&challenge, &key, 0)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "{result:?}"
    );
    let event = f.event(Action::Challenge(ChallengeState::Denied), Subject::Challenge(challenge.id));
    let result = f.store.deny_passkey_challenge(challenge.id, f.now(), event).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    assert_eq!(f.challenge_now(challenge.id).await, challenge);
    assert_eq!(passkey_now(&f, &key).await, key);
    assert_eq!(f.audit_len().await, before);
}

/// A pending sign-in is denied once; a denied one cannot be approved.
async fn a_sign_in_is_denied_once(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    f.advance(Duration::seconds(2)).await;
    let before = f.audit_len().await;
    let deny = || f.event(Action::Challenge(ChallengeState::Denied), Subject::Challenge(challenge.id));
    let denied = f.store.deny_passkey_challenge(challenge.id, f.now(), deny()).await.unwrap();
    assert_eq!((denied.state, denied.decided_at), (ChallengeState::Denied, Some(f.now())));
    assert_eq!(f.challenge_now(challenge.id).await, denied);
    let result = f.store.deny_passkey_challenge(challenge.id, f.now(), deny()).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    let result = approve(&f, &assertion(&challenge, &key, 0)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::ChallengeNotPending))),
        "{result:?}"
    );
    assert_eq!(passkey_now(&f, &key).await, key);
    assert_eq!(f.audit_len().await, before + 1);
}

/// A deleted user's passkey factors are void with them: their ceremonies and links expire (the
/// purge removes them), and their passkeys are revoked, so a pending sign-in cannot be approved.
async fn a_deleted_users_passkey_factors_are_void(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    let ceremony = ceremony_record(&f, &app, &alice, false);
    let link = link_record(&ceremony, &alice, &app);
    begin(&f, &ceremony, RegistrationProof::Operator, Some(&link)).await.unwrap();
    f.advance(Duration::seconds(1)).await;
    let event = f.event(Action::UserDeleted, Subject::User(alice.id));
    f.store.delete_user(alice.id, f.now(), event).await.unwrap();

    let before = f.audit_len().await;
    let result = complete(&f, &ceremony, passkey_record(&f, &alice)).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    let result = approve(&f, &assertion(&challenge, &key, 0)).await;
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed(Precondition::DeviceInactive))),
        "{result:?}"
    );
    assert_eq!(f.challenge_now(challenge.id).await.state, ChallengeState::Pending);
    assert_eq!(passkey_now(&f, &key).await.revoked_at, Some(f.now()));
    assert_eq!(f.audit_len().await, before, "refusals write nothing");
    assert_eq!(f.store.purge_expired_registrations(f.now()).await.unwrap(), 2, "the ceremony and its link");
    assert_eq!(f.store.enrollment_link(&link.code_hash).await.unwrap(), None);
}

/// Eight assertions for one sign-in racing on two instances: exactly one approves it.
async fn concurrent_assertions_approve_a_sign_in_once(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let (challenge, _) = sign_in(&f, &app, &alice).await;
    let results = race_assertions(&f, vec![assertion(&challenge, &key, 0); 8]).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert_eq!(passkey_now(&f, &key).await.sign_count, 1);
}

/// Eight sign-ins answered at once by one passkey from the same counter: one counter value
/// approves exactly one sign-in.
async fn one_counter_value_approves_one_sign_in(engine: Engine) {
    let f = fixture(engine).await;
    let (app, alice) = (f.app("portal").await, f.user("alice").await);
    let key = passkey(&f, &app, &alice).await;
    let mut assertions = Vec::new();
    for _ in 0..8 {
        assertions.push(assertion(&sign_in(&f, &app, &alice).await.0, &key, 0));
    }
    let results = race_assertions(&f, assertions.clone()).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let mut pending = 0;
    for a in &assertions {
        pending += usize::from(f.challenge_now(a.challenge).await.state == ChallengeState::Pending);
    }
    assert_eq!(pending, 7, "the others are untouched");
}

/// Applies `assertions` at once on two instances; every refusal is a lost race.
async fn race_assertions(
    f: &Fixture,
    assertions: Vec<PasskeyAssertion>,
) -> Vec<Result<ChallengeRecord, StoreError>> {
    let before = f.audit_len().await;
    let now = f.now();
    let results = f
        .race(assertions.len(), |i, store| {
            let a = assertions[i].clone();
            let event = f.event(Action::Challenge(ChallengeState::Approved), Subject::User(a.user));
            async move { store.approve_with_passkey(&a, now, event).await }
        })
        .await;
    let lost = |r: &Result<ChallengeRecord, StoreError>| {
        matches!(
            r,
            Err(StoreError::PreconditionFailed(
                Precondition::ChallengeNotPending | Precondition::CounterNotIncreasing
            ))
        )
    };
    assert!(results.iter().all(|r| r.is_ok() || lost(r)), "{results:?}");
    assert_eq!(f.audit_len().await, before + 1, "one approval audited");
    results
}

on_both_engines!(
    a_user_handle_is_stored_once_and_read_without_writing,
    a_ceremony_and_its_link_are_stored_together,
    a_registration_ceremony_completes_once,
    an_expired_ceremony_cannot_complete,
    concurrent_completions_use_a_ceremony_once,
    an_approval_begins_one_registration,
    a_stale_approval_begins_no_registration,
    concurrent_registrations_consume_an_approval_once,
    a_first_factor_ceremony_is_refused_once_a_device_appeared,
    a_first_factor_ceremony_is_refused_once_a_passkey_appeared,
    concurrent_first_factor_ceremonies_add_one_factor,
    a_credential_id_is_bound_to_one_user_forever,
    expired_ceremonies_and_links_are_purged,
    passkeys_are_renamed_and_revoked_only_by_their_user,
    passkey_sign_ins_are_found_by_challenge_and_page_token,
    failed_assertions_are_counted_per_sign_in,
    an_assertion_approves_a_pending_sign_in_once,
    a_stale_previous_sign_count_approves_nothing,
    an_expired_sign_in_cannot_be_approved,
    a_revoked_or_foreign_passkey_cannot_approve,
    a_push_challenge_is_not_decided_by_a_passkey,
    a_sign_in_is_denied_once,
    a_deleted_users_passkey_factors_are_void,
    concurrent_assertions_approve_a_sign_in_once,
    one_counter_value_approves_one_sign_in,
);
