//! The `countersign` command line.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI talks to its terminal

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use time::format_description::well_known::Rfc3339;

use crate::api_keys::{Scopes, service as api_keys};
use crate::audit::{Actor, VerifyError};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat, Settings};
use crate::devices::service::DeviceSettings;
use crate::oidc::client_admin::{self, NewClient};
use crate::oidc::clients::{self, AuthMethod, ClientId, ClientKeys, IdTokenAlg};
use crate::oidc::keys::{KeyTimings, SigningAlg, SigningKeys};
use crate::secrets::MasterKey;
use crate::startup::{AppSettings, Application, Dependencies};
use crate::store::{self, Store};
use countersign_mobile_protocol::ServerUrl;

/// Countersign: number-matching MFA push server.
///
/// Configuration comes from an optional TOML file (--config) and COUNTERSIGN_* environment
/// variables (nested keys with `__`, e.g. COUNTERSIGN_DATABASE__URL); DATABASE_URL works too.
/// With nothing set, it listens on 127.0.0.1:8080 and keeps its data in ./data/ (SQLite).
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending database migrations first).
    Serve {
        /// Log format; overrides `log_format` in the configuration.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration (file and environment) and print the effective settings,
    /// secrets masked. Exits 2 naming the key at fault.
    CheckConfig,
    /// Manage the applications allowed to call the REST API.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Issue enrollments as the operator: activation codes for phones, links for passkeys.
    #[command(subcommand)]
    Enrollments(EnrollmentsCommand),
    /// Manage users' policies as the operator.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the OpenID Connect signing keys (never shows private keys).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage OpenID Connect clients (the SSO products that use Countersign as their MFA step).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// The admin plane (`/admin`).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Print a one-time bootstrap token, once, to stdout (only its SHA-256 is stored). Type it
    /// into /admin/bootstrap with your name and register a passkey to become an admin. Works
    /// while fewer than two admins are active; audited.
    Bootstrap {
        /// How long the token lives: 1m to 24h (`90s`, `15m`, `2h`).
        #[arg(long, default_value = "15m", value_parser = bootstrap_ttl)]
        ttl: time::Duration,
    },
}

