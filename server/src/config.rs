//! Configuration: an optional TOML file, then `COUNTERSIGN_*` environment variables (nested keys
//! with `__`, e.g. `COUNTERSIGN_DATABASE__URL`), validated once at start.
//!
//! Unknown keys stop the server with the key's name, so a misspelt setting is never silently
//! ignored. Some keys are refused on purpose, with the reason: Countersign has no way to exempt
//! a network or place from MFA and no weak factors (Microsoft's post-Lapsus$ advice).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where the embedded database and generated keys live when nothing else is configured.
pub const DEFAULT_DATA_DIR: &str = "data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const ENV_PREFIX: &str = "COUNTERSIGN_";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `human` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Directory for the embedded SQLite database and the generated audit key.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// The URL phones use to reach this server (`https://mfa.example.com`); it goes into
    /// enrollment QR codes and phones bind their keys to it. Defaults to `http://<listen>` when
    /// listening on loopback.
    pub public_url: Option<String>,
    /// Base64 root secret (≥ 32 bytes) every server key is derived from. Every instance sharing
    /// a database must use the same one. Prefer `master_key_file` or the environment.
    pub master_key: Option<SecretString>,
    /// File holding the master key (base64). With SQLite and nothing configured,
    /// `<data_dir>/master.key` is created on first start.
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub devices: DevicesConfig,
    #[serde(default)]
    pub challenges: ChallengesConfig,
    #[serde(default)]
    pub fatigue: FatigueConfig,
    /// Signed webhook for security alerts.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Push providers (`[push.apns]`, `[push.fcm]`); without them phones pull.
    #[serde(default)]
    pub push: crate::push::PushConfig,
    /// The WebAuthn relying party (`[webauthn] rp_id`, `origins`, `allowed_aaguids`); by default
    /// the public URL's host and origin (`localhost` for a loopback address).
    #[serde(default)]
    pub webauthn: crate::passkeys::model::WebauthnConfig,
    /// The OIDC provider (`[[oidc.upstream]]`: issuers whose `id_token_hint` names the user).
    #[serde(default)]
    pub oidc: crate::oidc::upstream::OidcConfig,
    /// Keycloak realms whose CIBA requests this server answers (`[[keycloak.realms]]`).
    #[serde(default)]
    pub keycloak: crate::keycloak::config::KeycloakConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengesConfig {
    /// How long a challenge may be answered (at most 300 s).
    #[serde(default = "default_challenge_ttl")]
    pub ttl_secs: u64,
    /// Digits of the number shown on the login screen (2-6). With one attempt per challenge a
    /// guess succeeds with probability 10^-digits.
    #[serde(default = "default_number_digits")]
    pub number_digits: u8,
}

impl Default for ChallengesConfig {
    fn default() -> Self {
        Self { ttl_secs: default_challenge_ttl(), number_digits: default_number_digits() }
    }
}

/// `[fatigue]`: the push budget and escalation ladder. Every value is bounded: a budget can't be
/// raised past what keeps push-bombing pointless, and the lock can't come later than NIST's 100.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FatigueConfig {
    pub push_budget: u32,
    pub budget_window_secs: u64,
    pub failures_before_freeze: i32,
    pub freeze_secs: u64,
    pub max_freeze_secs: u64,
    pub hard_lock_after: i32,
    /// Audible prompts per user per rolling day; beyond it prompts are silent (1..=20: an
    /// attacker who cancels and retries gets at most this many notifications a day, and far
    /// fewer once two go unanswered).
    pub audible_per_day: u32,
}

impl Default for FatigueConfig {
    fn default() -> Self {
        let policy = crate::fatigue::model::Policy::default();
        Self {
            push_budget: policy.push_budget,
            budget_window_secs: policy.budget_window.whole_seconds() as u64,
            failures_before_freeze: policy.failures_before_freeze,
            freeze_secs: policy.freeze.whole_seconds() as u64,
            max_freeze_secs: policy.max_freeze.whole_seconds() as u64,
            hard_lock_after: policy.hard_lock_after,
            audible_per_day: policy.audible_per_day,
        }
    }
}

impl FatigueConfig {
    fn policy(&self) -> Result<crate::fatigue::model::Policy, ConfigError> {
        let secs = |key: &'static str, value: u64| {
            i64::try_from(value)
                .map(time::Duration::seconds)
                .map_err(|_| ConfigError::Invalid { key, problem: format!("is too large (got {value})") })
        };
        let policy = crate::fatigue::model::Policy {
            push_budget: self.push_budget,
            budget_window: secs("fatigue.budget_window_secs", self.budget_window_secs)?,
            failures_before_freeze: self.failures_before_freeze,
            freeze: secs("fatigue.freeze_secs", self.freeze_secs)?,
            max_freeze: secs("fatigue.max_freeze_secs", self.max_freeze_secs)?,
            hard_lock_after: self.hard_lock_after,
            audible_per_day: self.audible_per_day,
            ..crate::fatigue::model::Policy::default()
        };
        policy.validate().map_err(|e| ConfigError::Invalid { key: e.key, problem: e.problem })?;
        Ok(policy)
    }
}

