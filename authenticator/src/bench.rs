//! `countersign-bench`: a load generator that runs full push flows against a running server,
//! each with a simulated phone of its own.
//!
//! Setup (not timed): one user per simulated phone, each enrolled exactly as a phone would with
//! `countersign-mobile-protocol` (push `none`, so the phone polls). Each worker owns its users: a
//! new challenge cancels the user's pending one, so concurrent flows never share a user.
//!
//! One flow, timed: create (`POST /v1/challenges`) → the app's long-poll starts
//! (`GET /v1/challenges/{id}?wait=10`, its own task) → device fetch (signed
//! `GET /device/v1/challenges`, details verified) → signed approve → the long-poll returns
//! `approved` → redeem. Step times are HTTP round trips (signing and verifying happen outside
//! them); wake-up is from the approve response arriving to the long-poll returning. Any non-2xx
//! answer or unexpected state ends the flow and is counted under its step; nothing is retried.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks to its terminal

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use countersign_mobile_protocol::{
    ChallengeAnswer, ChallengeOutcome, ChallengeResponseResult, Decision, Enrollment, EnrollmentResponse,
    EnrollmentUri, ErrorBody, HttpRequest, PendingChallenges, PublicKey, PushRegistration, RequestHeaders,
    generate_pkcs8, key_pair_from_pkcs8,
};
use reqwest::{Client, Method, RequestBuilder};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

/// Load-test a running Countersign server: N concurrent full flows with simulated phones; prints
/// flows/s and latency percentiles. Exits 1 if any flow failed, 2 if setup failed.
#[derive(Debug, clap::Parser)]
#[command(name = "countersign-bench", version)]
pub struct BenchArgs {
    /// Base URL of the running server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// Base URL the simulated phones fetch and answer through [default: --url]. Point it at a
    /// second instance sharing the database to measure cross-instance wake-ups.
    #[arg(long)]
    device_url: Option<String>,
    /// App API key with scopes users:write challenges:write challenges:read.
    #[arg(long, env = "COUNTERSIGN_BENCH_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Users to create, each with one simulated phone; at least the concurrency [default: enough
    /// for at most 4 flows per user, within the fatigue budget].
    #[arg(long)]
    users: Option<usize>,
    /// Flows in flight at once (one worker each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Flows to run in total.
    #[arg(long, default_value_t = 2000)]
    flows: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the bench and prints its report. Exit 0 when every flow succeeded, 1 when some failed
/// (the report says which step and status), 2 (as an error) when setup fails.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 || args.flows == 0 {
        bail!("--concurrency and --flows must be at least 1");
    }
    // Each worker runs a fixed share of the flows with its own users, round-robin. The fatigue
    // defence allows 5 prompts per user per 15 minutes: by default every worker gets enough users
    // for at most 4 flows each, so the bench measures the flow and not the budget.
    let quotas: Vec<usize> = (0..args.concurrency)
        .map(|i| args.flows / args.concurrency + usize::from(i < args.flows % args.concurrency))
        .collect();
    let most = quotas.iter().copied().max().unwrap_or(0);
    let users = args.users.unwrap_or_else(|| args.concurrency * most.div_ceil(4).max(1));
    if users < args.concurrency {
        bail!(
            "--users ({users}) must be at least --concurrency ({}): flows never share a user",
            args.concurrency
        );
    }
    let client = Client::builder()
        .pool_max_idle_per_host(2 * args.concurrency + 8) // a step and a long-poll per flow
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ctx = Arc::new(Ctx {
        client,
        base: args.url.trim_end_matches('/').to_owned(),
        device_base: args.device_url.as_deref().unwrap_or(&args.url).trim_end_matches('/').to_owned(),
        api_key: args.api_key,
        rng: SystemRandom::new(),
    });

    // Users of earlier runs stay on the server: each run names its own.
    let run_id: [u8; 4] =
        ring::rand::generate(&ctx.rng).map_err(|_| anyhow::anyhow!("no randomness"))?.expose();
    let run_id: String = run_id.iter().map(|b| format!("{b:02x}")).collect();
    let phones = setup(&ctx, &run_id, users, args.concurrency).await?;
    let mut owned: Vec<Vec<Phone>> = (0..args.concurrency).map(|_| Vec::new()).collect();
    for (i, phone) in phones.into_iter().enumerate() {
        if let Some(list) = owned.get_mut(i % args.concurrency) {
            list.push(phone);
        }
    }

    let started = Instant::now();
    let workers: Vec<_> = owned
        .into_iter()
        .zip(quotas)
        .map(|(phones, quota)| tokio::spawn(worker(Arc::clone(&ctx), phones, quota)))
        .collect();
    let mut samples = Samples::default();
    for handle in workers {
        samples.merge(handle.await.context("a bench worker failed")?);
    }
    let wall = started.elapsed();

    let report = Report::new(&samples, wall, args.concurrency, users);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print(&ctx.base);
    }
    Ok(if samples.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Debug)]
