//! End-to-end in real Chromium: the admin dashboard of the real `countersign` binary, on
//! SQLite and PostgreSQL. Two admins bootstrap with passkeys (each browser its own virtual
//! authenticator); a push-bombing of `victim` shows on A's overview through the live feed within
//! 5 s; the phone's "not me" quarantines her; A asks to unfreeze (pending, four eyes); B approves
//! with a fresh passkey assertion; push works again; A asks for a policy change, B rejects it.
//! A second scenario runs the help desk's and the apps page's actions; a third, the admins
//! page's (an invitation through four eyes, last_admins refused, another admin's sessions
//! ended). Screenshots of each page go to `target/admin-screenshots/`; any browser console
//! error fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use countersign_e2e::browser::{Browser, Until};
use countersign_e2e::device::TestDevice;
use countersign_e2e::{Engine, Server, create_app, exec_sql, http, new_enrollment, stdout_of, unix_now};
use countersign_mobile_protocol::{Decision, PendingChallenges, PushRegistration};
use serde_json::{Value, json};

/// How long a page or a ceremony may take (a debug build under a loaded machine).
const PAGE: Duration = Duration::from_secs(15);
/// The promise: the victim is on the overview within 5 s of the attack.
const LIVE: Duration = Duration::from_secs(5);

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/admin-screenshots")
}

/// The browser's origin: the RP ID is `localhost` (plain http is a secure context there).
fn page_url(server: &Server, path: &str) -> String {
    let port = server.base_url.rsplit(':').next().unwrap();
    format!("http://localhost:{port}{path}")
}

/// A one-time token from `countersign admin bootstrap`.
fn bootstrap_token(server: &Server) -> String {
    let created = server.cli(&["admin", "bootstrap"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    stdout_of(&created).trim().to_owned()
}

/// The admin `name` registers a passkey on the bootstrap page and lands on the overview.
async fn bootstrap_admin(server: &Server, browser: &Browser, token: &str, name: &str) {
    browser.open(&page_url(server, "/admin/bootstrap")).await;
    browser.type_into("#token", token).await;
    browser.type_into("#name", name).await;
    browser.click("#start").await;
    browser
        .wait_for(
            Until::Script("return location.pathname === '/admin' && !!document.getElementById('alerts');"),
            PAGE,
        )
        .await;
    let who = browser.text_of(".who").await;
    assert!(who.starts_with(name), "signed in as {name}: {who}");
    assert_eq!(browser.passkeys().await.len(), 1, "one resident passkey in {name}'s authenticator");
}

/// `victim` with an enrolled phone (the test's signing device, no push provider).
async fn enrolled_victim(server: &Server, key: &str) -> TestDevice {
    let enrollment = new_enrollment(server, key, "victim", None).await;
    let mut phone = TestDevice::new();
    let body = phone.enrollment(enrollment["activation_uri"].as_str().unwrap(), PushRegistration::None);
    let reply = http().post(server.url("/device/v1/enroll")).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 201);
    phone.enrolled = Some(reply.json().await.unwrap());
    phone
}

/// A push prompt for `victim` as the IdP sends it: the status.
async fn prompt(server: &Server, key: &str) -> u16 {
    let context = json!({ "ip": "198.51.100.66", "user_agent": "Firefox 140", "location": "Lyon, FR" });
    let reply = http()
        .post(server.url("/v1/challenges"))
        .bearer_auth(key)
        .json(&json!({ "username": "victim", "context": context }))
        .send()
        .await
        .unwrap();
    reply.status().as_u16()
}

/// The phone answers its oldest pending prompt (`number` is what the user typed): the outcome.
async fn answer_oldest(server: &Server, phone: &mut TestDevice, decision: Decision, number: &str) -> Value {
    let mut request = http().get(server.url("/device/v1/challenges"));
    for (name, value) in phone.sign_request("GET", "/device/v1/challenges", b"", unix_now()) {
        request = request.header(name, value);
    }
    let pending: PendingChallenges = request.send().await.unwrap().json().await.unwrap();
    assert!(!pending.challenges.is_empty(), "no prompt on the phone");
    let details = phone.verify_details(&pending.challenges[0]).clone();
    let answer = phone.answer(&details, decision, number);
    let path = format!("/device/v1/challenges/{}/response", details.challenge_id.as_str());
    let reply = http()
        .post(server.url(&path))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&answer).unwrap())
        .send()
        .await
        .unwrap();
    let body: Value = reply.json().await.unwrap();
    body["outcome"].clone()
}