fn default_challenge_ttl() -> u64 {
    60
}
fn default_number_digits() -> u8 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// How far a signed device request's timestamp may be from the server clock.
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew_secs: u64,
    /// Lifetime of activation codes (at most 600 s).
    #[serde(default = "default_enrollment_ttl")]
    pub enrollment_ttl_secs: u64,
    /// Refused device requests (bad signature, unknown id, replay, ...) naming one device id,
    /// per minute, before further unverified ones get `429` (1-100). Per instance.
    #[serde(default = "default_refused_per_device")]
    pub refused_per_device_per_minute: u32,
    /// Refused device requests from one source network (/24, /64) per minute before every
    /// device request from it gets `429` for a while (10-10000). Per instance.
    #[serde(default = "default_refused_per_network")]
    pub refused_per_network_per_minute: u32,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            max_clock_skew_secs: default_max_clock_skew(),
            enrollment_ttl_secs: default_enrollment_ttl(),
            refused_per_device_per_minute: default_refused_per_device(),
            refused_per_network_per_minute: default_refused_per_network(),
        }
    }
}

impl DevicesConfig {
    fn refusal_limits(&self) -> Result<crate::devices::refusals::RefusalLimits, ConfigError> {
        let per_device = self.refused_per_device_per_minute;
        let per_network = self.refused_per_network_per_minute;
        bounded("devices.refused_per_device_per_minute", u64::from(per_device), 1, 100)?;
        bounded("devices.refused_per_network_per_minute", u64::from(per_network), 10, 10_000)?;
        Ok(crate::devices::refusals::RefusalLimits {
            per_device_per_minute: per_device,
            per_network_per_minute: per_network,
        })
    }
}

fn default_refused_per_device() -> u32 {
    crate::devices::refusals::RefusalLimits::default().per_device_per_minute
}
fn default_refused_per_network() -> u32 {
    crate::devices::refusals::RefusalLimits::default().per_network_per_minute
}

