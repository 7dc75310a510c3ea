//! Checks the invariants of ARCHITECTURE.md that the build itself can show, from `cargo
//! metadata`: which crate may depend on which, so the pure crates stay pure and the layers stay
//! apart. (What pure code may *call* is checked by the `clippy.toml` of the pure crates, which
//! bans file, process, environment, network and clock APIs, each with its reason.)

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value as Json;

/// A workspace crate's normal (non-dev, non-build) dependencies, on every target.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(postwarden_test_support::workspace_root())
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Json = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut crates = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("a name").to_owned())
            .collect();
        crates.insert(package["name"].as_str().expect("a name").to_owned(), deps);
    }
    crates
}

fn deps_of<'a>(all: &'a BTreeMap<String, BTreeSet<String>>, krate: &str) -> &'a BTreeSet<String> {
    all.get(krate)
        .unwrap_or_else(|| panic!("{krate} is not a workspace member"))
}

/// Pure crates, and everything each may depend on. Anything else (an I/O, async, network or
/// clock crate) fails the test: widen a list only with a reason in ARCHITECTURE.md.
const PURE: &[(&str, &[&str])] = &[
    (
        "postwarden-profiles",
        &["serde", "serde_json", "toml", "thiserror"],
    ),
    (
        "postwarden-wire",
        &[
            "postwarden-profiles",
            "serde",
            "serde_json",
            "thiserror",
            "ed25519-dalek",
            "sha2",
            "base64",
            "uuid",
            "time",
        ],
    ),
    ("postwarden-engine", &["postwarden-profiles", "serde_json"]),
    (
        "postwarden-server-domain",
        &[
            "postwarden-profiles",
            "postwarden-wire",
            "serde",
            "serde_json",
            "serde_path_to_error",
            "csv",
            "sha2",
            "base64",
            "toml",
            "time",
        ],
    ),
    (
        "postwarden-clients",
        &[
            "postwarden-profiles",
            "postwarden-engine",
            "postwarden-registry",
            "serde_json",
            "thiserror",
            "plist",
            "uuid",
            "memchr",
        ],
    ),
    // The registry's model, trait, in-memory registry and .reg files are pure; its Windows
    // implementation is behind `cfg(windows)` and uses only the Windows API crates.
    (
        "postwarden-registry",
        &["serde", "thiserror", "windows-registry", "windows-sys"],
    ),
];

#[test]
fn pure_crates_depend_only_on_their_allow_list() {
    let all = dependencies();
    let mut violations = Vec::new();
    for (krate, allowed) in PURE {
        for dep in deps_of(&all, krate) {
            if !allowed.contains(&dep.as_str()) {
                violations.push(format!(
                    "{krate} depends on {dep}, which is not on its allow-list"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_layers_stay_apart() {
    let all = dependencies();
    let forbid = |krate: &str, banned: &[&str], why: &str| {
        let deps = deps_of(&all, krate);
        for b in banned {
            assert!(!deps.contains(*b), "{krate} must not depend on {b}: {why}");
        }
    };
    // The core is a synchronous library that the CLI and the service share.
    forbid(
        "postwarden-agent-core",
        &[
            "clap",
            "tokio",
            "reqwest",
            "notify",
            "anyhow",
            "postwarden-agent",
        ],
        "the core is shared by the command line and the service; argument parsing, async \
         runtimes and networking live in the binary",
    );
    // Only the binary parses arguments.
    for krate in all.keys().filter(|k| k.as_str() != "postwarden-agent") {
        let binaries = ["postwarden-server", "postwarden-loadgen"];
        if krate.starts_with("postwarden-") && !binaries.contains(&krate.as_str()) {
            forbid(krate, &["clap"], "only binaries parse arguments");
        }
    }
    // The server knows the shared language and the wire, never an endpoint's internals; its
    // domain is pure and its store knows nothing of HTTP.
    forbid(
        "postwarden-server-store",
        &["axum", "postwarden-server", "reqwest"],
        "the store is the database edge; HTTP lives in postwarden-server",
    );
    forbid(
        "postwarden-server",
        &[
            "postwarden-engine",
            "postwarden-clients",
            "postwarden-agent-core",
            "postwarden-registry",
        ],
        "the server shares only the profile language, reports and wire types with the agent",
    );
    forbid(
        "postwarden-server",
        &[
            "postwarden-daemon",
            "postwarden-queue",
            "postwarden-desktop",
            "postwarden-service",
        ],
        "the server shares only the profile language, reports and wire types with the agent",
    );
    // The service is a thin loop around the core's session, not a second implementation.
    forbid(
        "postwarden-daemon",
        &["postwarden-engine", "postwarden-clients", "clap"],
        "the service reaches the clients only through the core's session",
    );
    // The service's edges stand alone: each can be replaced without touching the others.
    for krate in [
        "postwarden-queue",
        "postwarden-desktop",
        "postwarden-service",
    ] {
        forbid(
            krate,
            &[
                "postwarden-agent-core",
                "postwarden-engine",
                "postwarden-clients",
                "postwarden-daemon",
                "tokio",
            ],
            "the outbox, the desktop notices and the service installer are independent edges",
        );
    }
    // Test support is for tests only.
    for krate in [
        "postwarden-profiles",
        "postwarden-wire",
        "postwarden-engine",
        "postwarden-clients",
        "postwarden-agent-core",
        "postwarden-agent",
        "postwarden-daemon",
        "postwarden-queue",
        "postwarden-desktop",
        "postwarden-service",
    ] {
        forbid(
            krate,
            &["postwarden-test-support"],
            "test helpers are dev-dependencies",
        );
    }
}

#[test]
fn the_pure_crates_ban_the_same_apis() {
    let root = postwarden_test_support::workspace_root();
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let reference = read("agent/clients/clippy.toml");
    for other in [
        "agent/engine/clippy.toml",
        "profiles/clippy.toml",
        "policy-server/domain/clippy.toml",
    ] {
        assert_eq!(
            read(other),
            reference,
            "{other} differs from agent/clients/clippy.toml"
        );
    }
    for api in [
        "std::fs::read",
        "std::process::Command",
        "std::env::var",
        "SystemTime::now",
    ] {
        assert!(reference.contains(api), "clippy.toml does not ban {api}");
    }
}
