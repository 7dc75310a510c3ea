//! Checks the invariants written in ARCHITECTURE.md that a test can check: the profile model,
//! the engine and the client mappings and file formats do no I/O and read no clock.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Paths (relative to the repository) of code that must stay pure. A directory means every
/// `.rs` file below it.
const PURE: &[&str] = &[
    "profiles/src",
    "agent/engine/src",
    "agent/src/thunderbird/prefs.rs",
    "agent/src/thunderbird/policies.rs",
    "agent/src/thunderbird/effective.rs",
    "agent/src/thunderbird/accounts.rs",
    "agent/src/thunderbird/logins.rs",
    "agent/src/thunderbird/mapping.rs",
    "agent/src/thunderbird/mimetypes.rs",
    "agent/src/thunderbird/mapping",
    "agent/src/mapping.rs",
    "agent/src/outlook/mapping.rs",
    "agent/src/outlook/mapping",
    "agent/src/outlook/accounts.rs",
    "agent/src/outlook/export.rs",
    "agent/src/applemail/mapping.rs",
    "agent/src/applemail/mapping",
    "agent/src/applemail/plistfile.rs",
    "agent/src/applemail/mobileconfig.rs",
    "agent/src/applemail/sign.rs",
    "agent/src/applemail/export.rs",
    "agent/registry/src/lib.rs",
    "agent/registry/src/mem.rs",
    "agent/registry/src/regfile.rs",
    "agent/registry/src/snapshot.rs",
];

/// What pure code must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "file I/O belongs in a store"),
    ("std::net", "network I/O belongs at the edge"),
    ("std::process", "processes belong at the edge"),
    ("std::env", "the environment is read by the CLI only"),
    ("SystemTime::now", "time is an input"),
    ("Instant::now", "time is an input"),
    ("File::open", "file I/O belongs in a store"),
    ("read_to_string(", "file I/O belongs in a store"),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn pure_code_does_no_io() {
    let mut files = Vec::new();
    for p in PURE {
        let path = Path::new(ROOT).join(p);
        assert!(path.exists(), "{p} listed as pure but missing");
        rust_files(&path, &mut files);
    }
    assert!(files.len() >= 15, "found only {} pure files", files.len());
    let mut violations = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (token, why) in FORBIDDEN {
                if code.contains(token) {
                    violations.push(format!("{}:{}: `{token}`: {why}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn pure_crates_depend_on_no_io_crates() {
    for (manifest, allowed) in [
        (
            "profiles/Cargo.toml",
            &["serde", "serde_json", "toml", "thiserror"][..],
        ),
        (
            "agent/engine/Cargo.toml",
            &["postwarden-profiles", "serde_json"][..],
        ),
    ] {
        let text = fs::read_to_string(Path::new(ROOT).join(manifest)).unwrap();
        let deps = text
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap();
        for line in deps.lines().filter(|l| l.contains('=')) {
            let name = line.split(['=', '.']).next().unwrap().trim();
            assert!(
                allowed.contains(&name),
                "{manifest}: `{name}` is not an allowed dependency of a pure crate"
            );
        }
    }
}

/// One TLS stack: rustls. OpenSSL and native-tls must never enter the build.
#[test]
fn no_openssl_in_the_dependency_graph() {
    let lock = fs::read_to_string(Path::new(ROOT).join("Cargo.lock")).unwrap();
    for banned in ["openssl", "openssl-sys", "native-tls"] {
        assert!(
            !lock.contains(&format!("name = \"{banned}\"")),
            "Cargo.lock contains {banned}: use rustls"
        );
    }
}
