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

    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (0, 0));
    assert_eq!(cursor.lease_until, f.now() + LEASE);
    let next = f.store.next_alert(0).await.unwrap().unwrap();
    assert_eq!(next, raised[0]);
    assert!(f.store.release_alert_cursor(&cursor, Some(next.id), None, None).await.unwrap());
    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (raised[0].id, 0));
    assert_eq!(f.store.next_alert(raised[0].id).await.unwrap().as_ref(), Some(&raised[1]));
    assert!(f.store.release_alert_cursor(&cursor, Some(raised[2].id), None, None).await.unwrap());
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
    let taken_over = taken_over.expect("a dead worker's lease is taken over");
    assert_eq!(position(taken_over), (0, 0));
    assert!(
        f.store.release_alert_cursor(&taken_over, None, None, Some("webhook down".into())).await.unwrap()
    );
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
    let cursor = f.store.lease_alert_cursor(now, LEASE).await.unwrap().unwrap();
    let retry_at = now + Duration::minutes(1);
    assert!(
        f.store.release_alert_cursor(&cursor, None, Some(retry_at), Some("HTTP 503".into())).await.unwrap()
    );
    assert_eq!(
        f.store.lease_alert_cursor(retry_at - Duration::SECOND, LEASE).await.unwrap(),
        None,
        "not yet"
    );
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (0, 1));
    assert!(
        f.store.release_alert_cursor(&cursor, None, Some(retry_at), Some("HTTP 503".into())).await.unwrap()
    );
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (0, 2));
    let alert = f.store.next_alert(0).await.unwrap().unwrap();
    assert!(f.store.release_alert_cursor(&cursor, Some(alert.id), None, None).await.unwrap());
    let cursor = f.store.lease_alert_cursor(retry_at, LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (alert.id, 0), "delivered: attempts reset");
}

/// Where a leased cursor stands: the last delivered alert and the failed attempts since.
fn position(cursor: AlertCursor) -> (i64, i32) {
    (cursor.last_delivered, cursor.attempts)
}

/// A webhook worker stalls past its lease; another instance takes the cursor over and delivers
/// alerts 1 and 2. The stale worker then reports alert 1 delivered, or asks for a retry: neither
/// may move the cursor back (alert 2 sent twice) nor free the new holder's lease (two workers
/// delivering at once, out of order).
async fn a_worker_whose_lease_ran_out_cannot_move_the_cursor(engine: Engine) {
    let f = fixture(engine).await;
    for network in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"] {
        f.store
            .raise_alert(AlertKind::PushSpray, &Subject::Network(network.into()), "{}", f.now())
            .await
            .unwrap();
    }
    let stale = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();
    let first = f.store.next_alert(stale.last_delivered).await.unwrap().unwrap();
    f.advance(LEASE + Duration::SECOND).await;

    let other = f.another_instance().await;
    let mut delivered = 0;
    for _ in 0..2 {
        let lease =
            other.lease_alert_cursor(f.now(), LEASE).await.unwrap().expect("the stale lease is taken over");
        let alert = other.next_alert(lease.last_delivered).await.unwrap().unwrap();
        assert!(other.release_alert_cursor(&lease, Some(alert.id), None, None).await.unwrap());
        delivered = alert.id;
    }
    let holder = other.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();

    assert!(
        !f.store.release_alert_cursor(&stale, Some(first.id), None, None).await.unwrap(),
        "stale delivery"
    );
    let retry = Some(f.now() + Duration::minutes(1));
    assert!(
        !f.store.release_alert_cursor(&stale, None, retry, Some("HTTP 503".into())).await.unwrap(),
        "stale retry"
    );
    assert_eq!(
        f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap(),
        None,
        "the new holder keeps its lease"
    );
    assert!(other.release_alert_cursor(&holder, Some(delivered), None, None).await.unwrap());
    let cursor = f.store.lease_alert_cursor(f.now(), LEASE).await.unwrap().unwrap();
    assert_eq!(position(cursor), (delivered, 0), "the cursor never went back");
}

on_both_engines!(
    a_worker_whose_lease_ran_out_cannot_move_the_cursor,
    alerts_are_read_in_order_behind_the_cursor,
    one_worker_holds_the_cursor_at_a_time,
    a_failed_delivery_is_retried_when_due,
);
