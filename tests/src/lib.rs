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

pub mod fixture;
pub mod marionette;
pub mod pop3;
pub mod thunderbird;

pub use thunderbird::{require_thunderbird, LaunchOptions, ProbeQuery, QuitReport, ThunderbirdRun};
