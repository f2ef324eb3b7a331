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
