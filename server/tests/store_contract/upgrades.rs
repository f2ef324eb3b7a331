//! Upgrades lose nothing: a migration that rebuilds a table (SQLite cannot alter a column)
//! carries its rows over. Each test migrates a fresh database to the version before, writes
//! what a running server would have in flight, then lets the store apply the rest.

use std::path::Path;

use countersign::ids::{AppId, RegistrationId};
use countersign::store;
use countersign_e2e::{Engine, TestDatabase, exec_sql};
use secrecy::SecretString;
use sqlx::Connection;

/// Applies the engine's migrations up to and including `version`, as an older release did.
async fn migrate_up_to(db: &TestDatabase, version: i64) {
    let engine_dir = match db.engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(engine_dir);
    let older = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= version {
            std::fs::copy(&path, older.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(older.path()).await.unwrap();
    match db.engine {
        Engine::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = db.url.parse().unwrap();
            let mut conn =
                sqlx::SqliteConnection::connect_with(&options.create_if_missing(true)).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
        }
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
        }
    }
}

const APP: &str = "0b6f1f5e-8d0c-4a39-9d8e-3f0a4c1e2b71";
const USER: &str = "5d1e0c2a-7b3f-4e68-a1d9-0c6b2f8e4a13";
const CEREMONY: &str = "9a4c6e1b-2d8f-4b07-8e5a-1f3c7d9b0e26";

/// A registration ceremony and its enrollment link, begun by an app before operator links
/// existed (0014 made their app nullable), finish after the upgrade as they began.
async fn passkey_ceremonies_in_flight_survive_0014(engine: Engine) {
    let db = TestDatabase::new(engine).await;
    migrate_up_to(&db, 13).await;
    let rows = match engine {
        Engine::Sqlite => format!(
            "INSERT INTO apps (id, name, key_id, key_hash, scopes, created_at) VALUES ('{APP}', 'portal', 'k1', x'00', 'users:write', 0);
             INSERT INTO users (id, username, created_at) VALUES ('{USER}', 'alice', 0);
             INSERT INTO webauthn_registrations VALUES ('{CEREMONY}', '{USER}', '{APP}', 'Laptop', 1, x'0102', 1000, 600001000);
             INSERT INTO passkey_enrollment_links VALUES (x'aa', '{CEREMONY}', '{USER}', 'alice', '{APP}', 'portal', '{{}}', 1000, 600001000);"
        ),
        Engine::Postgres => format!(
            "INSERT INTO apps (id, name, key_id, key_hash, scopes, created_at) VALUES ('{APP}', 'portal', 'k1', '\\x00', 'users:write', now());
             INSERT INTO users (id, username, created_at) VALUES ('{USER}', 'alice', now());
             INSERT INTO webauthn_registrations VALUES ('{CEREMONY}', '{USER}', '{APP}', 'Laptop', true, '\\x0102', now(), now() + interval '10 minutes');
             INSERT INTO passkey_enrollment_links VALUES ('\\xaa', '{CEREMONY}', '{USER}', 'alice', '{APP}', 'portal', '{{}}', now(), now() + interval '10 minutes');"
        ),
    };
    exec_sql(&db, &rows).await.unwrap();

    let sealer = countersign::audit::chain::AuditSealer::new(&[42u8; 32]);
    let store = store::connect(&SecretString::from(db.url.clone()), 2, sealer).await.unwrap();
    store.migrate().await.unwrap();
    let id = RegistrationId(CEREMONY.parse().unwrap());
    let ceremony = store.registration(id).await.unwrap().expect("the ceremony survives the upgrade");
    assert_eq!(ceremony.app_id, Some(AppId(APP.parse().unwrap())));
    assert_eq!((ceremony.name.as_str(), ceremony.is_first_factor), ("Laptop", true));
    assert_eq!(ceremony.server_state, vec![1, 2]);
    let link = store.enrollment_link(&[0xaa]).await.unwrap().expect("the link survives the upgrade");
    assert_eq!(link.registration_id, id);
    assert_eq!(link.app_name.as_deref(), Some("portal"));
    assert_eq!(link.actor().to_string(), format!("app:{APP}"));
}

on_both_engines!(passkey_ceremonies_in_flight_survive_0014);
