//! End-to-end challenges: the real server, the real reference authenticator, and local HTTP/2
//! fakes of APNs and FCM, on SQLite and PostgreSQL; plus two server instances racing on one
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use countersign_e2e::device::TestDevice;
use countersign_e2e::fake_push::{ApnsReply, ApnsTestKey, FakeApns, FakeFcm, FcmTestAccount};
use countersign_e2e::{
    Engine, Server, TestDatabase, authenticator, create_app, eventually, http, new_enrollment,
    random_master_key, recovery_enrollment, start_challenge, stderr_of, stdout_of, unix_now,
};
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

const TOPIC: &str = "com.example.countersign";
const ALICE_APNS: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BOB_FCM: &str = "fcm-registration-token-for-bob";

struct World {
    server: Server,
    apns: FakeApns,
    fcm: FakeFcm,
    key: String,
    alice: PathBuf,
    bob: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(engine: Engine) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let apns_key = ApnsTestKey::generate();
        let apns = FakeApns::start(&apns_key, TOPIC, unix_now() as i64).await;
        let fcm = FakeFcm::start(&FcmTestAccount::new(), unix_now() as i64).await;
        let p8 = apns_key.write_p8(dir.path());
        let service_account = fcm.write_service_account(dir.path());
        let (p8, service_account, apns_url, fcm_url) =
            (p8.display().to_string(), service_account.display().to_string(), apns.url(), fcm.url());
        let env = [
            ("COUNTERSIGN_PUSH__APNS__KEY_FILE", p8.as_str()),
            ("COUNTERSIGN_PUSH__APNS__KEY_ID", apns_key.key_id.as_str()),
            ("COUNTERSIGN_PUSH__APNS__TEAM_ID", apns_key.team_id.as_str()),
            ("COUNTERSIGN_PUSH__APNS__TOPIC", TOPIC),
            ("COUNTERSIGN_PUSH__APNS__BASE_URL", apns_url.as_str()),
            ("COUNTERSIGN_PUSH__APNS__SANDBOX_BASE_URL", apns_url.as_str()),
            ("COUNTERSIGN_PUSH__FCM__SERVICE_ACCOUNT_FILE", service_account.as_str()),
            ("COUNTERSIGN_PUSH__FCM__BASE_URL", fcm_url.as_str()),
            ("COUNTERSIGN_CHALLENGES__TTL_SECS", "10"),
        ];
        let db = Arc::new(TestDatabase::new(engine).await);
        let server = Server::start_with(db, random_master_key(), &env).await;
        let key = create_app(
            &server,
            "portal",
            "users:read users:write challenges:write challenges:read fatigue:write",
        );
        let alice = dir.path().join("alice.json");
        let bob = dir.path().join("bob.json");
        let world = Self { server, apns, fcm, key, alice, bob, _dir: dir };
        world.enroll("alice", &world.alice, &format!("apns:{ALICE_APNS}")).await;
        world.enroll("bob", &world.bob, &format!("fcm:{BOB_FCM}")).await;
        world
    }

    async fn enroll(&self, username: &str, state: &Path, push: &str) {
        let enrollment = new_enrollment(&self.server, &self.key, username, None).await;
        let enrolled = authenticator(
            state,
            &["enroll", enrollment["activation_uri"].as_str().unwrap(), "--yes", "--push", push],
        );
        assert!(enrolled.status.success(), "{}", stderr_of(&enrolled));
    }

    async fn start(&self, username: &str) -> (String, String) {
        let reply = http()
            .post(self.server.url("/v1/challenges"))
            .bearer_auth(&self.key)
            .json(&json!({ "username": username, "context": { "ip": "203.0.113.9", "user_agent": "e2e" } }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["number"].as_str().unwrap().to_owned())
    }

    async fn state_of(&self, id: &str) -> String {
        let body: Value = http()
            .get(self.server.url(&format!("/v1/challenges/{id}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["state"].as_str().unwrap().to_owned()
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        let reply = http().post(self.server.url(path)).bearer_auth(&self.key).send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap())
    }
}

fn wrong(number: &str) -> String {
    let n: u32 = number.parse().unwrap();
    format!("{:0width$}", (n + 1) % 10u32.pow(number.len() as u32), width = number.len())
}

async fn full_flows(engine: Engine) {
    let w = World::new(engine).await;

    // Approve: the push carries only the id; the phone pulls details and types the number.
    let (id, number) = w.start("alice").await;
    let push = eventually(10, || w.apns.requests().into_iter().find(|r| r.status == 200))
        .await
        .unwrap_or_else(|| panic!("no APNs push arrived: {:?}", w.apns.requests()));
    assert_eq!(push.path, format!("/3/device/{ALICE_APNS}"));
    let payload = push.json();
    assert_eq!(payload["challenge_id"], id.as_str());
    let text = payload.to_string();
    assert!(!text.contains("alice") && !text.contains("203.0.113.9") && !text.contains("portal"), "{text}");
    let pending = authenticator(&w.alice, &["pending", "--json"]);
    let listed: Value = serde_json::from_str(&stdout_of(&pending)).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(!stdout_of(&pending).contains(&format!("\"{number}\"")));
    let approved = authenticator(&w.alice, &["approve", &id, "--number", &number]);
    assert_eq!(stdout_of(&approved), "approved", "{}", stderr_of(&approved));
    assert_eq!(w.state_of(&id).await, "approved");
    let (status, body) = w.post(&format!("/v1/challenges/{id}/redeem")).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("redeemed")));
    let (status, body) = w.post(&format!("/v1/challenges/{id}/redeem")).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("already_redeemed")));

    // Deny and wrong number.
    let (id, _) = w.start("alice").await;
    assert_eq!(stdout_of(&authenticator(&w.alice, &["deny", &id])), "denied");
    assert_eq!(w.state_of(&id).await, "denied");
    let (id, number) = w.start("alice").await;
    assert_eq!(
        stdout_of(&authenticator(&w.alice, &["approve", &id, "--number", &wrong(&number)])),
        "denied_wrong_number"
    );
    let retry = authenticator(&w.alice, &["approve", &id, "--number", &number]);
    assert_eq!(retry.status.code(), Some(1), "one attempt per challenge");
    assert_eq!(w.state_of(&id).await, "denied_wrong_number");

    // The wrong number froze Alice's push (fatigue defence); her app lifts the timed freeze,
    // but the ladder's counts stay (her next prompts would go out silently), so the operator
    // resets it: the pushes below must reach the fake providers.
    let (status, _) = w.post("/v1/users/alice/unfreeze").await;
    assert_eq!(status, 200);
    let reset = w.server.cli(&["users", "unfreeze", "--user", "alice"]);
    assert!(reset.status.success(), "users unfreeze: {}", String::from_utf8_lossy(&reset.stderr));

    // Cancel.
    let (id, number) = w.start("alice").await;
    let (status, body) = w.post(&format!("/v1/challenges/{id}/cancel")).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("cancelled")));
    let late = authenticator(&w.alice, &["approve", &id, "--number", &number]);
    assert!(stderr_of(&late).starts_with("error: challenge_not_pending"), "{}", stderr_of(&late));

    // FCM for Bob: data-only id, ttl = time left.
    let (id, number) = w.start("bob").await;
    let send = eventually(10, || w.fcm.sends().into_iter().find(|r| r.status == 200))
        .await
        .unwrap_or_else(|| panic!("no FCM send arrived: {:?}", w.fcm.sends()));
    let message = &send.json()["message"];
    assert_eq!(
        (message["token"].as_str(), message["data"]["challenge_id"].as_str()),
        (Some(BOB_FCM), Some(id.as_str()))
    );
    assert!(message["android"]["ttl"].as_str().unwrap().ends_with('s'));
    assert_eq!(stdout_of(&authenticator(&w.bob, &["approve", &id, "--number", &number])), "approved");

    // APNs says the token is dead: the device falls back to pulling, and approval still works.
    w.apns.set_reply(ALICE_APNS, ApnsReply::Unregistered);
    let (id, number) = w.start("alice").await;
    let disabled = eventually(10, || {
        let devices = futures_devices(&w);
        (devices[0]["push_provider"] == "none").then_some(())
    })
    .await;
    assert!(disabled.is_some(), "APNs 410 must disable the token");
    assert_eq!(stdout_of(&authenticator(&w.alice, &["approve", &id, "--number", &number])), "approved");

    // FCM down: no push can be delivered, the pull path still approves.
    w.fcm.stop();
    let (id, number) = w.start("bob").await;
    assert_eq!(stdout_of(&authenticator(&w.bob, &["approve", &id, "--number", &number])), "approved");

    // Push bombing: 20 prompts for Carol within seconds reach her phone at most 5 times; the
    // refusals carry Retry-After.
    const CAROL_APNS: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    let carol = w._dir.path().join("carol.json");
    w.enroll("carol", &carol, &format!("apns:{CAROL_APNS}")).await;
    let mut refused = 0;
    for _ in 0..20 {
        let reply = http()
            .post(w.server.url("/v1/challenges"))
            .bearer_auth(&w.key)
            .json(&json!({ "username": "carol" }))
            .send()
            .await
            .unwrap();
        if reply.status() == 429 {
            assert!(reply.headers().get("retry-after").is_some(), "429 carries Retry-After");
            refused += 1;
        } else {
            assert_eq!(reply.status(), 201);
        }
    }
    assert_eq!(refused, 15);
    let to_carol = |w: &World| w.apns.requests().iter().filter(|r| r.path.ends_with(CAROL_APNS)).count();
    eventually(10, || (to_carol(&w) >= 1).then_some(())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(to_carol(&w) <= 5, "at most 5 pushes reached the phone: {}", to_carol(&w));

    // Expiry (TTL is 10 s here).
    let (id, number) = w.start("bob").await;
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let expired = authenticator(&w.bob, &["approve", &id, "--number", &number]);
    assert!(stderr_of(&expired).starts_with("error: challenge_expired"), "{}", stderr_of(&expired));
    assert_eq!(w.state_of(&id).await, "expired");

    let verified = w.server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
    let logs = w.server.logs();
    assert!(!logs.contains(ALICE_APNS) && !logs.contains(BOB_FCM), "push tokens never reach the logs");
}

