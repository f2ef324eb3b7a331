//! The state file: this simulated phone's private key, its account and its response counter.
//!
//! A real phone keeps its key in the Secure Enclave or StrongBox; here the PKCS#8 key sits in a
//! JSON file instead, so the file is treated like an SSH private key:
//!
//! * it is created with mode 0600 from the first byte (a temporary file opened with that mode,
//!   never a world-readable file later `chmod`ed), and a file readable or writable by group or
//!   others is refused on load;
//! * every write is atomic (temporary file in the same directory, `fsync`, `rename`, `fsync` of the
//!   directory), so a crash leaves either the old or the new state, never a torn one;
//! * read-modify-write cycles hold an exclusive lock on a sibling `<file>.lock`, so two processes
//!   using the same state file (say `watch` and `approve`) can never hand out the same counter.
//!
//! Format (JSON, `format` 1):
//! ```json
//! {
//!   "format": 1,
//!   "private_key": "<PKCS#8 DER, unpadded base64url>",
//!   "server": "https://mfa.example.com",
//!   "username": "alice@example.com",
//!   "enrollment": {"device_id": "...", "server_id": "...", "server_public_key": "..."},
//!   "last_counter": 7
//! }
//! ```
//! `enrollment` is `null` between saving a fresh key and the server accepting it: the key is
//! written *before* the single-use activation code is spent, so an unwritable state file fails the
//! enrollment early instead of consuming the code for a key that would then be lost.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_mobile_protocol::{EnrollmentResponse, ServerUrl};
use ring::rand::SecureRandom;
use ring::signature::EcdsaKeyPair;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The only state-file format this version reads and writes.
pub const STATE_FORMAT: u32 = 1;

/// Mode of the state file and its lock file: owner read/write only.
const PRIVATE_MODE: u32 = 0o600;

/// The device's PKCS#8 private key (the "hardware key" of the simulated phone).
///
/// Serialised as unpadded base64url, like every binary value in the protocol. `Debug` never shows
/// the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrivateKey(Vec<u8>);

impl PrivateKey {
    /// Generates a fresh P-256 key. A phone generates one per account, inside secure hardware.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, Error> {
        Ok(Self(countersign_mobile_protocol::generate_pkcs8(rng)?))
    }

    /// The signing key pair.
    pub fn key_pair(&self, rng: &dyn SecureRandom) -> Result<EcdsaKeyPair, Error> {
        Ok(countersign_mobile_protocol::key_pair_from_pkcs8(&self.0, rng)?)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl TryFrom<String> for PrivateKey {
    type Error = base64::DecodeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        URL_SAFE_NO_PAD.decode(text).map(Self)
    }
}

impl From<PrivateKey> for String {
    fn from(key: PrivateKey) -> Self {
        URL_SAFE_NO_PAD.encode(key.0)
    }
}

/// Contents of the state file (see the module docs for the JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Always [`STATE_FORMAT`].
    pub format: u32,
    /// The device key; fresh for every enrollment, never reused across accounts.
    pub private_key: PrivateKey,
    /// Server base URL from the enrollment URI; every path is appended to it.
    pub server: ServerUrl,
    /// Username from the enrollment URI, for display only.
    pub username: String,
    /// What the server answered at enrollment; `None` until it has.
    pub enrollment: Option<EnrollmentResponse>,
    /// Last counter used in a challenge response (0: none yet, so the first one sent is 1).
    pub last_counter: u64,
}

impl State {
    /// A state for a key about to be enrolled with `server`.
    pub fn new(private_key: PrivateKey, server: ServerUrl, username: String) -> Self {
        Self { format: STATE_FORMAT, private_key, server, username, enrollment: None, last_counter: 0 }
    }
}

/// An enrolled account, as loaded from the state file.
#[derive(Debug, Clone)]
pub struct Account {
    /// The whole state.
    pub state: State,
    /// Its enrollment (present by construction).
    pub enrollment: EnrollmentResponse,
}

