//! Alerts: the queue the webhook worker reads, and its cursor, which one worker at a time
//! leases.

use countersign::alerts::AlertKind;
use countersign::audit::Subject;
use countersign::ids::UserId;
use countersign::store::AlertCursor;
use countersign_e2e::Engine;
use time::Duration;

use super::fatigue::alerts;
use super::support::fixture;

const LEASE: Duration = Duration::seconds(30);

/// Alerts come out in the order raised, each as raised; the cursor moves on only when a
/// delivery is released as done.
async fn alerts_are_read_in_order_behind_the_cursor(engine: Engine) {
    let f = fixture(engine).await;
    let user = UserId::random();
    assert_eq!(f.store.next_alert(0).await.unwrap(), None);
    for (kind, subject) in [
        (AlertKind::PushSpray, Subject::Network("203.0.113.0/24".into())),
        (AlertKind::PushBombing, Subject::User(user)),
        (AlertKind::PossibleClone, Subject::UnknownDevices),
    ] {
        f.store.raise_alert(kind, &subject, &format!(r#"{{"kind":"{kind}"}}"#), f.now()).await.unwrap();
        f.advance(Duration::seconds(1)).await;
    }
    let raised = alerts(&f).await;
    let seen: Vec<(&str, &str)> = raised.iter().map(|a| (a.kind.as_str(), a.subject.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("push_spray", "network:203.0.113.0/24"),
            ("push_bombing", format!("user:{user}").as_str()),
            ("possible_clone", "devices:unknown")
        ]
    );
    assert_eq!(raised[1].details, r#"{"kind":"push_bombing"}"#);
    assert_eq!(raised[1].created_at, super::support::START + Duration::seconds(1), "to the microsecond");
    assert!(raised.windows(2).all(|w| w[0].id < w[1].id));

    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap();
    assert_eq!(cursor, Some(AlertCursor { last_delivered: 0, attempts: 0 }));
    let next = f.store.next_alert(0).await.unwrap().unwrap();
    assert_eq!(next, raised[0]);
    f.store.release_alert_cursor(Some(next.id), None, None).await.unwrap();
    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap();
    assert_eq!(cursor, Some(AlertCursor { last_delivered: raised[0].id, attempts: 0 }));
    assert_eq!(f.store.next_alert(raised[0].id).await.unwrap().as_ref(), Some(&raised[1]));
    f.store.release_alert_cursor(Some(raised[2].id), None, None).await.unwrap();
    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();
    assert_eq!(cursor.last_delivered, raised[2].id);
    assert_eq!(f.store.next_alert(cursor.last_delivered).await.unwrap(), None, "all delivered");
}

/// One worker holds the lease, on any instance, until it releases it or the lease runs out.
async fn one_worker_holds_the_cursor_at_a_time(engine: Engine) {
    let f = fixture(engine).await;
    let now = f.now();
    let leases =
        f.race(8, |_, store| async move { store.lease_alert_cursor(now, LEASE).await.unwrap() }).await;
    let held = leases.iter().filter(|lease| lease.is_some()).count();
    assert_eq!(held, 1, "exactly one lease");
    let other = f.another_instance().await;
    assert_eq!(other.lease_alert_cursor(now + LEASE, LEASE).await.unwrap(), None, "until the lease ends");
    let taken_over = other.lease_alert_cursor(now + LEASE + Duration::SECOND, LEASE).await.unwrap();
    assert_eq!(taken_over, Some(AlertCursor { last_delivered: 0, attempts: 0 }), "a dead worker's lease");
    f.store.release_alert_cursor(None, None, Some("webhook down".into())).await.unwrap();
    let later = now + LEASE + Duration::seconds(2);
    assert!(f.store.lease_alert_cursor(later, LEASE).await.unwrap().is_some(), "released: free at once");
}

/// A failed delivery is retried no earlier than asked, counting attempts, from the same alert.
async fn a_failed_delivery_is_retried_when_due(engine: Engine) {
    let f = fixture(engine).await;
    f.store
        .raise_alert(AlertKind::PushSpray, &Subject::Network("192.0.2.0/24".into()), "{}", f.now())
        .await
        .unwrap();
    let now = f.now();
    f.store.lease_alert_cursor(now, LEASE).await.unwrap().unwrap();
    let retry_at = now + Duration::minutes(1);
    f.store.release_alert_cursor(None, Some(retry_at), Some("HTTP 503".into())).await.unwrap();
    assert_eq!(
        f.store.lease_alert_cursor(retry_at - Duration::SECOND, LEASE).await.unwrap(),
        None,
        "not yet"
    );
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap();
    assert_eq!(cursor, Some(AlertCursor { last_delivered: 0, attempts: 1 }));
    f.store.release_alert_cursor(None, Some(retry_at), Some("HTTP 503".into())).await.unwrap();
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap();
    assert_eq!(cursor, Some(AlertCursor { last_delivered: 0, attempts: 2 }));
    let alert = f.store.next_alert(0).await.unwrap().unwrap();
    f.store.release_alert_cursor(Some(alert.id), None, None).await.unwrap();
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap();
    assert_eq!(
        cursor,
        Some(AlertCursor { last_delivered: alert.id, attempts: 0 }),
        "delivered: attempts reset"
    );
}

on_both_engines!(
    alerts_are_read_in_order_behind_the_cursor,
    one_worker_holds_the_cursor_at_a_time,
    a_failed_delivery_is_retried_when_due,
);
