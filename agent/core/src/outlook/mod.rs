//! Outlook (classic, 16.0) through the Windows registry.
//!
//! - [`store`]: effective values, repairs and backups through the [`postwarden_registry::Registry`]
//!   trait; the real registry is used on Windows, an in-memory one in tests.
//! - [`group_policy`]: the Group Policy objects (`Registry.pol` files) that may set the policy
//!   values the store manages.

pub mod group_policy;
pub mod store;

pub use group_policy::{GroupPolicy, GroupPolicyPlace};
pub use store::{is_set_up, JournalPlace, OutlookStore};

/// Whether Outlook runs (it reads policies and account values at start); `None` when the process
/// list cannot be read.
///
/// # Platform specific behavior
/// Windows only; elsewhere there is no Outlook to run and this is `Some(false)`.
pub fn outlook_running() -> Option<bool> {
    #[cfg(windows)]
    {
        postwarden_registry::process::is_running("OUTLOOK.EXE")
    }
    #[cfg(not(windows))]
    {
        Some(false)
    }
}
