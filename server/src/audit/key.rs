//! The key that seals the audit chain head: from configuration, from a file, or (SQLite only)
//! generated on first start. It never lives in the database it protects.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use super::chain::HeadSealer;
use crate::config::Settings;

const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error(
        "audit.key (or audit.key_file) is required with PostgreSQL: every instance must seal the audit chain with the same key. Generate one with `openssl rand -base64 32` and set COUNTERSIGN_AUDIT__KEY"
    )]
    Required,
    #[error("{what} is not valid base64")]
    NotBase64 { what: String },
    #[error("{what} is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { what: String, len: usize },
    #[error("cannot read or create audit key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the system random number generator failed")]
    Random,
}

/// Resolves the sealing key the settings call for.
pub fn load_sealer(settings: &Settings) -> Result<HeadSealer, AuditKeyError> {
    if let Some(key) = &settings.audit_key {
        return decode(key.expose_secret(), "audit.key");
    }
    if let Some(path) = &settings.audit_key_file {
        return read_key_file(path);
    }
    if settings.is_sqlite() {
        let path = settings.data_dir.join("audit.key");
        if !path.exists() {
            create_key_file(&path)?;
        }
        return read_key_file(&path);
    }
    Err(AuditKeyError::Required)
}

/// Checks the key settings without creating anything: an explicit key must decode; with
/// PostgreSQL one of `audit.key` / `audit.key_file` must be set.
pub fn check_configured(settings: &Settings) -> Result<(), AuditKeyError> {
    match (&settings.audit_key, &settings.audit_key_file) {
        (Some(key), _) => decode(key.expose_secret(), "audit.key").map(drop),
        (None, Some(path)) => read_key_file(path).map(drop),
        (None, None) if settings.is_sqlite() => Ok(()),
        (None, None) => Err(AuditKeyError::Required),
    }
}

fn read_key_file(path: &Path) -> Result<HeadSealer, AuditKeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AuditKeyError::Io { path: path.to_owned(), source })?;
    decode(text.trim(), &format!("audit key file {}", path.display()))
}

fn decode(b64: &str, what: &str) -> Result<HeadSealer, AuditKeyError> {
    let bytes =
        STANDARD.decode(b64.trim()).map_err(|_| AuditKeyError::NotBase64 { what: what.to_owned() })?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(AuditKeyError::TooShort { what: what.to_owned(), len: bytes.len() });
    }
    Ok(HeadSealer::new(&bytes))
}

/// Writes a fresh random key, readable by the owner only, never replacing an existing file.
fn create_key_file(path: &Path) -> Result<(), AuditKeyError> {
    let io_err = |source| AuditKeyError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| AuditKeyError::Random)?;
    let encoded = SecretString::from(STANDARD.encode(key));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(encoded.expose_secret().as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn sqlite_generates_a_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Config::load(None).unwrap().validate().unwrap();
        settings.data_dir = dir.path().to_owned();
        settings.database_url = SecretString::from("sqlite:x.db");
        settings.audit_key = None;
        settings.audit_key_file = None;
        let first = load_sealer(&settings).unwrap();
        let second = load_sealer(&settings).unwrap();
        let mac = first.seal(1, &[1; 32]);
        assert!(second.is_valid(1, &[1; 32], &mac), "the generated key must be reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("audit.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn postgres_requires_an_explicit_key_and_short_keys_are_refused() {
        let mut settings = Config::load(None).unwrap().validate().unwrap();
        settings.database_url = SecretString::from("postgres://db/cs");
        settings.audit_key = None;
        settings.audit_key_file = None;
        assert!(matches!(load_sealer(&settings), Err(AuditKeyError::Required)));
        settings.audit_key = Some(SecretString::from(STANDARD.encode([1u8; 16])));
        assert!(matches!(load_sealer(&settings), Err(AuditKeyError::TooShort { len: 16, .. })));
        settings.audit_key = Some(SecretString::from(STANDARD.encode([1u8; 32])));
        assert!(load_sealer(&settings).is_ok());
    }
}
