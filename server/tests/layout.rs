#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! House rules about the code's shape that a compiler does not check.

/// No capability's `http` module imports another's: shared extraction lives in `extract`,
/// shared rules in the capabilities' `model`/`service`, so handlers stay independent.
#[test]
fn no_http_module_imports_another() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let dir = entry.unwrap().path();
        let http = dir.join("http.rs");
        if !http.is_file() {
            continue;
        }
        let own = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&http).unwrap();
        for (number, line) in text.lines().enumerate() {
            let imports_other_http = line.split("crate::").skip(1).any(|rest| {
                let mut parts = rest.split("::");
                let capability = parts.next().unwrap_or_default();
                capability != own && parts.next() == Some("http")
            });
            assert!(!imports_other_http, "{}:{}: {line}", http.display(), number + 1);
        }
        checked += 1;
    }
    assert!(checked >= 5, "found only {checked} http modules under {}", src.display());
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
