//! The master key: one secret from which every server key is derived (HKDF-SHA256 with a
//! label per purpose), so an operator manages exactly one secret and no derived key can stand
//! in for another. It comes from configuration, from a file, or (SQLite only) is generated on
//! first start; it never lives in the database it protects.
//!
//! Derived today: the audit-head seal and the key that encrypts secrets stored in the database
//! (AES-256-GCM: the server's device-signing key, the OIDC signing keys, pending activation
//! codes).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use ring::aead::{self, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use crate::audit::chain::AuditSealer;
use crate::config::Settings;

const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "master_key (or master_key_file) is required with PostgreSQL: every instance must derive the same keys. Generate one with `openssl rand -base64 32` and set COUNTERSIGN_MASTER_KEY"
    )]
    Required,
    #[error("{what} is not valid base64")]
    NotBase64 { what: String },
    #[error("{what} is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { what: String, len: usize },
    #[error("cannot read or create master key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the system random number generator failed")]
    Random,
}

/// The root secret. Debug output never shows it.
pub struct MasterKey {
    prk: hkdf::Prk,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Purposes of derived keys; each label yields an unrelated key.
const AUDIT_SEAL_LABEL: &[u8] = b"countersign/v1/audit-head-seal";
const STORAGE_AEAD_LABEL: &[u8] = b"countersign/v1/storage-encryption";
const AEAD_NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
#[error("stored secret cannot be decrypted: wrong master key or tampered data")]
pub struct DecryptError;

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"countersign master key");
        Self { prk: salt.extract(bytes) }
    }

    /// A 32-byte key for `label`; each label yields an unrelated key.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let info = [label];
        // 32 bytes is always a valid HKDF-SHA256 output length, so these cannot fail.
        if let Ok(okm) = self.prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// The key that seals the audit chain head.
    pub fn audit_sealer(&self) -> AuditSealer {
        AuditSealer::new(&self.derive_key(AUDIT_SEAL_LABEL))
    }

    fn storage_key(&self) -> LessSafeKey {
        let bytes = self.derive_key(STORAGE_AEAD_LABEL);
        // AES-256 takes exactly 32 bytes.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).unwrap_or_else(|_| unreachable_key()))
    }

    /// Encrypts a secret for storage: random nonce ‖ ciphertext ‖ tag. `context` (e.g. the
    /// row's purpose and id) is authenticated, so a ciphertext cannot be moved to another row.
    pub fn encrypt(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| MasterKeyError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.storage_key()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .map_err(|_| MasterKeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, context: &[u8], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if stored.len() < AEAD_NONCE_LEN + aead::MAX_TAG_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = stored.split_at(AEAD_NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .storage_key()
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| DecryptError)?;
        Ok(plain.to_vec())
    }
}

#[allow(clippy::panic)] // AES-256-GCM with a 32-byte key cannot be rejected by ring
fn unreachable_key() -> UnboundKey {
    panic!("ring refused a 32-byte AES-256 key")
}

/// Resolves the master key the settings call for.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, MasterKeyError> {
    if let Some(key) = &settings.master_key {
        return decode(key.expose_secret(), "master_key");
    }
    if let Some(path) = &settings.master_key_file {
        return read_key_file(path);
    }
    if settings.is_sqlite() {
        let path = settings.data_dir.join("master.key");
        if !path.exists() {
            create_key_file(&path)?;
        }
        return read_key_file(&path);
    }
    Err(MasterKeyError::Required)
}

/// Checks the key settings without creating anything: an explicit key must decode; with
/// PostgreSQL one of `master_key` / `master_key_file` must be set.
pub fn check_configured(settings: &Settings) -> Result<(), MasterKeyError> {
    match (&settings.master_key, &settings.master_key_file) {
        (Some(key), _) => decode(key.expose_secret(), "master_key").map(drop),
        (None, Some(path)) => read_key_file(path).map(drop),
        (None, None) if settings.is_sqlite() => Ok(()),
        (None, None) => Err(MasterKeyError::Required),
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| MasterKeyError::Io { path: path.to_owned(), source })?;
    decode(text.trim(), &format!("master key file {}", path.display()))
}

fn decode(b64: &str, what: &str) -> Result<MasterKey, MasterKeyError> {
    let bytes =
        STANDARD.decode(b64.trim()).map_err(|_| MasterKeyError::NotBase64 { what: what.to_owned() })?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(MasterKeyError::TooShort { what: what.to_owned(), len: bytes.len() });
    }
    Ok(MasterKey::from_bytes(&bytes))
}

/// Writes a fresh random key, readable by the owner only, never replacing an existing file.
fn create_key_file(path: &Path) -> Result<(), MasterKeyError> {
    let io_err = |source| MasterKeyError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        crate::private_files::create_dir_all(dir).map_err(io_err)?;
    }
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| MasterKeyError::Random)?;
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
        settings.master_key = None;
        settings.master_key_file = None;
        let first = load_master_key(&settings).unwrap();
        let second = load_master_key(&settings).unwrap();
        let mac = first.audit_sealer().seal(1, &[1; 32]);
        assert!(second.audit_sealer().is_valid(1, &[1; 32], &mac), "the generated key must be reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn postgres_requires_an_explicit_key_and_short_keys_are_refused() {
        let mut settings = Config::load(None).unwrap().validate().unwrap();
        settings.database_url = SecretString::from("postgres://db/cs");
        settings.master_key = None;
        settings.master_key_file = None;
        assert!(matches!(load_master_key(&settings), Err(MasterKeyError::Required)));
        settings.master_key = Some(SecretString::from(STANDARD.encode([1u8; 16])));
        assert!(matches!(load_master_key(&settings), Err(MasterKeyError::TooShort { len: 16, .. })));
        settings.master_key = Some(SecretString::from(STANDARD.encode([1u8; 32])));
        assert!(load_master_key(&settings).is_ok());
    }

    #[test]
    fn derived_keys_are_separate_and_encryption_is_bound_to_context() {
        let master = MasterKey::from_bytes(&[3u8; 32]);
        let other = MasterKey::from_bytes(&[4u8; 32]);
        let mac = master.audit_sealer().seal(1, &[0; 32]);
        assert!(!other.audit_sealer().is_valid(1, &[0; 32], &mac));

        let sealed = master.encrypt(b"row:1", b"secret").unwrap();
        assert_eq!(master.decrypt(b"row:1", &sealed).unwrap(), b"secret");
        assert!(master.decrypt(b"row:2", &sealed).is_err(), "moved to another row");
        assert!(other.decrypt(b"row:1", &sealed).is_err(), "wrong master key");
        let mut flipped = sealed.clone();
        flipped[14] ^= 1;
        assert!(master.decrypt(b"row:1", &flipped).is_err(), "tampered");
        assert_ne!(master.encrypt(b"row:1", b"secret").unwrap(), sealed, "fresh nonce each time");
    }
}
