//! What Postwarden knows about each mail client: pure data and code, tested on any OS.
//!
//! - [`mapping`]: what every client mapping returns and the toolkit they share.
//! - [`thunderbird`], [`outlook`], [`applemail`]: per client, where each control lives (the
//!   mapping), the client's file formats (read and written byte-faithfully), and how the client
//!   resolves a setting's effective value.
//!
//! Architecture invariant: nothing here touches files, the network, processes, the environment
//! or the clock (`clippy.toml` bans those APIs; `agent/tests/architecture.rs` bounds the
//! dependencies). The stores that read and write what these modules describe live in
//! `postwarden-agent-core`.

use std::path::{Path, PathBuf};

pub mod applemail;
pub mod mapping;
pub mod outlook;
pub mod thunderbird;

/// `root` joined with an absolute system path, so tests can use a fake root (`/` in
/// production).
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}
