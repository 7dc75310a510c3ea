//! Apple Mail (macOS 13–15) through its preference plists and configuration profiles.
//!
//! - [`store`]: reads the domains and the forced values, writes repairs.
//! - [`channel`]: how a domain is read and written: the files, or `defaults` on macOS.

pub mod channel;
pub mod store;

use std::path::Path;

pub use channel::Channel;
pub use store::{is_set_up, AppleMailStore};

/// Whether Mail runs for the user whose home is `home` (macOS): it reads its preferences at
/// launch, so what is written meanwhile is pending a restart.
///
/// # Platform specific behavior
/// macOS: `pgrep -x -U <uid of the home's owner> Mail`. Elsewhere there is no Mail to run.
pub fn mail_running(home: &Path) -> bool {
    #[cfg(target_os = "macos")]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(home) else {
            return false;
        };
        std::process::Command::new("/usr/bin/pgrep")
            .args(["-x", "-U", &meta.uid().to_string(), "Mail"])
            .status()
            .is_ok_and(|s| s.success())
    }
    #[cfg(not(target_os = "macos"))]
    {
        let _ = home;
        false
    }
}
