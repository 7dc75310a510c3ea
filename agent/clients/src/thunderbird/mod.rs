//! Thunderbird: profiles, prefs, `policies.json` and saved passwords.
//!
//! - [`prefs`]: the byte-faithful prefs.js / user.js / default-pref reader and writer.
//! - [`policies`]: the `policies.json` model and merge; [`logins`]: saved passwords.
//! - [`accounts`]: the account → server / identity → SMTP graph.
//! - [`effective`]: how Thunderbird resolves a pref's effective value and lock from every layer.
//! - [`mapping`]: controls → Thunderbird settings; [`mimetypes`]: the `mime.types` entries the
//!   Handlers policy needs; [`paths`]: where Thunderbird keeps its files.

pub mod accounts;
pub mod autoconfig;
pub mod effective;
pub mod logins;
pub mod mapping;
pub mod mimetypes;
pub mod paths;
pub mod platform_policies;
pub mod policies;
pub mod prefs;

pub use mapping::{map, Location, Mapped, ProfileView};
