//! The policy server's pure domain: everything the server decides that needs no database,
//! network, clock or randomness, so it is tested exhaustively and cheaply.
//!
//! - [`names`]: the rules for every name a client sends (groups, profile ids, token names, user
//!   keys, variable names, device ids), bounded, with the offending field named.
//! - [`secret`]: the format of tokens and credentials (prefixed `pwa_`/`pwe_`/`pwd_`/`pwm_`,
//!   256 random bits supplied by the caller), the hash the database stores, and short ids
//!   (`dev_…`).
//! - [`body`]: strict JSON request bodies; errors name line, column and field path, also inside
//!   internally tagged items.
//! - [`csv`]: per-user variables from CSV (all rows or none, every error located) and CSV
//!   answers (RFC 4180, safe in spreadsheets).
//! - [`diff`]: what changed between two versions of a profile, per control.
//! - [`compliance`]: the fleet arithmetic: worst status per device and control, stale devices
//!   never compliant.
//! - [`bundle`]: what a device's bundle is made of, its fingerprint and its payload.
//! - [`history`]: compliance per day (a replay of the reports by the live summary's rules),
//!   time to repair (nearest-rank p50/p95 per control and client), what retention may delete.
//! - [`metrics`]: the OpenMetrics text of `/metrics`.
//! - [`audit`]: the audit report of the fleet, a group or a device at a moment: areas with ✓/✗
//!   and figures, a conclusion from the data, recommendations by priority, what the clients
//!   cannot enforce, and the failing devices with their evidence.
//! - [`rollout`]: staged rollouts: ring membership from a hash of the device id, the ring
//!   schedule, what each device is served, promotion after a soak, the halt decision, and the
//!   impact preview of a candidate version.
//!
//! # Invariants
//! - **Pure**: no I/O, clock, randomness, environment, threads or async (`clippy.toml` bans the
//!   APIs; `tests/tests/architecture.rs` bounds the dependencies). Times and random bytes are
//!   arguments (`now_ms`, `issued_at`, `random: [u8; 32]`).
//! - **Bounded**: every input has a size limit, checked before work proportional to it (names by
//!   kind, CSV rows, columns and cells, the number of errors). Request bodies and profile texts
//!   are bounded by the caller, which answers 413 before they get here; JSON nesting is bounded
//!   by `serde_json` (128 levels).
//! - **Bad input never panics** and is never echoed raw: errors carry the line, column and field
//!   where there is one (`line: 0, column: 0` for a value that is not part of a text, such as a
//!   path segment), and what they quote of the input is clipped and has control and invisible
//!   characters escaped, so it is safe in a log line and a problem+json answer.
//! - **Contracts are pinned by tests**: the JSON of diffs, summaries and bundle payloads, and
//!   the fingerprint encoding (stored with each device's serial: changing it bumps every serial).

pub mod audit;
pub mod body;
pub mod bundle;
pub mod compliance;
pub mod csv;
pub mod diff;
pub mod history;
pub mod metrics;
pub mod names;
pub mod rollout;
pub mod secret;
mod text;
