#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! House rules about the code's shape that a compiler does not check.

use std::path::PathBuf;

/// Every capability's http module (`src/<capability>/http.rs`, or each file of
/// `src/<capability>/http/` when it has grown into several) with its capability's name and text.
fn http_modules() -> Vec<(PathBuf, String, String)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let dir = entry.unwrap().path();
        let own = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = vec![dir.join("http.rs")];
        if let Ok(split) = std::fs::read_dir(dir.join("http")) {
            files.extend(
                split.map(|f| f.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "rs")),
            );
        }
        for http in files.into_iter().filter(|f| f.is_file()) {
            let text = std::fs::read_to_string(&http).unwrap();
            modules.push((http, own.clone(), text));
        }
    }
    assert!(modules.len() >= 6, "found only {} http modules under {}", modules.len(), src.display());
    modules
}

/// No capability's `http` module imports another's: shared extraction lives in `crate::http`,
/// shared rules in the capabilities' `model`/`service`, so handlers stay independent.
#[test]
fn no_http_module_imports_another() {
    for (http, own, text) in http_modules() {
        for (number, line) in text.lines().enumerate() {
            let imports_other_http = line.split("crate::").skip(1).any(|rest| {
                let mut parts = rest.split("::");
                let capability = parts.next().unwrap_or_default();
                capability != own && parts.next() == Some("http")
            });
            assert!(!imports_other_http, "{}:{}: {line}", http.display(), number + 1);
        }
    }
}

/// Handlers never touch the store: they extract, call their capability's service, and map the
/// result, so every rule a request goes through is in a service or model (and tested there).
#[test]
fn no_http_module_touches_the_store() {
    for (http, _, text) in http_modules() {
        for (number, line) in text.lines().enumerate() {
            assert!(!line.contains(".store"), "{}:{}: {line}", http.display(), number + 1);
        }
    }
}

/// Every handler says who may call it in a `/// Auth: …` doc line, above its OpenAPI annotation.
#[test]
fn every_handler_says_who_may_call_it() {
    for (http, _, text) in http_modules() {
        let lines: Vec<&str> = text.lines().collect();
        for (number, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("async fn ")) {
            let mut doc = lines[..number].iter().rev().take_while(|l| !l.is_empty() && !l.starts_with('}'));
            assert!(
                doc.any(|l| l.starts_with("/// Auth: ")),
                "{}:{}: {line} has no `/// Auth:` line",
                http.display(),
                number + 1
            );
        }
    }
}

/// The store stays split by capability: no file under `src/store/` grows past ~600 lines (a
/// capability that does is due its own module, as PostgreSQL's hot-path statements got).
#[test]
fn no_store_file_is_over_600_lines() {
    fn visit(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let store = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut files = Vec::new();
    visit(&store, &mut files);
    assert!(files.len() >= 20, "found only {} files under {}", files.len(), store.display());
    for file in files {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 600, "{} has {lines} lines", file.display());
    }
}
