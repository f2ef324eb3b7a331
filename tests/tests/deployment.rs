//! The deployment files cannot be run here (no Docker engine), so they are checked for
//! consistency with the code: the compose file parses, has the promised services, and every
//! instance's environment is a configuration the real binary accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use countersign_e2e::run_cli;
use serde_yaml_ng::Value;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// Resolves `${VAR:?message}` / `${VAR}` with a stand-in value and `${VAR:-default}` with its
/// default, as compose would with the operator's environment.
fn substitute(value: &str, stand_in: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let expression = &rest[start + 2..end];
        match expression.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => out.push_str(stand_in),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_has_postgres_two_instances_and_a_proxy() {
    let text = std::fs::read_to_string(repo_file("docker-compose.yml")).unwrap();
    let mut doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    doc.apply_merge().unwrap();
    let services = doc["services"].as_mapping().unwrap();
    for name in ["postgres", "countersign-a", "countersign-b", "proxy"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let nginx = std::fs::read_to_string(repo_file("deploy/nginx.conf")).unwrap();
    assert!(nginx.contains("countersign-a:8080") && nginx.contains("countersign-b:8080"));

    let stand_in_key = countersign_e2e::random_master_key();
    for name in ["countersign-a", "countersign-b"] {
        let environment = doc["services"][name]["environment"].as_mapping().unwrap();
        let env: Vec<(String, String)> = environment
            .iter()
            .map(|(k, v)| {
                let key = k.as_str().unwrap().to_owned();
                let stand_in = if key == "COUNTERSIGN_MASTER_KEY" { stand_in_key.as_str() } else { "pw" };
                (key, substitute(v.as_str().unwrap(), stand_in))
            })
            .collect();
        assert!(env.iter().any(|(k, v)| k == "COUNTERSIGN_DATABASE__URL" && v.starts_with("postgres://")));
        let out = run_cli(&env, &["check-config"]);
        assert!(
            out.status.success(),
            "{name}'s environment is refused by the binary: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains(":pw@"), "check-config masks the password");
    }
}

#[test]
fn dockerfile_builds_the_binary_with_the_workspace_toolchain() {
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).unwrap();
    let manifest = std::fs::read_to_string(repo_file("Cargo.toml")).unwrap();
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap();
    assert!(
        dockerfile.contains(&format!("FROM rust:{rust_version}")),
        "Dockerfile's Rust differs from rust-version"
    );
    assert!(dockerfile.contains("--bin countersign") && dockerfile.contains("USER countersign"));
    for dir in ["server", "mobile-protocol", "authenticator", "tests", "migrations"] {
        assert!(dockerfile.contains(&format!("COPY {dir} {dir}")), "Dockerfile does not copy {dir}/");
    }
}
