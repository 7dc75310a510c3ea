//! The Postwarden policy server: the one place where profiles are versioned and assigned,
//! devices enroll, signed bundles go out and findings come back.
//!
//! Layers (ARCHITECTURE.md): the pure domain (`postwarden-server-domain`: names, secrets,
//! CSV, diffs, compliance arithmetic, bundle content), the store (`postwarden-server-store`: one
//! query layer over SQLite and PostgreSQL), and this crate: the HTTP API ([`api`]), the dashboard ([`web`]), TLS
//! ([`tls`], [`keys`]), the shared request state and its caches ([`app`]) and the command line.

pub mod api;
pub mod app;
pub mod keys;
pub mod problem;
pub mod report;
pub mod rollout;
pub mod server;
pub mod tls;
pub mod web;
