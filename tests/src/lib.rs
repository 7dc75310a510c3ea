//! Postwarden end-to-end harness: proves, with a real Thunderbird, that what
//! Postwarden writes (policies.json, prefs.js, user.js) is what Thunderbird
//! applies.
//!
//! * [`marionette`]: minimal Marionette client (std TCP).
//! * [`thunderbird`]: [`thunderbird::ThunderbirdRun`] starts a headless
//!   Thunderbird on a profile copy (optionally with a private
//!   `/etc/thunderbird`) and probes it.
//! * [`pop3`]: fake POP3 server that records what Thunderbird sends.
//! * [`fixture`]: a non-compliant Thunderbird 153 profile.
//! * [`wine`]: the agent's Windows build in a throwaway Wine prefix (Outlook's registry).

pub mod fixture;
pub mod fleet;
pub mod marionette;
pub mod pop3;
pub mod thunderbird;
pub mod wine;

pub use thunderbird::{require_thunderbird, LaunchOptions, ProbeQuery, QuitReport, ThunderbirdRun};

static THUNDERBIRD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serialises the Thunderbird runs of one test binary (each start takes a core for seconds) and
/// fails the calling test loudly when Thunderbird is missing; it never skips.
pub fn thunderbird_lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = THUNDERBIRD.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = require_thunderbird() {
        panic!("{e:#}");
    }
    guard
}
