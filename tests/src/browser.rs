//! A real browser for the hosted pages: Debian's Chromium, headless, driven by ChromeDriver over
//! the W3C WebDriver HTTP API (plain JSON over loopback, with the crate's `reqwest`), with
//! WebDriver's virtual authenticator standing in for a platform passkey.
//!
//! Each [`Browser`] has its own ChromeDriver, profile and authenticator, so several may run at
//! once (two admins, four eyes). Every page's console is recorded: a test ends with
//! [`Browser::assert_no_console_errors`], which fails on any `SEVERE` entry (an uncaught
//! error, `console.error`, a Content Security Policy violation, a failed request). Pages of
//! the test's own (a relying party's callback, a page that breaks a rule) come from
//! [`serve_pages`] on a loopback port.
//!
//! Chromium and ChromeDriver are a test prerequisite like PostgreSQL: without them (Debian
//! packages `chromium` and `chromium-driver`) the browser tests fail with a message saying so.
//! `CS_TEST_CHROMIUM` and `CS_TEST_CHROMEDRIVER` may name other binaries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The key WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a page's script may take to finish a ceremony.
const SCRIPT_TIMEOUT_MS: u64 = 30_000;

/// The window's size: large enough for a dashboard in a screenshot.
const WINDOW_SIZE: &str = "--window-size=1280,900";

