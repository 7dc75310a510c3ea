//! Apple Mail (macOS 13–15) through its preference plists and configuration profiles.
//!
//! - [`plistfile`]: preference plists (binary or XML in, binary out, unknown keys kept).
//! - [`mapping`]: where each control lives.
//! - [`mobileconfig`]: the configuration profile that creates the account and forces
//!   preferences, for MDM; [`export`] fills it from a Postwarden profile.

pub mod export;
pub mod mapping;
pub mod mobileconfig;
pub mod plistfile;

pub use mapping::{map, Location, Mapped};
