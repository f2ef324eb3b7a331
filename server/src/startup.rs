//! The composition root: how the application is put together and started, once, for
//! `countersign serve` and for the test harness alike.
//!
//! [`Application::build`] wires the capabilities ([`AppState`]), the router and the background
//! tasks; [`Application::run_until_stopped`] serves until the shutdown signal, drains, and
//! records what the last requests left pending. Every task is switchable ([`BackgroundTasks`]):
//! tests that move an injected clock start none unless they test one, so nothing expires or
//! flushes behind their back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::alerts::{AlertDelivery, Webhook};
use crate::app::{AppState, HttpLimits, ServiceSettings, build_app};
use crate::challenges::service::ChallengeSettings;
use crate::challenges::worker::Worker;
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::devices::server_key::ServerKeyError;
use crate::devices::service::DeviceSettings;
use crate::oidc::upstream::Upstream;
use crate::passkeys::model::WebauthnSettings;
use crate::push::PushSender;
use crate::secrets::MasterKey;
use crate::skew::SkewError;
use crate::store::{Store, StoreError};
use countersign_mobile_protocol::ServerUrl;

/// How often refused device requests of past minutes are written to the audit trail.
const REFUSAL_FLUSH_INTERVAL: Duration = Duration::from_secs(15);

/// What the application is built from: what production opens from its configuration and
/// tests replace (a `ManualClock`, a throwaway database, a fake push provider).
#[derive(Debug)]
pub struct Dependencies {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    pub metrics: Option<PrometheusHandle>,
    /// Where the push worker sends (the APNs and FCM clients in production).
    pub push: Arc<dyn PushSender>,
    /// Where security alerts are delivered; `None` keeps them in the database only.
    pub alert_webhook: Option<Webhook>,
}

/// The application's settings, from [`Settings`] in production.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub devices: DeviceSettings,
    pub challenges: ChallengeSettings,
    /// The WebAuthn relying party (RP ID, origins, allowed authenticators).
    pub webauthn: Arc<WebauthnSettings>,
    /// OIDC upstream issuers (`[[oidc.upstream]]`).
    pub upstream: Vec<Upstream>,
    /// Keycloak realms (`[[keycloak.realms]]`).
    pub keycloak: Vec<crate::keycloak::config::Realm>,
    pub limits: HttpLimits,
    /// How long in-flight requests may run on after the shutdown signal.
    pub shutdown_grace: Duration,
    pub tasks: BackgroundTasks,
}

impl AppSettings {
    /// What `serve` runs: the configured settings, every background task; phones reach
    /// `public_url` (the configured one, or the address actually bound), which the WebAuthn
    /// relying party defaults to.
    pub fn from_settings(settings: &Settings, public_url: ServerUrl) -> Result<Self, ConfigError> {
        let webauthn = WebauthnSettings::resolve(&settings.webauthn, public_url.as_str())
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        let upstream =
            settings.oidc.resolve().map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        Ok(Self {
            devices: DeviceSettings {
                public_url,
                max_clock_skew_secs: settings.max_clock_skew_secs,
                enrollment_ttl: settings.enrollment_ttl,
                refusal_limits: settings.device_refusals,
            },
            challenges: ChallengeSettings {
                ttl: settings.challenge_ttl,
                number_digits: settings.number_digits,
                policy: settings.fatigue.clone(),
                max_clock_skew: settings.database_clock_skew,
                ..ChallengeSettings::default()
            },
            webauthn: Arc::new(webauthn),
            upstream,
            keycloak: settings
                .keycloak
                .resolve()
                .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?,
            limits: HttpLimits {
                body_limit_bytes: settings.body_limit_bytes,
                request_timeout: settings.request_timeout,
            },
            shutdown_grace: settings.shutdown_grace,
            tasks: BackgroundTasks::ALL,
        })
    }
}

/// Which background tasks [`Application::build`] starts. Production runs them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundTasks {
    /// Measure this instance's clock against the database's before serving (refusing to start
    /// beyond the bound), then again every minute.
    pub clock_skew: bool,
    /// Wake long-polls on changes made by other instances (PostgreSQL `LISTEN/NOTIFY`).
    pub challenge_watcher: bool,
    /// Link pending audit events onto the hash chain shortly after they are recorded.
    pub audit_chainer: bool,
    /// Expire due challenges, purge old request nonces, and deliver the push outbox.
    pub push_worker: bool,
    /// Write aggregated refused device requests to the audit trail every 15 s.
    pub refusal_flusher: bool,
    /// Deliver security alerts to the webhook (when one is configured).
    pub alert_delivery: bool,
    /// Deliver the callback outbox (CIBA pings, Keycloak outcomes).
    pub callback_delivery: bool,
}

