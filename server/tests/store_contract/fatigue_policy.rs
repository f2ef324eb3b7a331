//! The run-time fatigue policy: one row, replaced whole with its audit event.

use countersign::admin::model::{AdminStatus, RequestKind, RequestState, Role};
use countersign::audit::{Action, Actor, AuditEvent, Subject};
use countersign::ids::{AdminId, AdminRequestId};
use countersign::store::{AdminRecord, AdminRequestRecord, StoredPolicy};
use countersign_e2e::Engine;
use time::Duration;

use super::support::{Fixture, fixture};

/// A pending request to hang the change on (the row names the request that made it).
async fn request(f: &Fixture) -> AdminRequestId {
    let id = AdminId::random();
    let admin = AdminRecord {
        id,
        name: format!("ada-{id}"),
        role: Role::Admin,
        status: AdminStatus::Active,
        webauthn_handle: id.0.as_bytes().to_vec(),
        created_at: f.now(),
        created_by: "cli".into(),
        removal_due_at: None,
        removed_at: None,
    };
    let by = Actor::Admin { id: admin.id };
    f.store
        .create_admin(
            &admin,
            AuditEvent::new(f.now(), by.clone(), Action::AdminInvited, Subject::Admin(admin.id)),
        )
        .await
        .unwrap();
    let record = AdminRequestRecord {
        id: AdminRequestId::random(),
        kind: RequestKind::FatiguePolicy,
        payload: "{}".into(),
        state: RequestState::Pending,
        requested_by: admin.id,
        requested_at: f.now(),
        expires_at: f.now() + Duration::hours(24),
        decided_by: None,
        decided_at: None,
        applied_at: None,
        result: None,
    };
    let event = AuditEvent::new(f.now(), by, Action::AdminRequestSubmitted, Subject::AdminRequest(record.id));
    f.store.insert_admin_request(&record, event, "{}").await.unwrap();
    record.id
}

/// Absent until the first change; each change replaces the whole row, bumps the version and
/// leaves its audit event.
async fn a_policy_change_replaces_the_row_with_its_audit_event(engine: Engine) {
    let f = fixture(engine).await;
    assert_eq!(f.store.fatigue_policy().await.unwrap(), None, "the config file's policy applies");
    let (first, second) = (request(&f).await, request(&f).await);
    let before = f.audit_len().await;
    let event = |id| f.event(Action::FatiguePolicyChanged, Subject::AdminRequest(id));
    assert_eq!(
        f.store.set_fatigue_policy(r#"{"push_budget":2}"#, first, f.now(), event(first), "{}").await.unwrap(),
        1
    );
    f.advance(Duration::seconds(5)).await;
    assert_eq!(
        f.store
            .set_fatigue_policy(r#"{"push_budget":3}"#, second, f.now(), event(second), "{}")
            .await
            .unwrap(),
        2
    );
    let stored = f.store.fatigue_policy().await.unwrap();
    let expected = StoredPolicy {
        version: 2,
        settings: r#"{"push_budget":3}"#.into(),
        changed_by_request: second,
        changed_at: f.now(),
    };
    assert_eq!(stored, Some(expected));
    let actions: Vec<String> = f.audit_since(before).await.into_iter().map(|(action, _, _)| action).collect();
    assert_eq!(actions, ["fatigue.policy_changed", "fatigue.policy_changed"]);
    let other = f.another_instance().await;
    assert_eq!(other.fatigue_policy().await.unwrap().map(|p| p.version), Some(2), "seen by every instance");
}

on_both_engines!(a_policy_change_replaces_the_row_with_its_audit_event);
