//! End-to-end: `countersign clients create|list|revoke` with the real binary, on SQLite and
//! PostgreSQL — every method, secrets shown once and never listed, bad input refused with a
//! message naming the problem (exit 2), everything audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_e2e::jose::{TestKey, jwks_json};
use countersign_e2e::{Engine, Server};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// The `name=value` lines a `clients create` printed.
fn printed(stdout: &[u8], name: &str) -> Option<String> {
    text(stdout).lines().find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// Runs `clients create`, which must succeed; returns what it printed to stdout.
fn create(server: &Server, name: &str, auth: &str, redirect_uris: &[&str], extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["clients", "create", "--name", name, "--auth", auth];
    for uri in redirect_uris {
        args.extend(["--redirect-uri", uri]);
    }
    args.extend_from_slice(extra);
    let output = server.cli(&args);
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    output.stdout
}

/// How many events `audit verify` finds (it must find the chain intact).
fn audited_events(server: &Server) -> usize {
    let verified = server.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let out = text(&verified.stdout);
    out.trim_start_matches("audit chain intact: ").trim_end_matches(" events").parse().unwrap()
}

async fn operator_manages_oidc_clients(engine: Engine) {
    let server = Server::start(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let events_before = audited_events(&server);

    let basic = create(
        &server,
        "Keycloak",
        "client_secret_basic",
        &["https://sso.example.com/realms/corp/broker/cs/endpoint", "http://127.0.0.1:8000/cb"],
        &[],
    );
    let basic_id = printed(&basic, "client_id").unwrap();
    let secret = printed(&basic, "client_secret").unwrap();
    assert_eq!((basic_id.len(), secret.len()), (22, 43), "128-bit id, 256-bit secret");

    let key = TestKey::es256("rp-key-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwks_json(&[&key])).unwrap();
    let okta = ["https://okta.example.com/cb"];
    let jwt = create(
        &server,
        "Okta",
        "private_key_jwt",
        &okta,
        &["--jwks-file", jwks.to_str().unwrap(), "--id-token-alg", "RS256"],
    );
    assert!(printed(&jwt, "client_secret").is_none(), "no secret for private_key_jwt");
    // Its ID tokens are RS256: the key is published now, before its RP first fetches the JWKS.
    let keys = text(&server.cli(&["keys", "list"]).stdout);
    assert_eq!(keys.lines().filter(|line| line.contains("\tRS256\tactive\t")).count(), 1, "{keys}");
    let authentik = ["https://auth.example.com/cb"];
    create(
        &server,
        "authentik",
        "private_key_jwt",
        &authentik,
        &["--jwks-uri", "https://auth.example.com/jwks"],
    );
    let public = create(&server, "CLI app", "none", &["http://[::1]/cb"], &[]);
    let public_id = printed(&public, "client_id").unwrap();

    let revoked = server.cli(&["clients", "revoke", "--client-id", &public_id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));

    let list = server.cli(&["clients", "list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listing = text(&list.stdout);
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(!listing.contains(&secret), "a listing never shows a secret");
    let line = |id: &str| listing.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
    let basic_line = line(&basic_id);
    assert!(basic_line.contains("\tactive\tclient_secret_basic\tES256\t"), "{basic_line}");
    assert!(
        basic_line
            .contains("https://sso.example.com/realms/corp/broker/cs/endpoint http://127.0.0.1:8000/cb")
    );
    assert!(line(&public_id).contains("\trevoked\tnone\t"));
    assert!(listing.contains("\tprivate_key_jwt\tRS256\thttps://okta.example.com/cb\tinline:1"), "{listing}");
    assert!(listing.contains("\thttps://auth.example.com/jwks"), "{listing}");

    // Bad input: exit 2 with a message naming the problem, nothing written.
    let private_jwks = dir.path().join("private.json");
    let mut private = key.public_jwk();
    private["d"] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI".into();
    std::fs::write(&private_jwks, serde_json::json!({ "keys": [private] }).to_string()).unwrap();
    let missing = dir.path().join("missing.json");
    let refusals: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--auth", "none", "--redirect-uri", "http://rp.example.com/cb"],
            "http is only allowed for loopback",
        ),
        (vec!["--auth", "none", "--redirect-uri", "https://rp.example.com/cb#x"], "it has a fragment"),
        (vec!["--auth", "none", "--redirect-uri", "https://u:p@rp.example.com/cb"], "userinfo"),
        (vec!["--auth", "none", "--redirect-uri", "https://*.example.com/cb"], "wildcards"),
        (
            vec!["--auth", "client_secret_jwt", "--redirect-uri", "https://rp.example.com/cb"],
            "unknown token endpoint auth method `client_secret_jwt`",
        ),
        (
            vec!["--auth", "private_key_jwt", "--redirect-uri", "https://rp.example.com/cb"],
            "exactly one of --jwks-file or --jwks-uri",
        ),
        (
            vec![
                "--auth",
                "private_key_jwt",
                "--redirect-uri",
                "https://rp.example.com/cb",
                "--jwks-file",
                private_jwks.to_str().unwrap(),
            ],
            "private member `d`",
        ),
        (
            vec![
                "--auth",
                "private_key_jwt",
                "--redirect-uri",
                "https://rp.example.com/cb",
                "--jwks-file",
                missing.to_str().unwrap(),
            ],
            "cannot read --jwks-file",
        ),
        (
            vec![
                "--auth",
                "private_key_jwt",
                "--redirect-uri",
                "https://rp.example.com/cb",
                "--jwks-uri",
                "http://rp.example.com/jwks",
            ],
            "jwks_uri `http://rp.example.com/jwks` is refused",
        ),
        (
            vec![
                "--auth",
                "client_secret_post",
                "--redirect-uri",
                "https://rp.example.com/cb",
                "--jwks-uri",
                "https://rp.example.com/jwks",
            ],
            "only private_key_jwt clients have keys",
        ),
        (
            vec!["--auth", "none", "--redirect-uri", "https://rp.example.com/cb", "--id-token-alg", "HS256"],
            "unknown ID token algorithm `HS256`",
        ),
        (vec!["--auth", "none"], "--redirect-uri"),
    ];
    for (args, expected) in refusals {
        let mut full = vec!["clients", "create", "--name", "Bad"];
        full.extend(args.iter().copied());
        let output = server.cli(&full);
        assert_eq!(output.status.code(), Some(2), "{full:?}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains(expected), "{full:?}: {}", text(&output.stderr));
    }
    let unknown = server.cli(&["clients", "revoke", "--client-id", "AAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no active OIDC client `AAAAAAAAAAAAAAAAAAAAAA`"),
        "{}",
        text(&unknown.stderr)
    );
    let again = server.cli(&["clients", "revoke", "--client-id", &public_id]);
    assert_eq!(again.status.code(), Some(2), "a client is revoked once");
    assert_eq!(
        text(&server.cli(&["clients", "list"]).stdout).lines().count(),
        4,
        "nothing written by refusals"
    );

    assert_eq!(
        audited_events(&server),
        events_before + 6,
        "4 created + the RS256 signing key + 1 revoked, refusals wrote nothing"
    );
    assert!(!server.logs().contains(&secret), "no secret in the server's logs");
}

#[tokio::test]
async fn operator_manages_oidc_clients_on_sqlite() {
    operator_manages_oidc_clients(Engine::Sqlite).await;
}

#[tokio::test]
async fn operator_manages_oidc_clients_on_postgres() {
    operator_manages_oidc_clients(Engine::Postgres).await;
}