/// The state file on disk.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads and checks the state, or `None` if there is no file.
    pub fn load_if_exists(&self) -> Result<Option<State>, Error> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io_error("cannot open", &error)),
        };
        // Check the permissions of the file actually opened, not of whatever the path names now.
        let metadata = file.metadata().map_err(|e| self.io_error("cannot inspect", &e))?;
        if !metadata.is_file() {
            return Err(self.error("is not a regular file"));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.error(format!(
                "is accessible by group or others (mode {mode:04o}) but holds the device's private key; \
                 run `chmod 600 {}` if it was not exposed, otherwise enroll again",
                self.path.display()
            )));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| self.io_error("cannot read", &e))?;
        let state: State =
            serde_json::from_str(&text).map_err(|e| self.error(format!("is not a valid state file: {e}")))?;
        if state.format != STATE_FORMAT {
            return Err(self.error(format!(
                "has format {}, this version reads only format {STATE_FORMAT}",
                state.format
            )));
        }
        Ok(Some(state))
    }

    /// Loads the state; a missing file is an error telling the user to enroll.
    pub fn load(&self) -> Result<State, Error> {
        self.load_if_exists()?.ok_or_else(|| {
            self.error("does not exist; run `countersign-authenticator enroll <activation-uri>`")
        })
    }

    /// Loads the state and requires a completed enrollment.
    pub fn load_account(&self) -> Result<Account, Error> {
        let state = self.load()?;
        let enrollment = state.enrollment.clone().ok_or_else(|| {
            self.error("holds no completed enrollment (the last `enroll` did not finish); enroll again")
        })?;
        Ok(Account { state, enrollment })
    }

    /// Writes `state` atomically, replacing any previous file.
    pub fn save(&self, state: &State) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.write(state)
    }

    /// Reserves the next response counter: increments `last_counter` and persists it before
    /// returning, so a crash after sending can never lead to the same counter being sent twice.
    pub fn next_counter(&self) -> Result<u64, Error> {
        let _lock = self.lock()?;
        let mut state = self.load()?;
        let counter = state
            .last_counter
            .checked_add(1)
            .ok_or_else(|| self.error("response counter exhausted (u64::MAX); enroll again"))?;
        state.last_counter = counter;
        self.write(&state)?;
        Ok(counter)
    }

    /// Deletes the state file and its lock file (after unenrolling: the key is useless now).
    pub fn remove(&self) -> Result<(), Error> {
        {
            let _lock = self.lock()?;
            fs::remove_file(&self.path).map_err(|e| self.io_error("cannot delete", &e))?;
        }
        match fs::remove_file(self.lock_path()) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(self.io_error("cannot delete the lock file of", &error))
            }
            _ => Ok(()),
        }
    }

    /// Atomic replace; the caller holds the lock.
    fn write(&self, state: &State) -> Result<(), Error> {
        let mut json = serde_json::to_vec_pretty(state)
            .map_err(|e| self.error(format!("cannot serialise state: {e}")))?;
        json.push(b'\n');
        write_atomically(&self.path, &json).map_err(|e| self.io_error("cannot write", &e))
    }

    /// Exclusive advisory lock on `<path>.lock`, released when the returned file is dropped.
    ///
    /// A sibling file is locked rather than the state file itself because the state file is
    /// replaced by `rename`, and a lock on a replaced inode protects nothing.
    fn lock(&self) -> Result<File, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_MODE)
            .open(self.lock_path())
            .map_err(|e| self.io_error("cannot open the lock file of", &e))?;
        file.lock().map_err(|e| self.io_error("cannot lock", &e))?;
        Ok(file)
    }

    fn lock_path(&self) -> PathBuf {
        let mut path = self.path.clone().into_os_string();
        path.push(".lock");
        PathBuf::from(path)
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::State { path: self.path.clone(), reason: reason.into() }
    }

    fn io_error(&self, what: &str, error: &io::Error) -> Error {
        self.error(format!("{what} it: {error}"))
    }
}

