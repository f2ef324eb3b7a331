//! A real browser for the hosted pages: Debian's Chromium, headless, driven by ChromeDriver over
//! the W3C WebDriver HTTP API (plain JSON over loopback, with the crate's `reqwest`), with
//! WebDriver's virtual authenticator standing in for a platform passkey.
//!
//! Chromium and ChromeDriver are a test prerequisite like PostgreSQL: without them (Debian
//! packages `chromium` and `chromium-driver`) the browser tests fail with a message saying so.
//! `CS_TEST_CHROMIUM` and `CS_TEST_CHROMEDRIVER` may name other binaries.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The key WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a page's script may take to finish a ceremony.
const SCRIPT_TIMEOUT_MS: u64 = 30_000;

/// A binary the browser tests need, from the environment variable or the `PATH`.
fn prerequisite(env: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found: the browser tests need Chromium and ChromeDriver (Debian: \
             apt-get install chromium chromium-driver), or {env} naming the binary. They are \
             never skipped."
        )
    })
}

/// ChromeDriver on a loopback port it picks, in a process group of its own with the browsers it
/// starts: the whole group is killed on drop, so a failing test leaves no browser behind.
#[derive(Debug)]
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let program = prerequisite("CS_TEST_CHROMEDRIVER", "chromedriver");
        let mut command = Command::new(&program);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = Some(rest.trim_end_matches('.').to_owned());
                break;
            }
        }
        let port =
            port.unwrap_or_else(|| panic!("{} did not say which port it listens on", program.display()));
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile and a virtual authenticator (CTAP2,
/// platform, resident keys, user verification that succeeds). Closed on [`Browser::quit`];
/// the driver (and so the browser) dies on drop in any case.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = prerequisite("CS_TEST_CHROMIUM", "chromium");
        let driver = Driver::start();
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let created =
            send(&http, reqwest::Method::POST, &format!("{}/session", driver.url), &capabilities).await;
        let session = created["sessionId"].as_str().unwrap().to_owned();
        let browser = Self { http, session, driver, _profile: profile };
        browser.command("timeouts", json!({ "script": SCRIPT_TIMEOUT_MS })).await;
        let authenticator = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
        });
        browser.command("webauthn/authenticator", authenticator).await;
        browser
    }

    /// `POST /session/{id}/{path}` with `body`: the command's value.
    async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.driver.url, self.session);
        send(&self.http, reqwest::Method::POST, &url, &body).await
    }

    pub async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// Clicks the element `selector` names, as a user would.
    pub async fn click(&self, selector: &str) {
        let found = self.command("element", json!({ "using": "css selector", "value": selector })).await;
        let element = found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("{selector}: {found}"));
        self.command(&format!("element/{element}/click"), json!({})).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page: its return value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command("execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Waits (without polling: a mutation observer in the page) until the element `selector`
    /// names has a `data-state` in `states`; returns (state, text).
    pub async fn wait_for_state(&self, selector: &str, states: &[&str]) -> (String, String) {
        let script = r"
            const [selector, states, done] = arguments;
            const element = document.querySelector(selector);
            const check = () => {
                if (states.includes(element.dataset.state)) {
                    done([element.dataset.state, element.textContent]);
                    return true;
                }
                return false;
            };
            if (!check()) {
                new MutationObserver(check).observe(element, { attributes: true, childList: true, subtree: true });
            }";
        let value =
            self.command("execute/async", json!({ "script": script, "args": [selector, states] })).await;
        let text = |i: usize| value[i].as_str().unwrap_or_else(|| panic!("{selector}: {value}")).to_owned();
        (text(0), text(1))
    }

    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.driver.url, self.session);
        send(&self.http, reqwest::Method::DELETE, &url, &json!({})).await;
    }
}

/// A WebDriver request; a WebDriver error (`value.error`) fails the test with its message.
async fn send(http: &reqwest::Client, method: reqwest::Method, url: &str, body: &Value) -> Value {
    let reply = http.request(method, url).json(body).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    assert!(
        status.is_success() && value.get("error").is_none(),
        "WebDriver {url} answered {status}: {}",
        value.get("message").and_then(Value::as_str).unwrap_or_default()
    );
    value
}