/// The phone's status when it lists its prompts (401 once the device is revoked).
async fn phone_status(server: &Server, phone: &TestDevice) -> u16 {
    let mut request = http().get(server.url("/device/v1/challenges"));
    for (name, value) in phone.sign_request("GET", "/device/v1/challenges", b"", unix_now()) {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// `GET /v1/users/victim` with `key`: the status.
async fn key_status(server: &Server, key: &str) -> u16 {
    http().get(server.url("/v1/users/victim")).bearer_auth(key).send().await.unwrap().status().as_u16()
}

/// A string the page's script computed.
async fn page_text(browser: &Browser, selector: &str) -> String {
    let script = "return document.querySelector(arguments[0]).textContent;";
    serde_json::from_value(browser.eval(script, json!([selector])).await).unwrap()
}

/// The push budget counts a user's prompts in a window (15 minutes): the bombing's prompts
/// are moved out of it, as the passing of time would, so the last step tests the freeze only.
fn age_prompts_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "UPDATE challenges SET created_at = created_at - 3600000000",
        Engine::Postgres => "UPDATE challenges SET created_at = created_at - interval '1 hour'",
    }
}

async fn two_admins_lift_a_not_me_quarantine_in_chromium(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "portal", "users:read users:write challenges:read challenges:write");
    // Both tokens first: the bootstrap works while fewer than two admins are active.
    let tokens = [bootstrap_token(&server), bootstrap_token(&server)];
    let a = Browser::start().await;
    let b = Browser::start().await;
    bootstrap_admin(&server, &a, &tokens[0], "alice").await;
    bootstrap_admin(&server, &b, &tokens[1], "bob").await;
    let mut phone = enrolled_victim(&server, &key).await;

    // A watches the overview, its alert feed open.
    a.open(&page_url(&server, "/admin")).await;
    a.wait_for(Until::Element("#alerts[data-state=live]"), PAGE).await;
    assert!(
        a.eval("return !document.querySelector('#under-attack tr[data-username=victim]');", json!([])).await
            == json!(true)
    );

    // Push bombing: prompts until the budget refuses; the phone reports one as "not me".
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) {
        assert!(statuses.len() < 20, "the budget never refused: {statuses:?}");
        statuses.push(prompt(&server, &key).await);
    }
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(answer_oldest(&server, &mut phone, Decision::Report, "").await, "reported");
    assert_eq!(prompt(&server, &key).await, 423, "quarantined: push frozen");

    a.wait_for(Until::Element("#under-attack tbody tr[data-username=victim]"), LIVE).await;
    a.screenshot(&screenshots().join(format!("overview-{engine:?}.png"))).await;
    a.open(&page_url(&server, "/admin/users")).await;
    a.wait_for(Until::Element("#users tr[data-username=victim]"), PAGE).await;
    a.screenshot(&screenshots().join(format!("users-{engine:?}.png"))).await;

    // A asks to unfreeze: a "not me" quarantine is not one admin's to lift.
    a.open(&page_url(&server, "/admin/users/victim")).await;
    a.wait_for(Until::Element("h1#user[data-username=victim]"), PAGE).await;
    a.click("button[data-action=unfreeze]").await;
    let (state, text) = a.wait_for_state("#action-result", &["pending", "lifted", "failed"]).await;
    assert_eq!(state, "pending", "the page says: {text}");
    let script = "return document.querySelector('#action-result a').getAttribute('href');";
    let href: String = serde_json::from_value(a.eval(script, json!([])).await).unwrap();
    let id = href.rsplit("request-").next().unwrap().to_owned();
    a.screenshot(&screenshots().join(format!("user-{engine:?}.png"))).await;
    assert_eq!(prompt(&server, &key).await, 423, "nothing lifted before a second admin approves");

    // B approves on the requests page, with a fresh passkey assertion.
    b.open(&page_url(&server, "/admin/requests")).await;
    let row = format!("#requests tr[data-request-id='{id}'][data-kind=unfreeze_quarantined]");
    b.wait_for(Until::Element(&row), PAGE).await;
    b.screenshot(&screenshots().join(format!("requests-{engine:?}.png"))).await;
    b.click(&format!("{row} button[data-action=approve]")).await;
    let (state, text) = b.wait_for_state(&row, &["approved", "failed"]).await;
    assert_eq!(state, "approved", "the row says: {text}");

    exec_sql(&server.database, age_prompts_sql(engine)).await.unwrap();
    assert_eq!(prompt(&server, &key).await, 201, "push works again");

    // A asks for a lower push budget on the policy page; B rejects it on the requests page.
    a.open(&page_url(&server, "/admin/policy")).await;
    a.wait_for(Until::Element("form#policy-change input[name=push_budget]"), PAGE).await;
    a.eval("document.querySelector('input[name=push_budget]').value = '3';", json!([])).await;
    a.click("#policy-change button[type=submit]").await;
    let (state, text) = a.wait_for_state("#policy-change .result", &["pending", "failed"]).await;
    assert_eq!(state, "pending", "the policy page says: {text}");
    a.screenshot(&screenshots().join(format!("policy-{engine:?}.png"))).await;
    b.open(&page_url(&server, "/admin/requests")).await;
    let row = "#requests tr[data-kind=fatigue_policy]";
    b.wait_for(Until::Element(row), PAGE).await;
    b.click(&format!("{row} button[data-action=reject]")).await;
    let (state, text) = b.wait_for_state(row, &["rejected", "failed"]).await;
    assert_eq!(state, "rejected", "the row says: {text}");
    let policy = http().get(server.url("/admin/policy")).send().await.unwrap().status();
    assert_eq!(policy, 401, "the policy page needs a session");

    b.open(&page_url(&server, "/admin/audit")).await;
    b.wait_for(Until::Element("main h1"), PAGE).await;
    // "Verify now": the whole trail of this scenario, walked on the server.
    b.click("button[data-action=verify-chain]").await;
    let (state, text) = b.wait_for_state("#chain-result", &["intact", "broken", "failed"]).await;
    assert_eq!(state, "intact", "the chain check says: {text}");
    b.screenshot(&screenshots().join(format!("audit-{engine:?}.png"))).await;

    a.assert_no_console_errors().await;
    b.assert_no_console_errors().await;
    a.quit().await;
    b.quit().await;
}

