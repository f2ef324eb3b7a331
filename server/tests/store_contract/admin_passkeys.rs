//! Admins' passkeys, ceremonies and invitations: taken once, compared-and-set, never leaving an
//! admin without a passkey.

use countersign::admin::model::{AdminStatus, Role};
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::{AdminCeremonyId, AdminId, AdminPasskeyId};
use countersign::store::{
    AdminAssertionUpdate, AdminCeremonyRecord, AdminPasskeyRecord, AdminPasskeyRevoke, AdminRecord,
    CeremonyKind, InvitationRecord, InvitationRedeem,
};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{Fixture, fixture};

fn event(f: &Fixture, admin: AdminId, action: Action) -> AuditEvent {
    AuditEvent::new(f.now(), Actor::Admin { id: admin }, action, Subject::Admin(admin))
}

async fn admin(f: &Fixture, name: &str, status: AdminStatus) -> AdminRecord {
    let admin = AdminRecord {
        id: AdminId::random(),
        name: name.into(),
        role: Role::Admin,
        status,
        webauthn_handle: name.as_bytes().to_vec(),
        created_at: f.now(),
        created_by: "cli".into(),
        removal_due_at: None,
        removed_at: None,
    };
    f.store.create_admin(&admin, event(f, admin.id, Action::AdminInvited)).await.unwrap();
    admin
}

fn passkey(f: &Fixture, admin: AdminId, credential: &[u8]) -> AdminPasskeyRecord {
    AdminPasskeyRecord {
        id: AdminPasskeyId::random(),
        admin_id: admin,
        credential_id: credential.to_vec(),
        name: "key".into(),
        static_state: vec![1; 8],
        dynamic_state: vec![0; 7],
        aaguid: vec![0; 16],
        backup_eligible: true,
        backed_up: false,
        sign_count: 1,
        created_at: f.now(),
        last_used_at: None,
        revoked_at: None,
    }
}

fn ceremony(f: &Fixture, kind: CeremonyKind, binding: &[u8], state: &[u8]) -> AdminCeremonyRecord {
    AdminCeremonyRecord {
        id: AdminCeremonyId::random(),
        kind,
        admin_id: None,
        binding_hash: binding.to_vec(),
        state: state.to_vec(),
        created_at: f.now(),
        expires_at: f.now() + Duration::minutes(5),
    }
}

/// A ceremony is taken once, only by its binding and kind, and not after it expired; a newer
/// ceremony of the same binding and kind replaces the older.
async fn an_admin_ceremony_is_taken_once_by_its_binding(engine: Engine) {
    let f = fixture(engine).await;
    let kept = ceremony(&f, CeremonyKind::SignIn, b"browser-a", b"state-1");
    f.store.insert_admin_ceremony(&kept).await.unwrap();
    assert_eq!(f.store.take_admin_ceremony(b"browser-b", CeremonyKind::SignIn, f.now()).await.unwrap(), None);
    assert_eq!(f.store.take_admin_ceremony(b"browser-a", CeremonyKind::StepUp, f.now()).await.unwrap(), None);
    let taken = f.store.take_admin_ceremony(b"browser-a", CeremonyKind::SignIn, f.now()).await.unwrap();
    assert_eq!(taken, Some(kept));
    assert_eq!(f.store.take_admin_ceremony(b"browser-a", CeremonyKind::SignIn, f.now()).await.unwrap(), None);

    f.store.insert_admin_ceremony(&ceremony(&f, CeremonyKind::StepUp, b"session", b"old")).await.unwrap();
    f.advance(Duration::seconds(1)).await;
    let newer = ceremony(&f, CeremonyKind::StepUp, b"session", b"new");
    f.store.insert_admin_ceremony(&newer).await.unwrap();
    let taken = f.store.take_admin_ceremony(b"session", CeremonyKind::StepUp, f.now()).await.unwrap();
    assert_eq!(taken.map(|c| c.state), Some(b"new".to_vec()));

    f.store.insert_admin_ceremony(&ceremony(&f, CeremonyKind::Register, b"late", b"x")).await.unwrap();
    f.advance(Duration::minutes(5)).await;
    assert_eq!(f.store.take_admin_ceremony(b"late", CeremonyKind::Register, f.now()).await.unwrap(), None);
}

