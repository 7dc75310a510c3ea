//! The wire contracts shared by Postwarden's policy server and its agent, version 1.
//!
//! - [`v1`]: the JSON bodies of the HTTP API: enrollment (`POST /api/v1/enroll`), the device's
//!   users (`POST /api/v1/users`), the bundle payload (`postwarden.bundle/v1`), report batches
//!   (`POST /api/v1/reports`, `postwarden.report-batch/v1`) and RFC 9457 problem details.
//! - [`jws`]: Ed25519 JSON Web Keys (RFC 8037, thumbprints per RFC 7638) and compact JSON Web
//!   Signatures (RFC 7515), deliberately narrow: one algorithm, no negotiation.
//! - [`bundle`]: signing a bundle payload on the server and verifying it on the agent (signature,
//!   schema, device, serial).
//!
//! The shapes are the ones of the enrollment, bundle and report-batch issues; both sides depend
//! on them, so they change only with a new version.
//!
//! # Invariants
//!
//! - **Pure**: no file, network, process, environment or clock access. Times are passed in;
//!   keys are made from seeds the caller supplies. (`profiles/clippy.toml` bans those APIs here,
//!   `tests/tests/architecture.rs` keeps the dependencies to an allow-list.)
//! - **Every serialized form is a contract**: explicit serde names, unknown fields refused
//!   (except in [`v1::Problem`], where RFC 9457 says to ignore unknown members), schema strings
//!   checked, and the exact JSON pinned by snapshot tests.
//! - **Secrets never reach logs**: [`v1::Secret`] and [`jws::SigningKey`] print `<redacted>`.
//! - **A bundle is trusted only after [`bundle::verify_bundle`]**: signature by the pinned key,
//!   the expected schema, this device, and a serial not older than the cached one.

pub mod bundle;
pub mod jws;
pub mod v1;

pub use bundle::{sign_bundle, verify_bundle, BundleError};
pub use jws::{sign, verify, Jwk, JwkError, JwsError, SigningKey};