struct Ctx {
    client: Client,
    base: String,
    /// Where phones fetch and answer (another instance, for cross-instance wake-ups).
    device_base: String,
    api_key: String,
    rng: SystemRandom,
}

impl Ctx {
    /// A request to the app API (`/v1/...`) with the API key.
    fn app(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.api_key)
    }
}

/// A simulated phone enrolled for one user.
#[derive(Debug)]
struct Phone {
    username: String,
    /// The simulated client address of this user's sign-ins: users spread over many /24s, as
    /// real traffic is, so the push-spray defence does not throttle the bench itself.
    client_ip: String,
    key_pair: EcdsaKeyPair,
    enrolled: EnrollmentResponse,
    /// The last challenge-response counter sent; strictly increasing per device.
    counter: u64,
}

#[derive(Debug, Deserialize)]
struct EnrollmentView {
    activation_uri: String,
}

async fn setup(ctx: &Arc<Ctx>, run_id: &str, users: usize, batch: usize) -> anyhow::Result<Vec<Phone>> {
    let mut phones = Vec::with_capacity(users);
    for first in (0..users).step_by(batch) {
        let mut tasks = JoinSet::new();
        for i in first..(first + batch).min(users) {
            let ctx = Arc::clone(ctx);
            let username = format!("bench-{run_id}-{i}");
            let client_ip = format!("100.64.{}.{}", i % 256, 1 + (i / 256) % 250);
            tasks.spawn(async move { enroll(&ctx, username, client_ip).await });
        }
        while let Some(phone) = tasks.join_next().await {
            phones.push(phone??);
        }
    }
    Ok(phones)
}

/// Creates `username` and an enrollment for it, then enrolls a fresh phone key as a phone would.
async fn enroll(ctx: &Ctx, username: String, client_ip: String) -> anyhow::Result<Phone> {
    let what = format!("setting up user {username}");
    setup_call(ctx.app(Method::POST, "/v1/users").json(&json!({ "username": username })))
        .await
        .context(what.clone())?;
    let path = format!("/v1/users/{username}/enrollments");
    let view: EnrollmentView = setup_call(ctx.app(Method::POST, &path).json(&json!({})))
        .await?
        .json()
        .await
        .context(what.clone())?;
    let uri = EnrollmentUri::parse(&view.activation_uri)?;
    let key_pair = key_pair_from_pkcs8(&generate_pkcs8(&ctx.rng)?, &ctx.rng)?;
    let request = Enrollment {
        server: uri.server,
        activation_code: uri.code,
        public_key: PublicKey::from_key_pair(&key_pair)?,
        push: PushRegistration::None,
        device_name: "Bench phone".into(),
        platform: "countersign bench".into(),
    }
    .sign(&key_pair, &ctx.rng)?;
    let url = format!("{}/device/v1/enroll", ctx.base);
    let enrolled: EnrollmentResponse =
        setup_call(ctx.client.post(url).json(&request)).await?.json().await.context(what)?;
    Ok(Phone { username, client_ip, key_pair, enrolled, counter: 0 })
}

async fn setup_call(request: RequestBuilder) -> anyhow::Result<reqwest::Response> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let url = response.url().path().to_owned();
        let body = response.text().await.unwrap_or_default();
        bail!("setup request {url} failed: {status} {body}");
    }
    Ok(response)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Create,
    Fetch,
    Approve,
    Wait,
    Redeem,
}

impl Step {
    const fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Fetch => "fetch",
            Self::Approve => "approve",
            Self::Wait => "wait",
            Self::Redeem => "redeem",
        }
    }
}

/// Why a flow stopped: the step and what went wrong there (HTTP status and error code, or a
/// short description).
#[derive(Debug)]
struct FlowError {
    step: Step,
    what: String,
}

impl FlowError {
    fn new(step: Step, what: impl Into<String>) -> Self {
        Self { step, what: what.into() }
    }
}

/// Sends a flow request; any transport failure, non-2xx status or unreadable body is an error.
async fn call<T: DeserializeOwned>(step: Step, request: RequestBuilder) -> Result<T, FlowError> {
    let response = request.send().await.map_err(|e| {
        let kind = if e.is_timeout() { "timeout" } else { "transport error" };
        FlowError::new(step, kind)
    })?;
    let status = response.status();
    if !status.is_success() {
        let code = response.json::<ErrorBody>().await.map(|b| b.error).unwrap_or_default();
        return Err(FlowError::new(step, format!("{} {code}", status.as_u16())));
    }
    response.json().await.map_err(|_| FlowError::new(step, "unreadable body"))
}