fn default_max_clock_skew() -> u64 {
    300
}
fn default_enrollment_ttl() -> u64 {
    600
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://…`; default `sqlite:<data_dir>/countersign.db`.
    /// `DATABASE_URL` is honoured too.
    pub url: Option<SecretString>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How far an instance's clock may be from the database's (PostgreSQL) before the instance
    /// refuses to start and reports not-ready; expiry itself runs on the database clock.
    #[serde(default = "default_database_clock_skew")]
    pub max_clock_skew_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: default_max_connections(),
            max_clock_skew_secs: default_database_clock_skew(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered with `503 timeout`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: default_body_limit(),
            request_timeout_secs: default_request_timeout(),
            shutdown_grace_secs: default_shutdown_grace(),
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_max_connections() -> u32 {
    10
}
fn default_database_clock_skew() -> u64 {
    crate::skew::DEFAULT_MAX_SKEW.whole_seconds() as u64
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_request_timeout() -> u64 {
    30
}
fn default_shutdown_grace() -> u64 {
    30
}

/// A configuration that cannot be used, with the key at fault and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}` is refused: {reason}")]
    Forbidden { key: String, reason: &'static str },
    #[error("configuration key `{key}` is invalid: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

/// Settings that Countersign refuses to have, and why. Matched on the last part of any key.
const FORBIDDEN_KEYS: &[(&str, &str)] = &[
    (
        "trusted_networks",
        "Countersign has no MFA exemption by network: a stolen password used from inside the network is exactly the Lapsus$ pattern",
    ),
    ("trusted_ips", "Countersign has no MFA exemption by IP address"),
    ("trusted_locations", "Countersign has no MFA exemption by location"),
    ("mfa_bypass", "there is no way to bypass MFA"),
    ("bypass", "there is no way to bypass MFA"),
    ("skip_mfa", "there is no way to bypass MFA"),
    ("sms", "SMS codes are a weak factor (SIM swap, interception) and are not offered"),
    ("voice", "voice calls are a weak factor and are not offered"),
    ("email_otp", "e-mail codes are a weak factor (mailbox takeover) and are not offered"),
    (
        "approve_only_push",
        "approve/deny push without number matching invites push-bombing and is not offered",
    ),
    ("number_matching", "number matching is always on and cannot be turned off"),
];

impl Config {
    /// Reads the optional file, then the environment. A file named explicitly must exist.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        refuse_forbidden(&figment)?;
        figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks every value against its bounds and resolves derived settings.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            problem: format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
        })?;
        let database_url = match self.database.url {
            Some(url) => url,
            None => SecretString::from(format!("sqlite:{}", self.data_dir.join("countersign.db").display())),
        };
        let url = database_url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "database.url",
                problem: "must start with sqlite: or postgres://".to_owned(),
            });
        }
        bounded("database.max_connections", self.database.max_connections as u64, 1, 1_000)?;
        bounded("database.max_clock_skew_secs", self.database.max_clock_skew_secs, 1, 60)?;
        bounded("http.body_limit_bytes", self.http.body_limit_bytes as u64, 1_024, 10 * 1024 * 1024)?;
        bounded("http.request_timeout_secs", self.http.request_timeout_secs, 1, 300)?;
        bounded("http.shutdown_grace_secs", self.http.shutdown_grace_secs, 0, 600)?;
        bounded("challenges.ttl_secs", self.challenges.ttl_secs, 10, 300)?;
        bounded("challenges.number_digits", u64::from(self.challenges.number_digits), 2, 6)?;
        bounded("devices.max_clock_skew_secs", self.devices.max_clock_skew_secs, 30, 900)?;
        bounded("devices.enrollment_ttl_secs", self.devices.enrollment_ttl_secs, 60, 600)?;
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "master_key",
                problem: "set either master_key or master_key_file, not both".to_owned(),
            });
        }
        let public_url = match self.public_url {
            Some(url) => Some(countersign_mobile_protocol::ServerUrl::parse(&url).map_err(|e| {
                ConfigError::Invalid {
                    key: "public_url",
                    problem: format!(
                        "{e} (expected https://host[:port][/path], lower case, no trailing slash)"
                    ),
                }
            })?),
            // Derived from the bound address at start-up (the port may be 0 until then).
            None if listen.ip().is_loopback() => None,
            None => {
                return Err(ConfigError::Invalid {
                    key: "public_url",
                    problem: format!(
                        "required when listening on {listen}: phones must know the https:// address they reach this server at"
                    ),
                });
            }
        };
        // Checked now against the public URL (or the loopback address it will be derived from),
        // resolved again at start-up once the bound port is known.
        let url_for_check =
            public_url.as_ref().map_or_else(|| format!("http://{listen}"), |u| u.as_str().to_owned());
        crate::passkeys::model::WebauthnSettings::resolve(&self.webauthn, &url_for_check)
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        self.oidc.resolve().map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        self.keycloak.resolve().map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        Ok(Settings {
            listen,
            log_format: self.log_format,
            data_dir: self.data_dir,
            database_url,
            max_connections: self.database.max_connections,
            database_clock_skew: time::Duration::seconds(self.database.max_clock_skew_secs as i64),
            body_limit_bytes: self.http.body_limit_bytes,
            request_timeout: std::time::Duration::from_secs(self.http.request_timeout_secs),
            shutdown_grace: std::time::Duration::from_secs(self.http.shutdown_grace_secs),
            public_url,
            master_key: self.master_key,
            master_key_file: self.master_key_file,
            max_clock_skew_secs: self.devices.max_clock_skew_secs,
            device_refusals: self.devices.refusal_limits()?,
            challenge_ttl: time::Duration::seconds(self.challenges.ttl_secs as i64),
            push: self.push,
            fatigue: self.fatigue.policy()?,
            alerts: self.alerts,
            number_digits: self.challenges.number_digits,
            enrollment_ttl: time::Duration::seconds(self.devices.enrollment_ttl_secs as i64),
            webauthn: self.webauthn,
            oidc: self.oidc,
            keycloak: self.keycloak,
        })
    }
}

/// Validated settings the rest of the server uses.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub max_connections: u32,
    /// Bound on this instance's clock offset from the database's.
    pub database_clock_skew: time::Duration,
    pub body_limit_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub shutdown_grace: std::time::Duration,
    /// `None`: `http://<bound address>`, allowed only on loopback.
    pub public_url: Option<countersign_mobile_protocol::ServerUrl>,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    pub max_clock_skew_secs: u64,
    pub device_refusals: crate::devices::refusals::RefusalLimits,
    pub enrollment_ttl: time::Duration,
    pub challenge_ttl: time::Duration,
    pub number_digits: u8,
    pub push: crate::push::PushConfig,
    pub fatigue: crate::fatigue::model::Policy,
    pub alerts: crate::alerts::AlertsConfig,
    pub webauthn: crate::passkeys::model::WebauthnConfig,
    pub oidc: crate::oidc::upstream::OidcConfig,
    pub keycloak: crate::keycloak::config::KeycloakConfig,
}