/// An assertion is stored back only over the state it was verified against, and never on a
/// revoked passkey; the last active passkey is never revoked.
async fn admin_passkey_updates_are_compare_and_set(engine: Engine) {
    let f = fixture(engine).await;
    let alice = admin(&f, "alice", AdminStatus::Active).await;
    let first = passkey(&f, alice.id, b"credential-1");
    f.store.add_admin_passkey(&first, event(&f, alice.id, Action::AdminPasskeyRegistered)).await.unwrap();
    let update = AdminAssertionUpdate {
        passkey: first.id,
        previous_dynamic_state: first.dynamic_state.clone(),
        dynamic_state: vec![1; 7],
        sign_count: 2,
        backed_up: true,
        at: f.now(),
    };
    assert!(f.store.record_admin_assertion(&update).await.unwrap());
    assert!(!f.store.record_admin_assertion(&update).await.unwrap(), "the same assertion twice");
    let stored = f.store.admin_passkey_by_credential_id(b"credential-1").await.unwrap().unwrap();
    assert_eq!((stored.sign_count, stored.backed_up, stored.last_used_at), (2, true, Some(f.now())));

    let revoke = |id| {
        f.store.revoke_admin_passkey(alice.id, id, f.now(), event(&f, alice.id, Action::AdminPasskeyRevoked))
    };
    assert_eq!(revoke(first.id).await.unwrap(), AdminPasskeyRevoke::LastOne);
    assert_eq!(revoke(AdminPasskeyId::random()).await.unwrap(), AdminPasskeyRevoke::NotFound);
    let second = passkey(&f, alice.id, b"credential-2");
    f.store.add_admin_passkey(&second, event(&f, alice.id, Action::AdminPasskeyRegistered)).await.unwrap();
    assert_eq!(revoke(first.id).await.unwrap(), AdminPasskeyRevoke::Revoked);
    assert_eq!(revoke(first.id).await.unwrap(), AdminPasskeyRevoke::NotFound);
    assert_eq!(revoke(second.id).await.unwrap(), AdminPasskeyRevoke::LastOne);
    let next = AdminAssertionUpdate { previous_dynamic_state: vec![1; 7], ..update };
    assert!(!f.store.record_admin_assertion(&next).await.unwrap(), "a revoked passkey");
    let listed = f.store.admin_passkeys(alice.id).await.unwrap();
    assert_eq!(listed.iter().filter(|p| p.revoked_at.is_none()).count(), 1);
}

/// An invitation is redeemed once, before it expires, activating its admin with a passkey;
/// nothing is written by a refused redemption.
async fn an_invitation_is_redeemed_once(engine: Engine) {
    let f = fixture(engine).await;
    let carol = admin(&f, "carol", AdminStatus::Invited).await;
    let dave = admin(&f, "dave", AdminStatus::Invited).await;
    for (hash, who, ttl) in [(b"carol".as_slice(), carol.id, 60), (b"dave".as_slice(), dave.id, 1)] {
        let invitation = InvitationRecord {
            token_hash: hash.to_vec(),
            admin_id: who,
            created_at: f.now(),
            expires_at: f.now() + Duration::minutes(ttl),
            used_at: None,
        };
        f.store.insert_invitation(&invitation).await.unwrap();
    }
    let fixture = &f;
    let redeem = |hash: &'static [u8], who: AdminId, credential: &'static [u8]| {
        let key = passkey(fixture, who, credential);
        let audit = event(fixture, who, Action::AdminPasskeyRegistered);
        async move { fixture.store.redeem_invitation(hash, fixture.now(), &key, audit).await.unwrap() }
    };
    match redeem(b"carol", carol.id, b"carol-key").await {
        InvitationRedeem::Redeemed(admin) => {
            assert_eq!((admin.id, admin.status), (carol.id, AdminStatus::Active))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(redeem(b"carol", carol.id, b"carol-key-2").await, InvitationRedeem::Used);
    assert_eq!(redeem(b"nobody", carol.id, b"x").await, InvitationRedeem::Unknown);
    f.advance(Duration::minutes(2)).await;
    assert_eq!(redeem(b"dave", dave.id, b"dave-key").await, InvitationRedeem::Expired);
    assert_eq!(f.store.admin_passkeys(carol.id).await.unwrap().len(), 1);
    assert!(f.store.admin_passkeys(dave.id).await.unwrap().is_empty());
    assert_eq!(f.store.admin(dave.id).await.unwrap().unwrap().status, AdminStatus::Invited);
    let (invitation, admin) = f.store.invitation(b"carol").await.unwrap().unwrap();
    assert_eq!((invitation.used_at.is_some(), admin.name.as_str()), (true, "carol"));
}

on_both_engines!(
    an_admin_ceremony_is_taken_once_by_its_binding,
    admin_passkey_updates_are_compare_and_set,
    an_invitation_is_redeemed_once,
);