/// Writes `bytes` to `path` via a 0600 temporary file in the same directory, `fsync`, `rename`
/// and an `fsync` of the directory so the rename itself survives a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp_path = directory.join(temp_name);
    // Only a crashed earlier process with our pid can have left this behind; nobody else uses it.
    match fs::remove_file(&temp_path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let result = (|| {
        // `create_new` + mode: the file is born 0600 (umask can only remove bits), and
        // `set_permissions` makes it exactly 0600 whatever the umask.
        let mut file = OpenOptions::new().write(true).create_new(true).mode(PRIVATE_MODE).open(&temp_path)?;
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp_path, path)?;
        File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&temp_path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_mobile_protocol::{DeviceId, PublicKey, ServerId};
    use ring::rand::SystemRandom;

    fn state() -> State {
        let rng = SystemRandom::new();
        State::new(
            PrivateKey::generate(&rng).unwrap(),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "alice@example.com".into(),
        )
    }

    fn enrolled() -> State {
        let rng = SystemRandom::new();
        let server_key = PrivateKey::generate(&rng).unwrap().key_pair(&rng).unwrap();
        State {
            enrollment: Some(EnrollmentResponse {
                device_id: DeviceId::new("dev-1").unwrap(),
                server_id: ServerId::new("https://mfa.example.com").unwrap(),
                server_public_key: PublicKey::from_key_pair(&server_key).unwrap(),
            }),
            ..state()
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trips_and_key_still_signs() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        let original = enrolled();
        file.save(&original).unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded, original);
        assert!(loaded.private_key.key_pair(&SystemRandom::new()).is_ok());
        assert_eq!(file.load_account().unwrap().enrollment, original.enrollment.unwrap());
    }

    #[test]
    fn file_is_created_0600_and_stays_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        file.save(&enrolled()).unwrap();
        assert_eq!(mode(&path), 0o600);
        file.next_counter().unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&file.lock_path()), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn refuses_a_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        file.save(&enrolled()).unwrap();
        for exposed in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&path, fs::Permissions::from_mode(exposed)).unwrap();
            let error = file.load().unwrap_err();
            assert!(matches!(error, Error::State { .. }), "{error}");
            assert!(error.to_string().contains(&format!("mode {exposed:04o}")), "{error}");
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(file.load().is_ok(), "owner-only read is fine");
    }

    #[test]
    fn counter_is_persisted_and_strictly_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        file.save(&enrolled()).unwrap();
        let counters: Vec<u64> = (0..5).map(|_| file.next_counter().unwrap()).collect();
        assert_eq!(counters, [1, 2, 3, 4, 5]);
        // A fresh reader (another process, or this one after a crash) continues after it.
        assert_eq!(StateFile::new(file.path()).load().unwrap().last_counter, 5);
        assert_eq!(StateFile::new(file.path()).next_counter().unwrap(), 6);
    }

    #[test]
    fn concurrent_counters_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        StateFile::new(&path).save(&enrolled()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let file = StateFile::new(&path);
                std::thread::spawn(move || (0..10).map(|_| file.next_counter().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn missing_unenrolled_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert!(file.load_if_exists().unwrap().is_none());
        assert!(file.load().unwrap_err().to_string().contains("does not exist"));
        file.save(&state()).unwrap();
        assert!(file.load_account().unwrap_err().to_string().contains("no completed enrollment"));
        fs::write(file.path(), "{\"format\": 2}").unwrap();
        assert!(file.load().unwrap_err().to_string().contains("not a valid state file"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let state = state();
        let secret: String = state.private_key.clone().into();
        assert!(!format!("{state:?}").contains(&secret));
    }

    #[test]
    fn remove_deletes_state_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        file.save(&enrolled()).unwrap();
        file.remove().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