/// One admin at the help desk and in the apps page, every change with a step-up from the
/// browser's virtual authenticator: verify a caller by number matching (the phone types the
/// number the page shows), issue them a passkey link, revoke their phone; create an app (its key
/// shown once, working at once), revoke it (the key stops working); register an OIDC client and
/// revoke it.
async fn an_admin_verifies_a_caller_revokes_a_phone_and_manages_apps_in_chromium(engine: Engine) {
    let server = Server::start(engine).await;
    let key = create_app(&server, "portal", "users:read users:write challenges:read challenges:write");
    let a = Browser::start().await;
    bootstrap_admin(&server, &a, &bootstrap_token(&server), "alice").await;
    let mut phone = enrolled_victim(&server, &key).await;

    a.open(&page_url(&server, "/admin/users/victim")).await;
    a.wait_for(Until::Element("h1#user[data-username=victim]"), PAGE).await;
    a.click("button[data-action=verify-caller]").await;
    a.wait_for(Until::Element("#verification-result[data-state=pending]"), PAGE).await;
    let number = page_text(&a, "#verification-number").await;
    assert!(
        !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
        "the number to read out: {number:?}"
    );
    assert_eq!(answer_oldest(&server, &mut phone, Decision::Approve, &number).await, "approved");
    let (state, text) =
        a.wait_for_state("#verification-result", &["verified", "wrong_number", "failed"]).await;
    assert_eq!(state, "verified", "the page says: {text}");
    a.click("button[data-action=passkey-link]").await;
    let (state, link) = a.wait_for_state("#passkey-link", &["issued", "failed"]).await;
    assert_eq!(state, "issued", "the page says: {link}");
    assert!(link.starts_with("http") && link.contains("passkey"), "a link to hand over: {link}");
    a.screenshot(&screenshots().join(format!("helpdesk-{engine:?}.png"))).await;

    let device = phone.device_id().as_str().to_owned();
    let row = format!("#devices tr[data-device-id='{device}']");
    a.click(&format!("{row} button[data-action=revoke-device]")).await;
    let (state, text) = a.wait_for_state(&row, &["revoked", "failed"]).await;
    assert_eq!(state, "revoked", "the row says: {text}");
    assert_eq!(phone_status(&server, &phone).await, 401, "the revoked phone is refused");

    a.open(&page_url(&server, "/admin/apps")).await;
    a.wait_for(Until::Element("form#create-app"), PAGE).await;
    a.type_into("#create-app input[name=name]", "wiki-sync").await;
    a.click("#create-app input[value='users:read']").await;
    a.click("#create-app button[type=submit]").await;
    let (state, text) = a.wait_for_state("#create-app .result", &["created", "failed"]).await;
    assert_eq!(state, "created", "the form says: {text}");
    let app_key = page_text(&a, "#create-app .secret .value").await;
    assert_eq!(key_status(&server, &app_key).await, 200, "the new key works at once");

    a.type_into("#create-client input[name=name]", "Wiki").await;
    a.type_into("#create-client textarea[name=redirect_uris]", "https://wiki.example/callback").await;
    a.click("#create-client button[type=submit]").await;
    let (state, text) = a.wait_for_state("#create-client .result", &["created", "failed"]).await;
    assert_eq!(state, "created", "the form says: {text}");
    let client_id = page_text(&a, "#create-client .secret .client-id").await;
    assert!(!page_text(&a, "#create-client .secret .value").await.is_empty(), "its secret, once");

    a.open(&page_url(&server, "/admin/apps")).await;
    let app_row = "#apps tr[data-app=wiki-sync]";
    a.wait_for(Until::Element(app_row), PAGE).await;
    a.screenshot(&screenshots().join(format!("apps-{engine:?}.png"))).await;
    a.click(&format!("{app_row} button[data-action=revoke-app]")).await;
    let (state, text) = a.wait_for_state(app_row, &["revoked", "failed"]).await;
    assert_eq!(state, "revoked", "the row says: {text}");
    assert_eq!(key_status(&server, &app_key).await, 401, "the revoked key is refused");
    let client_row = format!("#clients tr[data-client-id='{client_id}']");
    a.click(&format!("{client_row} button[data-action=revoke-client]")).await;
    let (state, text) = a.wait_for_state(&client_row, &["revoked", "failed"]).await;
    assert_eq!(state, "revoked", "the row says: {text}");

    let listed = server.cli(&["clients", "list"]);
    let listed = stdout_of(&listed);
    let line = listed.lines().find(|l| l.contains(&client_id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("revoked"), "the client is revoked: {line}");

    a.assert_no_console_errors().await;
    a.quit().await;
}

/// The id of the roster row on the admins page whose name cell reads `name`.
async fn admin_row_id(browser: &Browser, name: &str) -> String {
    let script = "return Array.from(document.querySelectorAll('#admins tbody tr[data-admin-id]'))
        .find((row) => row.cells[0].firstChild.textContent.trim() === arguments[0])?.dataset.adminId ?? null;";
    let id = browser.eval(script, json!([name])).await;
    id.as_str().unwrap_or_else(|| panic!("no roster row for {name}: {id}")).to_owned()
}

/// The admins page with two bootstrapped admins: A invites "carol" (help desk) from the page,
/// which files a four-eyes request; B approves it on the requests page and is shown carol's
/// one-time invitation link; carol is listed as invited. A then asks to remove B: refused on
/// the page (409 `last_admins`), since only two admins are active.
async fn two_admins_invite_a_third_and_cannot_remove_each_other_in_chromium(engine: Engine) {
    let server = Server::start(engine).await;
    let tokens = [bootstrap_token(&server), bootstrap_token(&server)];
    let a = Browser::start().await;
    let b = Browser::start().await;
    bootstrap_admin(&server, &a, &tokens[0], "alice").await;
    bootstrap_admin(&server, &b, &tokens[1], "bob").await;

    a.open(&page_url(&server, "/admin/admins")).await;
    a.wait_for(Until::Element("form#invite-admin"), PAGE).await;
    a.type_into("#invite-admin input[name=name]", "carol").await;
    a.click("#invite-admin select[name=role] option[value=helpdesk]").await;
    a.click("#invite-admin button[type=submit]").await;
    let (state, text) = a.wait_for_state("#invite-admin .result", &["pending", "failed"]).await;
    assert_eq!(state, "pending", "the form says: {text}");
    let script = "return document.querySelector('#invite-admin .result a').getAttribute('href');";
    let href: String = serde_json::from_value(a.eval(script, json!([])).await).unwrap();
    let id = href.strip_prefix("/admin/requests#request-").unwrap_or_else(|| panic!("{href}")).to_owned();

    b.open(&page_url(&server, "/admin/requests")).await;
    let row = format!("#requests tr[data-request-id='{id}'][data-kind=grant_role]");
    b.wait_for(Until::Element(&row), PAGE).await;
    b.click(&format!("{row} button[data-action=approve]")).await;
    let (state, text) = b.wait_for_state(&row, &["approved", "failed"]).await;
    assert_eq!(state, "approved", "the row says: {text}");
    assert!(text.contains("/admin/invite?token="), "the invitation link, shown to the approver: {text}");

    a.open(&page_url(&server, "/admin/admins")).await;
    a.wait_for(Until::Element("#admins tbody tr[data-status=invited]"), PAGE).await;
    let carol = admin_row_id(&a, "carol").await;
    let carol_row = format!("#admins tr[data-admin-id='{carol}']");
    assert!(page_text(&a, &carol_row).await.contains("helpdesk"), "carol is help desk");
    let bob = admin_row_id(&a, "bob").await;
    let bob_row = format!("#admins tr[data-admin-id='{bob}']");
    a.click(&format!("{bob_row} button[data-action=remove-admin]")).await;
    let outcome = format!("{bob_row} .outcome");
    let (state, text) = a.wait_for_state(&outcome, &["pending", "failed"]).await;
    assert_eq!(state, "failed", "the row says: {text}");
    assert!(text.contains("at least 2 must remain"), "last_admins, as the API says it: {text}");
    a.screenshot(&screenshots().join(format!("admins-{engine:?}.png"))).await;
    // The 409 is refused on purpose, which Chromium logs as a failed load: that error only.
    let errors = a.take_console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("/remove") && errors[0].contains("409"), "{errors:#?}");

    // B's session is presumed stolen: A ends it (with a passkey); B's next page is signed out.
    a.click(&format!("{bob_row} button[data-action=end-sessions]")).await;
    let (state, text) = a.wait_for_state(&outcome, &["ended", "failed"]).await;
    assert_eq!(state, "ended", "the row says: {text}");
    b.open(&page_url(&server, "/admin")).await;
    b.wait_for(Until::Element("#error[data-code]"), PAGE).await;
    let code = b.eval("return document.getElementById('error').dataset.code;", json!([])).await;
    assert_eq!(code, json!("admin_session_expired"), "B is signed out");
    let errors = b.take_console_errors().await;
    assert!(errors.iter().all(|e| e.contains("401")), "only the signed-out page's status: {errors:#?}");

    a.assert_no_console_errors().await;
    b.assert_no_console_errors().await;
    a.quit().await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_admin_verifies_a_caller_revokes_a_phone_and_manages_apps_in_chromium() {
    an_admin_verifies_a_caller_revokes_a_phone_and_manages_apps_in_chromium(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_admin_verifies_a_caller_revokes_a_phone_and_manages_apps_in_chromium() {
    an_admin_verifies_a_caller_revokes_a_phone_and_manages_apps_in_chromium(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_admins_lift_a_not_me_quarantine_in_chromium() {
    two_admins_lift_a_not_me_quarantine_in_chromium(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_admins_lift_a_not_me_quarantine_in_chromium() {
    two_admins_lift_a_not_me_quarantine_in_chromium(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_admins_invite_a_third_and_cannot_remove_each_other_in_chromium() {
    two_admins_invite_a_third_and_cannot_remove_each_other_in_chromium(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_admins_invite_a_third_and_cannot_remove_each_other_in_chromium() {
    two_admins_invite_a_third_and_cannot_remove_each_other_in_chromium(Engine::Postgres).await;
}