#[derive(Debug, Deserialize)]
struct CreatedView {
    id: String,
    number: String,
}

#[derive(Debug, Deserialize)]
struct StateView {
    state: String,
}

/// The app's long-poll, aborted if the flow stops before it returns.
struct Waiter(JoinHandle<(Result<StateView, FlowError>, Instant)>);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Timings of one successful flow.
#[derive(Debug)]
struct FlowTimes {
    create: Duration,
    fetch: Duration,
    approve: Duration,
    redeem: Duration,
    flow: Duration,
    /// Approve response arrived → long-poll returned (0 if it returned first).
    wake: Duration,
    /// Approve sent → long-poll returned.
    approve_to_wake: Duration,
}

async fn flow(ctx: &Arc<Ctx>, phone: &mut Phone) -> Result<FlowTimes, FlowError> {
    let start = Instant::now();
    let body = json!({ "username": phone.username, "context": { "ip": phone.client_ip } });
    let created: CreatedView =
        call(Step::Create, ctx.app(Method::POST, "/v1/challenges").json(&body)).await?;
    let create = start.elapsed();

    let wait = ctx.app(Method::GET, &format!("/v1/challenges/{}?wait=10", created.id));
    let mut waiter = Waiter(tokio::spawn(async move { (call(Step::Wait, wait).await, Instant::now()) }));

    let path = "/device/v1/challenges";
    let signed = RequestHeaders::sign(
        &phone.key_pair,
        &ctx.rng,
        phone.enrolled.device_id.clone(),
        &HttpRequest { method: "GET", path_and_query: path, body: &[] },
        crate::clock::now_unix(),
    )
    .map_err(|e| FlowError::new(Step::Fetch, format!("signing: {e}")))?;
    let request = signed
        .to_pairs()
        .into_iter()
        .fold(ctx.client.get(format!("{}{path}", ctx.device_base)), |r, (name, value)| r.header(name, value));
    let sent = Instant::now();
    let pending: PendingChallenges = call(Step::Fetch, request).await?;
    let fetch = sent.elapsed();
    let signed_details = pending
        .challenges
        .iter()
        .find(|c| c.details.challenge_id.as_str() == created.id)
        .ok_or_else(|| FlowError::new(Step::Fetch, "challenge not listed"))?;
    let enrolled = &phone.enrolled;
    let details = signed_details
        .verify(&enrolled.server_public_key, &enrolled.server_id, &enrolled.device_id)
        .map_err(|_| FlowError::new(Step::Fetch, "details signature invalid"))?;

    phone.counter += 1;
    let answer = ChallengeAnswer::new(
        details,
        Decision::Approve,
        created.number,
        enrolled.device_id.clone(),
        phone.counter,
    )
    .sign(&phone.key_pair, &ctx.rng)
    .map_err(|e| FlowError::new(Step::Approve, format!("signing: {e}")))?;
    let url = format!("{}/device/v1/challenges/{}/response", ctx.device_base, created.id);
    let sent = Instant::now();
    let result: ChallengeResponseResult = call(Step::Approve, ctx.client.post(url).json(&answer)).await?;
    let approved = Instant::now();
    let approve = approved - sent;
    if result.outcome != ChallengeOutcome::Approved {
        return Err(FlowError::new(Step::Approve, format!("outcome {:?}", result.outcome)));
    }

    let (view, woke) = (&mut waiter.0).await.map_err(|_| FlowError::new(Step::Wait, "task failed"))?;
    if view?.state != "approved" {
        return Err(FlowError::new(Step::Wait, "state not approved"));
    }
    let wake = woke.saturating_duration_since(approved);
    let approve_to_wake = woke.saturating_duration_since(sent);

    let path = format!("/v1/challenges/{}/redeem", created.id);
    let sent = Instant::now();
    let view: StateView = call(Step::Redeem, ctx.app(Method::POST, &path)).await?;
    let redeem = sent.elapsed();
    if view.state != "redeemed" {
        return Err(FlowError::new(Step::Redeem, format!("state {}", view.state)));
    }
    Ok(FlowTimes { create, fetch, approve, redeem, flow: start.elapsed(), wake, approve_to_wake })
}

