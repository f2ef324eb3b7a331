//! The browser harness itself (tests/src/browser.rs), in real Chromium: screenshots, the
//! console check, two browsers at once, typing, reading and waiting. Pages come from a small
//! loopback server here (headers and scripts chosen per page) and from the real `countersign`
//! binary's hosted pages; the harness does not depend on the database engine, so the hosted
//! pages run on SQLite only (tests/tests/browser.rs runs them on both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use countersign_e2e::browser::{Browser, Page, Until, serve_pages};
use countersign_e2e::{Engine, Server, create_app, http};
use serde_json::{Value, json};

/// The loopback pages: (extra headers, body) for a request target; `None` is a 404. Each names
/// an empty icon: Chromium would otherwise ask for `/favicon.ico` and log its 404 as an error.
fn page(target: &str) -> Option<(&'static str, String)> {
    let path = target.split('?').next().unwrap_or_default();
    let html = |body: &str| {
        format!(
            "<!doctype html><html><head><title>Harness</title><link rel=icon href='data:,'></head><body>{body}</body></html>"
        )
    };
    Some(match path {
        "/plain" => ("", html("<h1 id='plain'>Plain</h1>")),
        "/console" => ("", html("<script>console.error('harness: boom')</script>")),
        // The hosted pages' rule: no inline script. This page breaks it.
        "/csp" => (
            "Content-Security-Policy: script-src 'self'\r\n",
            html("<script>document.title = 'ran'</script>"),
        ),
        "/cookie" => {
            ("Set-Cookie: harness=one; Path=/; HttpOnly; SameSite=Strict\r\n", html("<p>cookie set</p>"))
        }
        "/form" => {
            ("", html("<form action='/echo'><input id='q' name='q'><button id='go'>Go</button></form>"))
        }
        "/echo" => ("", html(&format!("<p id='echoed'>{target}</p>"))),
        // Navigates on its own a moment after it loads, as a page's script would.
        "/later" => ("", html("<script>setTimeout(() => location.assign('/arrived'), 300)</script>")),
        "/arrived" => ("", html("<h1 id='arrived'>Arrived</h1>")),
        _ => return None,
    })
}

/// Serves [`page`] on a loopback port: its base URL.
async fn loopback_pages() -> String {
    serve_pages(|target| match page(target) {
        Some((headers, body)) => Page { status: "200 OK", headers: headers.to_owned(), body },
        None => Page { status: "404 Not Found", headers: String::new(), body: String::new() },
    })
    .await
}

/// An enrollment link for a new user `username` on the hosted pages (through `localhost`,
/// the passkeys' origin).
async fn enrollment_link(server: &Server, key: &str, username: &str) -> String {
    let client = http();
    let created =
        client.post(server.url("/v1/users")).bearer_auth(key).json(&json!({ "username": username }));
    assert_eq!(created.send().await.unwrap().status(), 201);
    let path = format!("/v1/users/{username}/passkeys/enrollment-links");
    let link = client.post(server.url(&path)).bearer_auth(key).json(&json!({ "name": "Chromium" }));
    let link = link.send().await.unwrap();
    assert_eq!(link.status(), 201);
    let link: Value = link.json().await.unwrap();
    link["url"].as_str().unwrap().to_owned()
}

/// The width and height a PNG's header declares, after checking its signature, that the
/// first chunk is a 13-byte `IHDR` and that it ends with `IEND`.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 33, "{} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the PNG signature");
    assert_eq!(&png[8..16], b"\0\0\0\x0dIHDR", "the first chunk is IHDR");
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND", "the last chunk is IEND");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_is_a_png_of_the_viewport() {
    let pages = loopback_pages().await;
    let browser = Browser::start().await;
    browser.open(&format!("{pages}/plain")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shots/plain.png");
    browser.screenshot(&path).await;
    let png = std::fs::read(&path).unwrap();
    let viewport = browser
        .eval("return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio];", json!([]))
        .await;
    let (width, height) = png_size(&png);
    assert_eq!(json!([width, height]), viewport, "the PNG is the viewport");
    assert!(width >= 1000 && height >= 600, "a window large enough for a dashboard: {width}x{height}");
    browser.assert_no_console_errors().await;
    browser.quit().await;
}