impl Settings {
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

fn bounded(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid { key, problem: format!("must be between {min} and {max} (got {value})") })
    }
}

fn refuse_forbidden(figment: &Figment) -> Result<(), ConfigError> {
    let data = figment.data().map_err(|e| ConfigError::Load(Box::new(e)))?;
    for dict in data.values() {
        if let Some((key, reason)) = find_forbidden(dict, "") {
            return Err(ConfigError::Forbidden { key, reason });
        }
    }
    Ok(())
}

fn find_forbidden(dict: &Dict, prefix: &str) -> Option<(String, &'static str)> {
    for (key, value) in dict {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let name = key.to_ascii_lowercase();
        if let Some((_, reason)) = FORBIDDEN_KEYS.iter().find(|(forbidden, _)| *forbidden == name) {
            return Some((path, reason));
        }
        if let Value::Dict(_, inner) = value
            && let Some(found) = find_forbidden(inner, &path)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn defaults_need_no_file() {
        // Only meaningful where the environment sets nothing of ours.
        let env_overrides = std::env::vars().any(|(k, _)| k.starts_with(ENV_PREFIX) || k == "DATABASE_URL");
        let settings = Config::load(None).unwrap().validate().unwrap();
        if !env_overrides {
            assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
            assert!(settings.is_sqlite());
            assert_eq!(settings.body_limit_bytes, 64 * 1024);
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn forbidden_keys_explain_why() {
        let err = load_toml("[policy]\ntrusted_networks = [\"10.0.0.0/8\"]\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Forbidden { ref key, .. } if key == "policy.trusted_networks"),
            "{err}"
        );
        let err = load_toml("sms = true\n").unwrap_err().to_string();
        assert!(err.contains("weak factor"), "{err}");
    }

    #[test]
    fn out_of_bounds_values_are_refused() {
        let err = load_toml("[http]\nbody_limit_bytes = 10\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "http.body_limit_bytes", .. }), "{err}");
        let err = load_toml("listen = \"nowhere\"\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "listen", .. }), "{err}");
        let err = load_toml("[database]\nurl = \"mysql://x\"\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "database.url", .. }), "{err}");
    }

    #[test]
    fn fatigue_settings_are_bounded() {
        let err = load_toml("[fatigue]\npush_budget = 50\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "fatigue.push_budget", .. }), "{err}");
        let err = load_toml("[fatigue]\nhard_lock_after = 1000\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "fatigue.hard_lock_after", .. }), "{err}");
        let err = load_toml("[challenges]\nnumber_digits = 1\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "challenges.number_digits", .. }), "{err}");
        let ok = load_toml("[fatigue]\npush_budget = 3\n").unwrap().validate().unwrap();
        assert_eq!(ok.fatigue.push_budget, 3);
    }

    #[test]
    fn device_refusal_limits_are_bounded() {
        let ok = load_toml("[devices]\nrefused_per_device_per_minute = 5\n").unwrap().validate().unwrap();
        assert_eq!(ok.device_refusals.per_device_per_minute, 5);
        let err =
            load_toml("[devices]\nrefused_per_device_per_minute = 0\n").unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "devices.refused_per_device_per_minute", .. }));
        let err = load_toml("[devices]\nrefused_per_network_per_minute = 1000000\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "devices.refused_per_network_per_minute", .. }));
    }

    #[test]
    fn a_bad_keycloak_realm_refuses_to_start() {
        let realm = "[[keycloak.realms]]\nissuer = \"https://kc.example.com/realms/acme\"\nname = \"Acme\"\n";
        let ok = load_toml(realm).unwrap().validate().unwrap();
        assert_eq!(ok.keycloak.resolve().unwrap()[0].issuer, "https://kc.example.com/realms/acme");
        let plain = realm.replace("https://kc.example.com", "http://kc.example.com");
        let err = load_toml(&plain).unwrap().validate().unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "keycloak.realms", .. }), "{err}");
        assert!(err.to_string().contains("http is only allowed for loopback"), "{err}");
        let misspelt = format!("{realm}callback = \"https://kc.example.com/cb\"\n");
        assert!(load_toml(&misspelt).unwrap_err().to_string().contains("callback"));
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(matches!(
            Config::load(Some(Path::new("/nonexistent/c.toml"))),
            Err(ConfigError::MissingFile(_))
        ));
    }
}