/// A binary the browser tests need, from the environment variable or the `PATH`; a clear
/// failure naming the Debian packages if it is missing.
fn prerequisite(env: &str, name: &str) -> PathBuf {
    let named = std::env::var_os(env).map(PathBuf::from);
    let found = named.clone().filter(|path| path.is_file()).or_else(|| {
        let path = std::env::var_os("PATH").filter(|_| named.is_none())?;
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        let looked = named
            .map_or_else(|| "not on the PATH".to_owned(), |p| format!("{env}={}: no such file", p.display()));
        panic!(
            "`{name}` not found ({looked}): the browser tests need Chromium and ChromeDriver \
             (Debian: apt-get install chromium chromium-driver), or {env} naming the binary. \
             They are never skipped."
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

/// What [`Browser::wait_for`] waits for.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// An element the CSS selector names is in the document.
    Element(&'a str),
    /// A script (a function body, no arguments) returns a truthy value.
    Script(&'a str),
}

impl<'a> From<&'a str> for Until<'a> {
    fn from(selector: &'a str) -> Self {
        Self::Element(selector)
    }
}

/// A headless Chromium session with a fresh profile and a virtual authenticator (CTAP2,
/// platform, resident keys, user verification that succeeds), its browser log recorded.
/// Closed on [`Browser::quit`]; the driver (and so the browser) dies on drop in any case.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    authenticator: String,
    /// The browser log read so far: ChromeDriver hands out each entry once.
    log: Mutex<Vec<Value>>,
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new browser: its own ChromeDriver, Chromium, profile and authenticator, so two at once
    /// share no cookie, storage or passkey.
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
            WINDOW_SIZE.to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let created =
            send(&http, reqwest::Method::POST, &format!("{}/session", driver.url), Some(&capabilities)).await;
        let session = created["sessionId"].as_str().unwrap().to_owned();
        let mut browser = Self {
            http,
            session,
            authenticator: String::new(),
            log: Mutex::new(Vec::new()),
            driver,
            _profile: profile,
        };
        browser.command("timeouts", json!({ "script": SCRIPT_TIMEOUT_MS })).await;
        let authenticator = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
        });
        let id = browser.command("webauthn/authenticator", authenticator).await;
        browser.authenticator = id.as_str().unwrap_or_else(|| panic!("authenticator id: {id}")).to_owned();
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.driver.url, self.session)
    }

    /// `POST /session/{id}/{path}` with `body`: the command's value.
    async fn command(&self, path: &str, body: Value) -> Value {
        send(&self.http, reqwest::Method::POST, &self.url(path), Some(&body)).await
    }

    /// `GET /session/{id}/{path}`: the command's value.
    async fn query(&self, path: &str) -> Value {
        send(&self.http, reqwest::Method::GET, &self.url(path), None).await
    }

    pub async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// The WebDriver reference of the element `selector` names (the first one).
    async fn element(&self, selector: &str) -> String {
        let found = self.command("element", json!({ "using": "css selector", "value": selector })).await;
        found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("{selector}: {found}")).to_owned()
    }

    /// Clicks the element `selector` names, as a user would.
    pub async fn click(&self, selector: &str) {
        let element = self.element(selector).await;
        self.command(&format!("element/{element}/click"), json!({})).await;
    }

    /// Types `text` into the element `selector` names, key by key as a user would (after what
    /// it holds already).
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        self.command(&format!("element/{element}/value"), json!({ "text": text })).await;
    }

    /// The text of the element `selector` names, as rendered (what a user reads).
    pub async fn text_of(&self, selector: &str) -> String {
        let element = self.element(selector).await;
        let text = self.query(&format!("element/{element}/text")).await;
        text.as_str().unwrap_or_else(|| panic!("{selector}: {text}")).to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page: its return value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command("execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Waits until `until` holds, at most `timeout`; fails the test with the page's address
    /// and text if it does not.
    pub async fn wait_for(&self, until: impl Into<Until<'_>>, timeout: Duration) {
        let until = until.into();
        if !self.holds_within(until, timeout).await {
            let page = self.eval("return [location.href, document.body?.innerText];", json!([])).await;
            panic!("{until:?} did not happen within {timeout:?}; the page: {page}");
        }
    }

    /// Whether `until` holds within `timeout`. The page checks on each change to its document
    /// and every 50 ms (for a script's condition that no mutation signals); a navigation on the
    /// way (the page says so on `pagehide`) starts the check again on the new page.
    pub async fn holds_within(&self, until: Until<'_>, timeout: Duration) -> bool {
        let (condition, what) = match until {
            Until::Element(selector) => ("return document.querySelector(what) !== null;", selector),
            Until::Script(script) => (script, ""),
        };
        let script = format!(
            r"
            const [what, ms, done] = arguments;
            const met = () => {{ {condition} }};
            let observer, timer, interval;
            const finish = (value) => {{
                observer?.disconnect(); clearTimeout(timer); clearInterval(interval); done(value);
            }};
            const check = () => {{ if (met()) finish(true); }};
            if (met()) {{ done(true); return; }}
            // A page going away cannot answer later: it says so, and the next page is checked.
            addEventListener('pagehide', () => finish('gone'), {{ once: true }});
            observer = new MutationObserver(check);
            observer.observe(document, {{ attributes: true, childList: true, subtree: true, characterData: true }});
            interval = setInterval(check, 50);
            timer = setTimeout(() => finish(false), ms);"
        );
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // One in-page wait stays within the session's script timeout.
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).min(SCRIPT_TIMEOUT_MS - 5_000);
            let body = json!({ "script": script, "args": [what, ms] });
            match try_send(&self.http, reqwest::Method::POST, &self.url("execute/async"), Some(&body)).await {
                Ok(Value::Bool(true)) => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) => {}
                // The page went away under the check (a navigation): check the next one.
                Err(e)
                    if ["unloaded", "detached", "context", "script timeout"]
                        .iter()
                        .any(|m| e.contains(m)) =>
                {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
                Err(e) => panic!("waiting for {until:?}: {e}"),
            }
        }
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

    /// Saves what the window shows (the viewport) as a PNG file at `path`, making its
    /// directory if needed.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.query("screenshot").await;
        let png = STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// The cookies the browser holds for the page's address (WebDriver's view: `HttpOnly` ones
    /// included, with their attributes).
    pub async fn cookies(&self) -> Vec<Value> {
        let cookies = self.query("cookie").await;
        cookies.as_array().unwrap_or_else(|| panic!("cookies: {cookies}")).clone()
    }

    /// The passkeys this browser's virtual authenticator holds.
    pub async fn passkeys(&self) -> Vec<Value> {
        let path = format!("webauthn/authenticator/{}/credentials", self.authenticator);
        let credentials = self.query(&path).await;
        credentials.as_array().unwrap_or_else(|| panic!("credentials: {credentials}")).clone()
    }

    /// Every `SEVERE` entry of the browser log since the session began (or the last
    /// [`Browser::take_console_errors`]), on any page it opened: uncaught errors,
    /// `console.error`, Content Security Policy violations, failed requests (a page answered
    /// with a 4xx status included). Each reads `[source] message`.
    pub async fn console_errors(&self) -> Vec<String> {
        self.read_log(false).await
    }

    /// [`Browser::console_errors`], forgotten once returned: for a test that opens a page
    /// which fails on purpose (a used link's 410) to assert exactly the errors it expects.
    pub async fn take_console_errors(&self) -> Vec<String> {
        self.read_log(true).await
    }

    async fn read_log(&self, forget: bool) -> Vec<String> {
        // ChromeDriver's (pre-W3C) log endpoint, which it still serves in W3C mode; the
        // entries it returns are gone from it.
        let read = self.command("se/log", json!({ "type": "browser" })).await;
        let read = read.as_array().unwrap_or_else(|| panic!("browser log: {read}")).clone();
        let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.extend(read);
        let severe = log.iter().filter(|entry| entry["level"] == "SEVERE");
        let errors =
            severe.map(|entry| format!("[{}] {}", text(&entry["source"]), text(&entry["message"]))).collect();
        if forget {
            log.clear();
        }
        errors
    }

    /// Fails the test, listing them, if the browser logged any error (see
    /// [`Browser::console_errors`]).
    pub async fn assert_no_console_errors(&self) {
        let errors = self.console_errors().await;
        assert!(
            errors.is_empty(),
            "the browser console has {} error(s):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }

    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.driver.url, self.session);
        send(&self.http, reqwest::Method::DELETE, &url, None).await;
    }
}

/// What [`serve_pages`] answers a request with.
#[derive(Debug, Clone)]
pub struct Page {
    /// `200 OK`, `404 Not Found`, …
    pub status: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: String,
    /// HTML.
    pub body: String,
}

/// Serves pages to the browser on a loopback port (HTTP/1.1, one request per connection):
/// `answer` gives the page for each request target (`/path?query`). Its base URL.
pub async fn serve_pages(answer: impl Fn(&str) -> Page + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Page { status, headers, body } = answer(head.split(' ').nth(1).unwrap_or_default());
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    base
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// A WebDriver request; a WebDriver error (`value.error`) fails the test with its message.
async fn send(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<&Value>) -> Value {
    try_send(http, method, url, body).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A WebDriver request: its value, or the WebDriver error (`value.error`) as a message.
async fn try_send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let reply = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() && value.get("error").is_none() {
        return Ok(value);
    }
    let error = text(&value["error"]);
    Err(format!("WebDriver {url} answered {status}: {error}: {}", text(&value["message"])))
}