/// `console.error` and a Content Security Policy violation (an inline script under
/// `script-src 'self'`) are console errors; the check lists them and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_errors_and_csp_violations_fail_the_console_check() {
    let pages = loopback_pages().await;
    let browser = Browser::start().await;
    browser.open(&format!("{pages}/plain")).await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new(), "a plain page logs nothing");

    browser.open(&format!("{pages}/console")).await;
    let errors = browser.console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("harness: boom"), "{errors:#?}");

    browser.open(&format!("{pages}/csp")).await;
    assert_eq!(browser.eval("return document.title;", json!([])).await, "Harness", "the script was refused");
    let errors = browser.console_errors().await;
    assert_eq!(errors.len(), 2, "the earlier error is kept: {errors:#?}");
    assert!(errors[1].contains("Content Security Policy"), "{errors:#?}");

    // Taken, they are gone; the next error is recorded again.
    assert_eq!(browser.take_console_errors().await.len(), 2);
    assert!(browser.console_errors().await.is_empty());
    browser.open(&format!("{pages}/console")).await;

    let checked = tokio::spawn(async move { browser.assert_no_console_errors().await }).await;
    let panic = checked.expect_err("the console check fails").into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("1 error(s)") && message.contains("harness: boom"), "{message}");
}

/// A hosted page (passkey enrollment, the ceremony run) logs no error; a script's
/// `console.error` on the same page is caught, so the silence is not a blind spot. The page's
/// texts are read as rendered, and the ceremony's end is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_page_runs_without_console_errors_and_reads_as_rendered() {
    let server = Server::start(Engine::Sqlite).await;
    let key = create_app(&server, "portal", "users:read users:write");
    let browser = Browser::start().await;
    browser.open(&enrollment_link(&server, &key, "alice").await).await;
    assert_eq!(browser.text_of("h1").await, "Add a passkey");
    assert_eq!(browser.text_of("#status").await, "", "nothing said yet");
    browser.click("#start").await;
    browser.wait_for("#status[data-state=done]", Duration::from_secs(20)).await;
    assert_eq!(browser.text_of("#status").await, "Your passkey is registered. You can close this page.");
    browser.assert_no_console_errors().await;

    browser.eval("console.error('harness: on a hosted page');", json!([])).await;
    let errors = browser.console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("harness: on a hosted page"), "{errors:#?}");
    browser.quit().await;
}

/// Two browsers at once share nothing: a cookie set in one is not in the other, and a passkey
/// created in one is only in its own authenticator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_have_their_own_cookies_and_passkeys() {
    let pages = loopback_pages().await;
    let server = Server::start(Engine::Sqlite).await;
    let key = create_app(&server, "portal", "users:read users:write");
    let (first, second) = tokio::join!(Browser::start(), Browser::start());

    first.open(&format!("{pages}/cookie")).await;
    second.open(&format!("{pages}/plain")).await;
    let names = |cookies: Vec<Value>| cookies.iter().map(|c| c["name"].clone()).collect::<Vec<_>>();
    let set = first.cookies().await;
    assert_eq!(names(set.clone()), vec![json!("harness")], "{set:?}");
    assert_eq!(set[0]["httpOnly"], true, "WebDriver sees HttpOnly cookies and their attributes");
    assert_eq!(names(second.cookies().await), Vec::<Value>::new(), "the second browser has no cookie");

    first.open(&enrollment_link(&server, &key, "alice").await).await;
    second.open(&enrollment_link(&server, &key, "bob").await).await;
    first.click("#start").await;
    first.wait_for("#status[data-state=done]", Duration::from_secs(20)).await;
    assert_eq!(first.passkeys().await.len(), 1);
    assert_eq!(second.passkeys().await.len(), 0, "the first browser's passkey is its own");
    second.click("#start").await;
    second.wait_for("#status[data-state=done]", Duration::from_secs(20)).await;
    let (a, b) = (first.passkeys().await, second.passkeys().await);
    assert!(a.len() == 1 && b.len() == 1 && a[0]["credentialId"] != b[0]["credentialId"], "{a:?} {b:?}");

    first.assert_no_console_errors().await;
    second.assert_no_console_errors().await;
    tokio::join!(first.quit(), second.quit());
}

/// Typed text reaches the server through a real form; `wait_for` follows a page that
/// navigates by itself, waits on a script's condition, and gives up at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reading_and_waiting() {
    let pages = loopback_pages().await;
    let browser = Browser::start().await;
    browser.open(&format!("{pages}/form")).await;
    browser.type_into("#q", "hello").await;
    browser.type_into("#q", " world").await;
    browser.click("#go").await;
    browser.wait_for("#echoed", Duration::from_secs(10)).await;
    assert_eq!(browser.text_of("#echoed").await, "/echo?q=hello+world");

    browser.open(&format!("{pages}/later")).await;
    assert!(!browser.holds_within(Until::Element("#arrived"), Duration::ZERO).await, "not there yet");
    browser.wait_for("#arrived", Duration::from_secs(10)).await;
    browser.wait_for(Until::Script("return location.pathname === '/arrived';"), Duration::from_secs(1)).await;

    let started = Instant::now();
    let never = browser.holds_within(Until::Element("#never"), Duration::from_millis(500)).await;
    assert!(!never, "no such element");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(10), "{waited:?}");
    assert!(!browser.holds_within(Until::Script("return false;"), Duration::from_millis(200)).await);
    browser.assert_no_console_errors().await;
    browser.quit().await;
}
