//! Where the embedded database keeps its data, and who may read it (SQLite only: PostgreSQL's
//! files belong to the database server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign::api_keys::service as api_keys;
use countersign::audit::Actor;

/// Another local account reads the SQLite database (device keys, sealed secrets, the audit
/// trail): the data directory must be created 0700 and the database with its `-wal`/`-shm`
/// files 0600; a database file left 0644 by an older version is narrowed at open.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let db = data.join("countersign.db");
    let master = countersign::secrets::MasterKey::from_bytes(&[9; 32]);
    let url = secrecy::SecretString::from(format!("sqlite:{}", db.display()));
    let store = countersign::store::connect(&url, 2, master.audit_sealer()).await.unwrap();
    store.migrate().await.unwrap();
    let clock = countersign::clock::ManualClock::new(time::macros::datetime!(2026-11-28 09:00:00 UTC));
    api_keys::create_app(store.as_ref(), &clock, Actor::Cli, "portal", "users:read".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&db), 0o600, "database file");
    for suffix in ["-wal", "-shm"] {
        let companion = data.join(format!("countersign.db{suffix}"));
        assert_eq!(mode(&companion), 0o600, "{}", companion.display());
    }
    drop(store);

    let legacy = root.path().join("legacy.db");
    std::fs::write(&legacy, b"").unwrap();
    std::fs::set_permissions(&legacy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = secrecy::SecretString::from(format!("sqlite:{}", legacy.display()));
    let store = countersign::store::connect(&url, 2, master.audit_sealer()).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(mode(&legacy), 0o600, "an existing database is narrowed to its owner");
}
