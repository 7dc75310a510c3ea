//! The Postwarden policy server: it will ship signed profiles to agents and collect their
//! findings into compliance reports. Nothing is implemented yet; this crate reserves the place in
//! the workspace and the dependency on the shared profile language (`postwarden-profiles`).