async fn worker(ctx: Arc<Ctx>, mut phones: Vec<Phone>, quota: usize) -> Samples {
    let mut samples = Samples::default();
    let count = phones.len();
    for turn in 0..quota {
        let Some(phone) = phones.get_mut(turn % count.max(1)) else { break };
        match flow(&ctx, phone).await {
            Ok(times) => samples.record(&times),
            Err(error) => {
                let key = format!("{}: {}", error.step.name(), error.what);
                *samples.errors.entry(key).or_default() += 1;
            }
        }
    }
    samples
}

#[derive(Debug, Default)]
struct Samples {
    create: Vec<Duration>,
    fetch: Vec<Duration>,
    approve: Vec<Duration>,
    redeem: Vec<Duration>,
    flow: Vec<Duration>,
    wake: Vec<Duration>,
    approve_to_wake: Vec<Duration>,
    /// "step: status code" → count.
    errors: BTreeMap<String, u64>,
}

impl Samples {
    fn record(&mut self, t: &FlowTimes) {
        self.create.push(t.create);
        self.fetch.push(t.fetch);
        self.approve.push(t.approve);
        self.redeem.push(t.redeem);
        self.flow.push(t.flow);
        self.wake.push(t.wake);
        self.approve_to_wake.push(t.approve_to_wake);
    }

    fn merge(&mut self, other: Self) {
        self.create.extend(other.create);
        self.fetch.extend(other.fetch);
        self.approve.extend(other.approve);
        self.redeem.extend(other.redeem);
        self.flow.extend(other.flow);
        self.wake.extend(other.wake);
        self.approve_to_wake.extend(other.approve_to_wake);
        for (key, count) in other.errors {
            *self.errors.entry(key).or_default() += count;
        }
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted samples; `None` when there are none.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[derive(Debug, Serialize)]
struct Summary {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |p| percentile(&sorted, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Self { p50_ms: ms(50.0), p90_ms: ms(90.0), p99_ms: ms(99.0), max_ms: ms(100.0) }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    flows_ok: usize,
    flows_failed: u64,
    concurrency: usize,
    users: usize,
    wall_secs: f64,
    flows_per_sec: f64,
    create: Summary,
    fetch: Summary,
    approve: Summary,
    redeem: Summary,
    flow: Summary,
    wake_up: Summary,
    approve_to_wake: Summary,
    errors: BTreeMap<String, u64>,
}

impl Report {
    fn new(samples: &Samples, wall: Duration, concurrency: usize, users: usize) -> Self {
        let flows_ok = samples.flow.len();
        Self {
            flows_ok,
            flows_failed: samples.errors.values().sum(),
            concurrency,
            users,
            wall_secs: wall.as_secs_f64(),
            flows_per_sec: flows_ok as f64 / wall.as_secs_f64().max(f64::EPSILON),
            create: Summary::of(&samples.create),
            fetch: Summary::of(&samples.fetch),
            approve: Summary::of(&samples.approve),
            redeem: Summary::of(&samples.redeem),
            flow: Summary::of(&samples.flow),
            wake_up: Summary::of(&samples.wake),
            approve_to_wake: Summary::of(&samples.approve_to_wake),
            errors: samples.errors.clone(),
        }
    }

    fn print(&self, url: &str) {
        println!(
            "{} flows ok, {} failed against {url} (concurrency {}, {} users)",
            self.flows_ok, self.flows_failed, self.concurrency, self.users
        );
        println!("wall {:.2} s, {:.1} flows/s", self.wall_secs, self.flows_per_sec);
        println!("{:<16}{:>9}{:>9}{:>9}{:>9}", "ms", "p50", "p90", "p99", "max");
        let rows = [
            ("create", &self.create),
            ("fetch", &self.fetch),
            ("approve", &self.approve),
            ("redeem", &self.redeem),
            ("full flow", &self.flow),
            ("wake-up", &self.wake_up),
            ("approve→wake", &self.approve_to_wake),
        ];
        for (name, s) in rows {
            println!("{name:<16}{:>9.2}{:>9.2}{:>9.2}{:>9.2}", s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms);
        }
        if self.errors.is_empty() {
            println!("errors: none");
        }
        for (what, count) in &self.errors {
            println!("error {what}: {count}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(Duration::from_millis(1)));
        let small = ms(&[3, 7, 9]);
        assert_eq!(percentile(&small, 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&small, 99.0), Some(Duration::from_millis(9)));
        assert_eq!(percentile(&ms(&[4]), 50.0), Some(Duration::from_millis(4)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn arguments_are_consistent() {
        use clap::CommandFactory as _;
        BenchArgs::command().debug_assert();
    }

    #[test]
    fn summary_sorts_its_samples() {
        let summary = Summary::of(&ms(&[9, 1, 5, 3, 7]));
        assert_eq!((summary.p50_ms, summary.max_ms), (5.0, 9.0));
    }
}