/// Blocking fetch of Alice's devices (used inside a polling closure).
fn futures_devices(w: &World) -> Value {
    let url = w.server.url("/v1/users/alice/devices");
    let key = w.key.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            http().get(url).bearer_auth(key).send().await.unwrap().json::<Value>().await.unwrap()
        })
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flows_on_sqlite() {
    full_flows(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flows_on_postgres() {
    full_flows(Engine::Postgres).await;
}

async fn signed_pending(server: &Server, phone: &TestDevice) -> PendingChallenges {
    let mut request = http().get(server.url("/device/v1/challenges"));
    for (name, value) in phone.sign_request("GET", "/device/v1/challenges", b"", unix_now()) {
        request = request.header(name, value);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// Two instances share one PostgreSQL: many responders (approve, deny, replays) race on one
/// challenge through both; exactly one transition and one audit event; a waiter on instance A
/// wakes when the phone answers on instance B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_race_on_one_postgres() {
    let db = Arc::new(TestDatabase::new(Engine::Postgres).await);
    let master = random_master_key();
    // Instances behind one load balancer share one public URL: phones pin it, not an instance.
    let shared = [("COUNTERSIGN_PUBLIC_URL", "http://127.0.0.1:8443")];
    let a = Server::start_with(Arc::clone(&db), master.clone(), &shared).await;
    let b = Server::start_with(Arc::clone(&db), master, &shared).await;
    let key =
        create_app(&a, "portal", "users:read users:write challenges:write challenges:read fatigue:write");
    let client = http();
    // Racing denials and reports move Alice's fatigue ladder (a report quarantines her, which no
    // app key may lift); the operator lifts it between rounds.
    let unfreeze = || {
        let output = b.cli(&["users", "unfreeze", "--user", "alice"]);
        assert!(output.status.success(), "users unfreeze: {}", String::from_utf8_lossy(&output.stderr));
        std::future::ready(())
    };
    let mut phones = Vec::new();
    for (i, server) in [&a, &b].into_iter().enumerate() {
        // The second phone comes from the operator: a recovery enrollment needs no approval.
        let uri = match i {
            0 => new_enrollment(server, &key, "alice", None).await["activation_uri"]
                .as_str()
                .unwrap()
                .to_owned(),
            _ => recovery_enrollment(server, "alice"),
        };
        let mut phone = TestDevice::new();
        let body = phone.enrollment(&uri, PushRegistration::None);
        let reply = client.post(server.url("/device/v1/enroll")).json(&body).send().await.unwrap();
        assert_eq!(reply.status(), 201);
        phone.enrolled = Some(reply.json().await.unwrap());
        phones.push(phone);
    }

    for round in 0..3 {
        unfreeze().await;
        let created = start_challenge(&a, &key, "alice").await;
        let id = created["id"].as_str().unwrap().to_owned();
        let number = created["number"].as_str().unwrap().to_owned();
        let waiter = {
            let url = a.url(&format!("/v1/challenges/{id}?wait=20"));
            let key = key.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let body: Value =
                    http().get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap();
                (body, started.elapsed())
            })
        };
        let pending = signed_pending(&b, &phones[0]).await;
        let details = phones[0].verify_details(&pending.challenges[0]).clone();
        let mut bodies = Vec::new();
        for i in 0..8 {
            let approve = phones[0].answer(&details, Decision::Approve, &number);
            bodies.push(serde_json::to_vec(&approve).unwrap());
            bodies.push(serde_json::to_vec(&approve).unwrap());
            let other =
                phones[1].answer(&details, if i % 2 == 0 { Decision::Deny } else { Decision::Report }, "");
            bodies.push(serde_json::to_vec(&other).unwrap());
        }
        let tasks: Vec<_> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                // Responses land on instance B (and some on A); the waiter listens on A.
                let url = if i % 3 == 0 { a.url("") } else { b.url("") };
                let path = format!("{url}/device/v1/challenges/{id}/response");
                tokio::spawn(async move {
                    http()
                        .post(path)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "round {round}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
        let (body, waited) = waiter.await.unwrap();
        assert_ne!(body["state"], "pending", "the waiter on A saw B's decision");
        assert!(waited < std::time::Duration::from_secs(5), "woken by NOTIFY, not the timeout: {waited:?}");

        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let transitions: i64 = sqlx::query_scalar(
            // Chained or still waiting to be chained: each event is in exactly one of the two.
            "SELECT COUNT(*) FROM (SELECT action, details FROM audit_events
                                   UNION ALL SELECT action, details FROM audit_pending) AS trail
             WHERE action LIKE 'challenge.%' AND action <> 'challenge.created' AND details LIKE $1",
        )
        .bind(format!("%{id}%"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(transitions, 1, "round {round}: exactly one transition event");
    }

    unfreeze().await;
    // The push budget holds across instances: 24 parallel prompts for one user through both
    // instances create exactly 5 challenges (fatigue defence, DESIGN.md).
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let url = if i % 2 == 0 { a.url("/v1/challenges") } else { b.url("/v1/challenges") };
            let key = key.clone();
            tokio::spawn(async move {
                http()
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({ "username": "alice" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 201 || status == 429, "{status}");
        created += usize::from(status == 201);
    }
    // Three rounds above already used three of the five prompts in this window.
    assert_eq!(created, 2, "never more than the budget across two instances");

    let verified = a.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout_of(&verified));
}
