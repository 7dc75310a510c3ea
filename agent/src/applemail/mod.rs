//! Apple Mail (macOS 13–15) through its preference plists and configuration profiles.
//!
//! - [`plistfile`]: preference plists (binary or XML in, binary out, unknown keys kept).
//! - [`mapping`]: where each control lives (pure).
//! - [`store`]: reads the domains and the forced values, writes repairs (files, or `defaults` on
//!   macOS).
//! - [`mobileconfig`]: the configuration profile that creates the account and forces
//!   preferences, for MDM; [`export`] fills it from a Postwarden profile; [`sign`] signs it.

pub mod export;
pub mod mapping;
pub mod mobileconfig;
pub mod plistfile;
pub mod sign;
pub mod store;

pub use mapping::{map, AmLocation, Mapped};
pub use store::{AppleMailStore, Channel};

/// Whether Mail runs for this user (macOS): it reads its preferences at launch, so what is
/// written meanwhile is pending a restart. Elsewhere there is no Mail to run.
pub fn mail_running() -> bool {
    if !cfg!(target_os = "macos") {
        return false;
    }
    let uid = std::process::Command::new("/usr/bin/id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    std::process::Command::new("/usr/bin/pgrep")
        .args(["-x", "-u", &uid, "Mail"])
        .status()
        .is_ok_and(|s| s.success())
}
