//! The policy server's pure domain: everything the server decides that needs no database,
//! network, clock or randomness, so it is tested exhaustively and cheaply.
//!
//! - [`names`]: the rules for every name a client sends (groups, profile ids, user keys,
//!   variable names, ids), bounded, with the offending field named.
//! - [`secret`]: the format of tokens and credentials (prefixed, 256 random bits supplied by the
//!   caller) and the hash the database stores.
//! - [`body`]: strict JSON request bodies; errors name line, column and field path.
//! - [`csv`]: per-user variables from CSV (all rows or none) and CSV answers (RFC 4180, safe in
//!   spreadsheets).
//! - [`diff`]: what changed between two versions of a profile, per control.
//! - [`compliance`]: the fleet arithmetic: worst status per device and control, stale devices
//!   never compliant.
//! - [`bundle`]: what a device's bundle is made of, its fingerprint and its payload.
//!
//! # Invariants
//! - **Pure**: no I/O, clock, randomness or environment (`clippy.toml` bans the APIs;
//!   `tests/tests/architecture.rs` bounds the dependencies). Times and random bytes are
//!   arguments.
//! - **Bounded**: every input has a size limit, checked before any work proportional to it.

pub mod body;
pub mod bundle;
pub mod compliance;
pub mod csv;
pub mod diff;
pub mod names;
pub mod secret;