impl BackgroundTasks {
    pub const ALL: Self = Self {
        clock_skew: true,
        challenge_watcher: true,
        audit_chainer: true,
        push_worker: true,
        refusal_flusher: true,
        alert_delivery: true,
        callback_delivery: true,
    };
    pub const NONE: Self = Self {
        clock_skew: false,
        challenge_watcher: false,
        audit_chainer: false,
        push_worker: false,
        refusal_flusher: false,
        alert_delivery: false,
        callback_delivery: false,
    };
}

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    ServerKey(#[from] ServerKeyError),
    #[error("cannot load the OIDC signing keys: {0}")]
    SigningKeys(#[from] crate::oidc::keys::KeyError),
    #[error("cannot build the HTTP client for OIDC clients' key sets: {0}")]
    ClientJwks(#[from] crate::oidc::client_jwks::JwksFetchError),
    #[error(transparent)]
    ClockSkew(#[from] SkewError),
    #[error("cannot watch challenge changes: {0}")]
    Watch(#[source] StoreError),
    #[error("cannot read the stored fatigue policy: {0}")]
    FatiguePolicy(#[source] StoreError),
    #[error("cannot start the callback delivery: {0}")]
    Callbacks(#[source] crate::fault::InternalError),
}

/// The background tasks started; aborted when the application is dropped.
#[derive(Debug, Default)]
struct Running(Vec<JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The built application: its router, its state and its running background tasks.
#[derive(Debug)]
pub struct Application {
    router: Router,
    state: AppState,
    shutdown_grace: Duration,
    _tasks: Running,
}

impl Application {
    /// Wires the capabilities, starts the background tasks `settings.tasks` asks for, and
    /// assembles the router.
    pub async fn build(deps: Dependencies, settings: AppSettings) -> Result<Self, StartupError> {
        let Dependencies { store, clock, master, metrics, push, alert_webhook } = deps;
        let services = ServiceSettings {
            devices: settings.devices,
            challenges: settings.challenges,
            webauthn: settings.webauthn,
            upstream: settings.upstream,
            keycloak: settings.keycloak,
        };
        let state = AppState::new(store, clock, Arc::clone(&master), services, metrics).await?;
        let tasks = start_tasks(&state, settings.tasks, push, alert_webhook, master).await?;
        let router = build_app(state.clone(), settings.limits);
        Ok(Self { router, state, shutdown_grace: settings.shutdown_grace, _tasks: tasks })
    }

    /// The whole service, for in-process requests (tests send it `oneshot` requests).
    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, lets in-flight requests finish within
    /// the grace period, then audits what is still counted or pending.
    pub async fn run_until_stopped(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutting_down = Arc::new(tokio::sync::Notify::new());
        let notify = Arc::clone(&shutting_down);
        let admin = Arc::clone(&self.state.admin);
        // The peer address feeds the per-network limit on refused device requests. No
        // forwarding header is trusted: behind a reverse proxy every phone shares its network.
        let service = self.router.clone().into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            // Live admin streams would otherwise hold the drain for the whole grace period.
            admin.shut_down();
            notify.notify_one();
        });
        let grace = self.shutdown_grace;
        tokio::select! {
            result = server => result?,
            () = async { shutting_down.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; exiting with requests in flight");
            }
        }
        self.record_pending().await;
        Ok(())
    }

    /// Records the refusals counted so far (the current minute too), then chains what the
    /// last requests recorded; another instance or the next start would otherwise.
    async fn record_pending(&self) {
        if let Err(error) = self.state.devices.refusals().flush_all().await {
            tracing::warn!(%error, "aggregated device refusals not audited at shutdown");
        }
        if let Err(error) = crate::audit::flush(self.state.store.as_ref()).await {
            tracing::warn!(%error, "audit events left pending at shutdown");
        }
    }
}

async fn start_tasks(
    state: &AppState,
    switches: BackgroundTasks,
    push: Arc<dyn PushSender>,
    alert_webhook: Option<Webhook>,
    master: Arc<crate::secrets::MasterKey>,
) -> Result<Running, StartupError> {
    let mut running = Running::default();
    // Not switchable: the feed does nothing until an admin opens the live stream.
    running.0.push(Arc::clone(&state.admin.feed).spawn());
    // Not switchable either: a policy change approved elsewhere must reach every instance.
    let policy = state.fatigue.policy();
    running.0.push(policy.spawn_refresh(Arc::clone(&state.store), crate::fatigue::policy::REFRESH_INTERVAL));
    if let Some(webhook) = alert_webhook.filter(|_| switches.alert_delivery) {
        let delivery = AlertDelivery::new(Arc::clone(&state.store), Arc::clone(&state.clock), webhook);
        running.0.push(Arc::new(delivery).spawn());
    }
    if switches.clock_skew {
        // Expiry runs on the database clock, but budgets, freezes and audit times use this
        // instance's: one that is too far off does not start.
        let skew = Arc::clone(state.challenges.clock_skew());
        skew.measure(state.store.as_ref(), state.clock.as_ref()).await?;
        running.0.push(crate::skew::spawn_monitor(skew, Arc::clone(&state.store), Arc::clone(&state.clock)));
    }
    if switches.challenge_watcher {
        let waiters = Arc::clone(&state.challenges.waiters);
        state
            .store
            .watch_challenges(Arc::new(move |id| waiters.notify(id)))
            .await
            .map_err(StartupError::Watch)?;
    }
    if switches.audit_chainer {
        running.0.push(crate::audit::chainer::spawn(Arc::clone(&state.store)));
    }
    if switches.refusal_flusher {
        running.0.push(Arc::clone(state.devices.refusals()).spawn(REFUSAL_FLUSH_INTERVAL));
    }
    if switches.callback_delivery {
        let delivery = crate::callbacks::CallbackDelivery::new(
            Arc::clone(&state.store),
            Arc::clone(&state.clock),
            master,
        )
        .map_err(StartupError::Callbacks)?;
        running.0.push(Arc::new(delivery).spawn());
    }
    if switches.push_worker {
        let worker = Worker::new(
            Arc::clone(&state.store),
            Arc::clone(&state.clock),
            Arc::clone(&state.challenges),
            push,
        );
        running.0.extend(Arc::new(worker).spawn());
    }
    Ok(running)
}
