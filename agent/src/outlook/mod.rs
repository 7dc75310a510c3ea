//! Outlook (classic, 16.0) through the Windows registry.
//!
//! - [`mapping`]: where each control lives (pure).
//! - [`accounts`]: the POP3/IMAP accounts of the user's MAPI profiles.
//! - [`store`]: effective values, repairs and backups through the [`postwarden_registry::Registry`]
//!   trait; the real registry is used on Windows, an in-memory one in tests.
//! - [`export`]: the policy part as a `.reg` file for Group Policy users.

pub mod accounts;
pub mod export;
pub mod mapping;
pub mod store;

pub use mapping::{map, Mapped, OlLocation};
pub use store::OutlookStore;

use std::path::PathBuf;

use anyhow::Result;
use postwarden_engine::{reconcile, Intent};
use postwarden_profiles::report::Finding;
use postwarden_profiles::{Profile, Vars};
use postwarden_registry::{KeyPath, Registry};

/// Checks or applies `profile` to the Outlook of the user whose hive is `hive`; `None` if
/// Outlook is not set up for that user (no `Software\Microsoft\Office\16.0\Outlook`).
pub fn run(
    reg: &mut dyn Registry,
    hive: KeyPath,
    journal_dir: PathBuf,
    outlook_running: bool,
    profile: &Profile,
    vars: &Vars,
    intent: Intent,
) -> Result<Option<Vec<Finding>>> {
    if !store::is_set_up(&*reg, &hive)? {
        return Ok(None);
    }
    let mut store = OutlookStore::load(reg, hive, journal_dir, outlook_running)?;
    let mapped = map(profile, vars, &store.view())?;
    Ok(Some(reconcile(
        &mut store,
        intent,
        &mapped.desired,
        &mapped.not_applicable,
    )?))
}
