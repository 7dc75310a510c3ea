//! The workspace's binaries for tests in other packages, built through Cargo (escargot), so a
//! test never runs a binary older than its sources: Cargo decides what is stale from the real
//! dependency graph.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `postwarden-agent` binary of this workspace, built (or found fresh) once per test
/// process, with the same profile as the running test.
pub fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| build("postwarden-agent", "postwarden-agent"))
}

/// The `postwarden-server` binary of this workspace (see [`agent`]).
pub fn server() -> &'static Path {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| build("postwarden-server", "postwarden-server"))
}

fn build(package: &str, bin: &str) -> PathBuf {
    let run = escargot::CargoBuild::new()
        .manifest_path(crate::workspace_root().join("Cargo.toml"))
        .package(package)
        .bin(bin)
        .current_release()
        .current_target()
        .run()
        .unwrap_or_else(|e| panic!("cargo build -p {package} --bin {bin}: {e}"));
    run.path().to_path_buf()
}