fn bootstrap_ttl(text: &str) -> Result<time::Duration, String> {
    crate::admin::model::parse_ttl(text)
        .filter(|ttl| crate::admin::model::bootstrap_ttl_allowed(*ttl))
        .ok_or_else(|| format!("`{text}` is not a lifetime between 1m and 24h (e.g. 15m)"))
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Publish the next signing key of an algorithm: in the JWKS at once, signing only after
    /// the publish overlap (48 hours), so relying parties that cached the JWKS see it before any
    /// token carries it. The key it supersedes stays published until its tokens have expired.
    /// Prints the new kid.
    Rotate {
        /// ES256 (the default for every token) or RS256 (for relying parties that only do RS256).
        #[arg(long, default_value = "ES256")]
        alg: SigningAlg,
    },
    /// List the signing keys: kid, algorithm, state (pending, active, retiring, retired,
    /// revoked) and dates. Never key material.
    List,
    /// Emergency: revoke a key. It leaves the JWKS at once and never signs again; if it was
    /// signing, a fresh key of its algorithm replaces it at once (relying parties refetch the
    /// JWKS on its unknown kid). Running servers follow within a second.
    Revoke {
        #[arg(long)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Register a client and print its client_id and, for the secret methods, its secret. The
    /// secret is shown once and only its hash is stored: keep it in the client's secret store.
    Create {
        /// A name for people (shown in lists and on the sign-in page).
        #[arg(long)]
        name: String,
        /// An exact redirect URI (repeat for several): absolute, https (http only on
        /// 127.0.0.1, [::1] or localhost), no fragment, no userinfo, no wildcard. Matched byte
        /// for byte.
        #[arg(long = "redirect-uri", value_name = "URI", required_unless_present = "ciba")]
        redirect_uris: Vec<String>,
        /// How the client authenticates at the token endpoint: client_secret_basic,
        /// client_secret_post, private_key_jwt, or none (a public client, PKCE mandatory).
        #[arg(long, value_name = "METHOD")]
        auth: AuthMethod,
        /// private_key_jwt: a file holding the client's public keys as a JWK set.
        #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
        jwks_file: Option<PathBuf>,
        /// private_key_jwt: where the client publishes its public keys (https; http only on
        /// loopback).
        #[arg(long, value_name = "URI")]
        jwks_uri: Option<String>,
        /// How the client's ID tokens are signed: ES256 (default) or RS256.
        #[arg(long, value_name = "ALG", default_value = "ES256")]
        id_token_alg: IdTokenAlg,
        /// Let the client ask for decoupled sign-ins (CIBA, `/oidc/ciba`): `poll` (it polls the
        /// token endpoint) or `ping` (it is notified first, at --notification-endpoint). A
        /// CIBA-only client needs no redirect URI.
        #[arg(long, value_name = "MODE")]
        ciba: Option<String>,
        /// CIBA ping mode: the client's `backchannel_client_notification_endpoint` (https;
        /// http only on loopback).
        #[arg(long, value_name = "URI")]
        notification_endpoint: Option<String>,
    },
    /// List clients (never secrets: only their hashes are stored).
    List,
    /// Revoke a client at once: it can no longer authenticate or start a sign-in.
    Revoke {
        #[arg(long, value_name = "ID")]
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Set whether a user must sign in with a passkey (push challenges refused). Apps can only
    /// raise this; lowering it is the operator's act, audited with `cli` as actor.
    PasskeyPolicy {
        /// The username.
        #[arg(long)]
        user: String,
        /// `required`: passkey only; `allowed`: push allowed even for a privileged user;
        /// `default`: follow the user's privilege (privileged users are passkey-only).
        #[arg(long, value_enum)]
        set: PasskeyPolicy,
    },
    /// Break glass: lift every push freeze of a user, a "not me" quarantine and a hard lock
    /// included (apps cannot lift those; on the admin plane it takes two admins). For the
    /// operator who holds the master key and the database anyway; audited with `cli` as actor.
    Unfreeze {
        /// The username.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PasskeyPolicy {
    Required,
    Allowed,
    Default,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Register an app and print its API key. The key is shown once and only its hash is
    /// stored: keep it in the app's secret store.
    Create {
        /// Unique name: letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// Space- or comma-separated scopes: users:read users:write challenges:read
        /// challenges:write fatigue:read fatigue:write.
        #[arg(long, required = true, num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Revoke an app's key at once; requests with it are refused from then on.
    Revoke {
        #[arg(long)]
        name: String,
    },
    /// List apps and their scopes (never keys).
    List,
}

#[derive(Debug, Subcommand)]
enum EnrollmentsCommand {
    /// Issue an activation code for a user and print its activation URI (the QR code's
    /// content) once, to stdout. It works once, within the enrollment TTL (default 10 min).
    Create {
        /// The username.
        #[arg(long)]
        user: String,
        /// Recovery: may add a device although the user has one (lost phone, second device
        /// without an approval from the first). Audited with the operator (`cli`) as actor;
        /// the user's existing devices are told when it is used. Without it, a user who has a
        /// device is refused.
        #[arg(long)]
        recovery: bool,
    },
    /// Issue a single-use link to the hosted passkey registration page and print it once, to
    /// stdout. It works once, within 10 minutes, in a browser on an allowed WebAuthn origin.
    PasskeyLink {
        /// The username.
        #[arg(long)]
        user: String,
        /// Recovery: may add a passkey although the user has a factor (a passkey-only user whose
        /// only factor is a phone, a lost security key). Audited with the operator (`cli`) as
        /// actor; the user's phones are told when it is used. Without it, a user who has a
        /// factor is refused.
        #[arg(long)]
        recovery: bool,
        /// What the passkey will be called (default "Passkey").
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and check it against the sealed head. Exits 0 if intact, 1 naming
    /// the first broken sequence number if not.
    Verify {
        /// A checkpoint exported earlier (`audit checkpoint`, or the `audit_checkpoint` of an
        /// alert webhook delivery): the chain must still pass through it, so a database rolled
        /// back to an older state fails.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the sealed head of the chain as JSON, to keep outside the database (SIEM, ticket,
    /// another machine) for `audit verify --checkpoint`.
    Checkpoint,
}

/// Exit codes: 0 success, 1 the audit chain is broken, 2 the command could not run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Config::load(cli.config.as_deref())?.validate()?;
    match cli.command {
        Command::Serve { log_format } => serve(settings, log_format).await,
        Command::Migrate => {
            let store = open_store(&settings).await?;
            eprintln!("migrations applied ({})", store.engine());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            crate::secrets::check_configured(&settings)?;
            println!("listen = {}", settings.listen);
            println!("database = {}", store::redact_url(settings.database_url.expose_secret()));
            println!("data_dir = {}", settings.data_dir.display());
            match &settings.public_url {
                Some(url) => println!("public_url = {}", url.as_str()),
                None => println!("public_url = http://<listen address> (loopback only)"),
            }
            println!(
                "master key = {}",
                if settings.master_key.is_some() { "set (masked)" } else { "from file" }
            );
            println!(
                "body limit = {} bytes, request timeout = {:?}",
                settings.body_limit_bytes, settings.request_timeout
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Apps(command) => apps(&settings, command).await,
        Command::Audit(AuditCommand::Verify { checkpoint }) => audit_verify(&settings, checkpoint).await,
        Command::Audit(AuditCommand::Checkpoint) => {
            let store = open_store(&settings).await?;
            let checkpoint = crate::audit::checkpoint(store.as_ref(), SystemClock.now()).await?;
            println!("{}", serde_json::to_string(&checkpoint)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Enrollments(command) => enrollments(&settings, command).await,
        Command::Keys(command) => keys(&settings, command).await,
        Command::Clients(command) => clients(&settings, command).await,
        Command::Admin(AdminCommand::Bootstrap { ttl }) => admin_bootstrap(&settings, ttl).await,
        Command::Users(UsersCommand::PasskeyPolicy { user, set }) => {
            let store = open_store(&settings).await?;
            let required = match set {
                PasskeyPolicy::Required => Some(true),
                PasskeyPolicy::Allowed => Some(false),
                PasskeyPolicy::Default => None,
            };
            let changed = crate::users::service::set_passkey_required(
                store.as_ref(),
                &SystemClock,
                Actor::Cli,
                &user,
                required,
            )
            .await?;
            let effective = crate::users::model::passkey_required(&changed);
            eprintln!(
                "`{}`: passkey {}",
                changed.username,
                if effective { "required" } else { "not required" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(UsersCommand::Unfreeze { user }) => {
            let store = open_store(&settings).await?;
            let fatigue = crate::fatigue::service::FatigueService::new(
                store,
                Arc::new(SystemClock),
                crate::fatigue::policy::PolicyHandle::new(settings.fatigue.clone()),
            );
            let standing = fatigue.unfreeze_reviewed(Actor::Cli, &user).await?;
            eprintln!("`{user}`: push {}", standing.push);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let master = crate::secrets::load_master_key(settings)?;
    open_store_with(settings, &master).await
}

async fn open_store_with(settings: &Settings, master: &MasterKey) -> anyhow::Result<Arc<dyn Store>> {
    let sealer = master.audit_sealer();
    let store =
        store::connect(&settings.database_url, settings.max_connections, sealer).await.map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot open database {}",
                store::redact_url(settings.database_url.expose_secret())
            ))
        })?;
    store.migrate().await?;
    Ok(Arc::from(store))
}

async fn serve(settings: Settings, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_tracing(log_format.unwrap_or(settings.log_format));
    let master = Arc::new(crate::secrets::load_master_key(&settings)?);
    let store = open_store_with(&settings, &master).await?;
    if store.engine() == store::Engine::Sqlite {
        tracing::info!("embedded SQLite database: run a single instance; use PostgreSQL to run several");
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let address = listener.local_addr()?;
    // With no public_url configured (loopback only), phones reach the port actually bound.
    let public_url = match &settings.public_url {
        Some(url) => url.clone(),
        None => ServerUrl::parse(&format!("http://{address}"))?,
    };
    let deps = Dependencies {
        store,
        clock: Arc::new(SystemClock),
        master,
        metrics: crate::telemetry::prometheus(),
        push: Arc::new(settings.push.build()?),
        alert_webhook: settings.alerts.webhook()?,
    };
    let application = Application::build(deps, AppSettings::from_settings(&settings, public_url)?).await?;
    tracing::info!(database = %store::redact_url(settings.database_url.expose_secret()), "listening on http://{address}");
    application.run_until_stopped(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn apps(settings: &Settings, command: AppsCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let clock = SystemClock;
    match command {
        AppsCommand::Create { name, scopes } => {
            let scopes: Scopes = scopes.join(" ").parse()?;
            let (app, key) = api_keys::create_app(store.as_ref(), &clock, Actor::Cli, &name, scopes).await?;
            eprintln!("created app `{}` ({}) with scopes: {}", app.name, app.id, app.scopes);
            eprintln!("its API key follows; it is shown only this once:");
            println!("{}", key.expose_secret());
        }
        AppsCommand::Revoke { name } => {
            let app = api_keys::revoke_app(store.as_ref(), &clock, Actor::Cli, &name).await?;
            eprintln!("revoked app `{}` ({})", app.name, app.id);
        }
        AppsCommand::List => {
            for app in store.list_apps().await? {
                let status = if app.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}\t{}\t{}\t{}", app.name, app.id, status, app.scopes);
            }
        }
    }
    // No server may be running: chain what this command recorded now.
    crate::audit::flush(store.as_ref()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `countersign admin bootstrap`: the token that creates an admin while fewer than two exist.
async fn admin_bootstrap(settings: &Settings, ttl: time::Duration) -> anyhow::Result<ExitCode> {
    use crate::admin::accounts::{AccountError, create_bootstrap_token};
    let store = open_store(settings).await?;
    let created = create_bootstrap_token(store.as_ref(), &SystemClock, ttl).await;
    // No server may be running: chain what this command recorded now.
    crate::audit::flush(store.as_ref()).await?;
    match created {
        Ok(token) => {
            let minutes = ttl.whole_minutes();
            eprintln!("created a bootstrap token, usable once within {minutes} min at /admin/bootstrap");
            eprintln!("it follows; it is shown only this once:");
            println!("{}", token.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Err(AccountError::BootstrapClosed) => Err(anyhow::anyhow!(
            "the admin plane already has two active admins: new admins are invited and approved by two admins"
        )),
        Err(error) => Err(error.into()),
    }
}

/// `countersign clients create|list|revoke`.
async fn clients(settings: &Settings, command: ClientsCommand) -> anyhow::Result<ExitCode> {
    let clock = SystemClock;
    let store = match command {
        ClientsCommand::Create {
            name,
            redirect_uris,
            auth,
            jwks_file,
            jwks_uri,
            id_token_alg,
            ciba,
            notification_endpoint,
        } => {
            let keys = match (jwks_file, jwks_uri) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read --jwks-file {}: {e}", path.display()))?;
                    ClientKeys::Inline(clients::validate_jwks(text.trim())?)
                }
                (None, Some(uri)) => ClientKeys::Uri(uri),
                (None, None) => ClientKeys::None,
            };
            let ciba = clients::ciba_delivery(ciba.as_deref(), notification_endpoint)?;
            let new = NewClient { name, redirect_uris, auth_method: auth, keys, id_token_alg, ciba };
            // Refuse bad input before touching the database.
            clients::validate_name(&new.name)?;
            clients::validate_flows(&new.redirect_uris, new.auth_method, new.ciba.as_ref())?;
            clients::validate_keys(new.auth_method, &new.keys)?;
            let master = Arc::new(crate::secrets::load_master_key(settings)?);
            let store = open_store_with(settings, &master).await?;
            if new.id_token_alg == IdTokenAlg::Rs256 {
                // Published before the client exists: its RP fetches the JWKS (at discovery)
                // before its first sign-in, and must find the key its ID tokens will carry.
                let keys =
                    SigningKeys::new(Arc::clone(&store) as _, Arc::new(clock), master, KeyTimings::DEFAULT);
                keys.ensure_signing_key(SigningAlg::Rs256, Actor::Cli).await?;
            }
            let created = client_admin::create_client(store.as_ref(), &clock, Actor::Cli, new).await?;
            let client = &created.client;
            eprintln!(
                "registered OIDC client `{}` ({}, ID tokens {})",
                client.name, client.auth_method, client.id_token_alg
            );
            println!("client_id={}", client.client_id);
            if let Some(secret) = &created.secret {
                eprintln!("its client secret follows; it is shown only this once:");
                println!("client_secret={}", secret.expose_secret());
            }
            store
        }
        ClientsCommand::Revoke { client_id } => {
            let store = open_store(settings).await?;
            let client =
                client_admin::revoke_client(store.as_ref(), &clock, Actor::Cli, &ClientId(client_id)).await?;
            eprintln!("revoked OIDC client `{}` ({})", client.name, client.client_id);
            store
        }
        ClientsCommand::List => {
            let store = open_store(settings).await?;
            for client in client_admin::list_clients(store.as_ref()).await? {
                let status = if client.is_active() { "active" } else { "revoked" };
                let keys = match &client.keys {
                    ClientKeys::None => "-".to_owned(),
                    ClientKeys::Inline(jwks) => format!("inline:{}", jwks.keys().len()),
                    ClientKeys::Uri(uri) => uri.clone(),
                };
                let mut uris = client.redirect_uris.join(" ");
                if let Some(ciba) = &client.ciba {
                    uris = format!("{uris} ciba:{}", ciba.mode()).trim_start().to_owned();
                }
                let (id, name, method, alg) =
                    (&client.client_id, &client.name, client.auth_method, client.id_token_alg);
                println!("{id}\t{name}\t{status}\t{method}\t{alg}\t{uris}\t{keys}");
            }
            store
        }
    };
    // No server may be running: chain what this command recorded now.
    crate::audit::flush(store.as_ref()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(settings: &Settings, checkpoint: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let checkpoint: Option<crate::audit::chain::Checkpoint> = match checkpoint {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read checkpoint {}: {e}", path.display()))?;
            Some(serde_json::from_str(text.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a checkpoint from `countersign audit checkpoint`: {e}",
                    path.display()
                )
            })?)
        }
        None => None,
    };
    let master = crate::secrets::load_master_key(settings)?;
    let sealer = master.audit_sealer();
    let store = open_store_with(settings, &master).await?;
    match crate::audit::verify_against(store.as_ref(), &sealer, checkpoint.as_ref()).await {
        Ok(count) => {
            println!("audit chain intact: {count} events");
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(broken)) => {
            println!("audit chain broken at sequence number {}: {broken}", broken.seq());
            Ok(ExitCode::from(1))
        }
        Err(
            failed @ (VerifyError::PendingForged(_)
            | VerifyError::PendingReplayed { .. }
            | VerifyError::Checkpoint(_)),
        ) => {
            println!("{failed}");
            Ok(ExitCode::from(1))
        }
        Err(VerifyError::Store(error)) => Err(error.into()),
    }
}

/// `countersign enrollments create|passkey-link`: operator-issued enrollments (the admin plane
/// will take these over, with four-eyes for recovery).
async fn enrollments(settings: &Settings, command: EnrollmentsCommand) -> anyhow::Result<ExitCode> {
    let master = Arc::new(crate::secrets::load_master_key(settings)?);
    let store = open_store_with(settings, &master).await?;
    let outcome = match command {
        EnrollmentsCommand::Create { user, recovery } => {
            device_enrollment(settings, &store, master, &user, recovery).await
        }
        EnrollmentsCommand::PasskeyLink { user, recovery, name } => {
            passkey_link(settings, &store, &user, recovery, name).await
        }
    };
    // No server may be running: chain what this command recorded now.
    crate::audit::flush(store.as_ref()).await?;
    outcome
}

async fn device_enrollment(
    settings: &Settings,
    store: &Arc<dyn Store>,
    master: Arc<MasterKey>,
    user: &str,
    recovery: bool,
) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    let server_key =
        crate::devices::server_key::ServerSigningKey::load_or_create(store.as_ref(), &master, clock.as_ref())
            .await?;
    let device_settings = DeviceSettings {
        public_url: operator_public_url(settings)?,
        max_clock_skew_secs: settings.max_clock_skew_secs,
        enrollment_ttl: settings.enrollment_ttl,
        refusal_limits: settings.device_refusals,
    };
    let devices = crate::devices::service::DeviceService::new(
        Arc::clone(store),
        clock,
        master,
        Arc::new(server_key),
        device_settings,
    );
    let created = if recovery {
        devices.create_recovery_enrollment(user).await
    } else {
        devices.create_enrollment(Actor::Cli, user, false, None).await
    };
    match created {
        Ok(created) => {
            let record = &created.record;
            let kind = if recovery { "recovery enrollment" } else { "enrollment" };
            eprintln!("created {kind} {} for `{user}`, usable once until {}", record.id, record.expires_at);
            eprintln!("its activation URI follows; it is shown only this once:");
            println!("{}", created.activation_uri.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::devices::service::DeviceError::SecondFactorProofRequired) => Err(anyhow::anyhow!(
            "`{user}` already has a device: use --recovery to add another (audited; their devices are told)"
        )),
        Err(error) => Err(error.into()),
    }
}

async fn passkey_link(
    settings: &Settings,
    store: &Arc<dyn Store>,
    user: &str,
    recovery: bool,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    use crate::passkeys::service::{PasskeyError, PasskeyService, SignInSettings};
    let public_url = operator_public_url(settings)?;
    let webauthn = crate::passkeys::model::WebauthnSettings::resolve(&settings.webauthn, public_url.as_str())
        .map_err(|(key, problem)| anyhow::anyhow!("{key}: {problem}"))?;
    // The command begins a registration only; sign-ins (and their waiters) are the server's.
    let sign_in = SignInSettings { ttl: settings.challenge_ttl, waiters: Arc::default() };
    let passkeys = PasskeyService::new(Arc::clone(store), Arc::new(SystemClock), Arc::new(webauthn), sign_in);
    match passkeys.create_operator_link(user, recovery, name).await {
        Ok(link) => {
            let kind = if recovery { "recovery passkey link" } else { "passkey link" };
            eprintln!("created a {kind} for `{user}`, usable once until {}", link.expires_at);
            eprintln!("it follows; it is shown only this once:");
            println!("{}", link.url.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Err(PasskeyError::SecondFactorProofRequired) => Err(anyhow::anyhow!(
            "`{user}` already has a factor: use --recovery to add a passkey (audited; their phones are told)"
        )),
        Err(error) => Err(error.into()),
    }
}

/// The URL phones reach, as `serve` computes it; without `public_url`, only a fixed loopback
/// port can be named (phones bind their keys to this URL).
fn operator_public_url(settings: &Settings) -> anyhow::Result<ServerUrl> {
    match &settings.public_url {
        Some(url) => Ok(url.clone()),
        None if settings.listen.port() != 0 => Ok(ServerUrl::parse(&format!("http://{}", settings.listen))?),
        None => Err(anyhow::anyhow!(
            "set public_url: `listen` has no fixed port, so the activation URI could not name the server"
        )),
    }
}

/// `countersign keys rotate|list|revoke`: the OIDC signing keys, as the operator.
async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let master = Arc::new(crate::secrets::load_master_key(settings)?);
    let store = open_store_with(settings, &master).await?;
    let keys = SigningKeys::new(Arc::clone(&store) as _, Arc::new(SystemClock), master, KeyTimings::DEFAULT);
    let date = |at: time::OffsetDateTime| at.format(&Rfc3339).unwrap_or_else(|_| at.to_string());
    let when = |at: Option<time::OffsetDateTime>| at.map_or_else(|| "-".to_owned(), date);
    match command {
        KeysCommand::Rotate { alg } => {
            let key = keys.rotate(alg, Actor::Cli).await?;
            eprintln!("published {alg} key {} now; it signs from {}", key.kid, date(key.activates_at));
            println!("{}", key.kid);
        }
        KeysCommand::List => {
            for key in keys.list().await? {
                println!(
                    "{}\t{}\t{}\tcreated={}\tactivates={}\tsigns_until={}\tpublished_until={}\trevoked={}",
                    key.kid,
                    key.alg,
                    key.state,
                    date(key.created_at),
                    date(key.activates_at),
                    when(key.signs_until),
                    when(key.published_until),
                    when(key.revoked_at),
                );
            }
        }
        KeysCommand::Revoke { kid } => {
            let revoked = keys.revoke(&kid, Actor::Cli).await?;
            eprintln!(
                "revoked {} key {}: out of the JWKS, it never signs again",
                revoked.key.alg, revoked.key.kid
            );
            if let Some(fresh) = revoked.replacement {
                eprintln!("it was signing: {} key {} replaces it, signing now", fresh.alg, fresh.kid);
                println!("{}", fresh.kid);
            }
        }
    }
    // No server may be running: chain what this command recorded now.
    crate::audit::flush(store.as_ref()).await?;
    Ok(ExitCode::SUCCESS)
}
