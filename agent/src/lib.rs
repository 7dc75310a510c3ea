//! The Postwarden endpoint agent.
//!
//! - [`thunderbird`]: where Thunderbird keeps each setting (pure mapping and file formats) and
//!   the store that reads and writes its files.
//! - [`fsx`] and [`journal`]: the only code that writes a user's configuration: atomic
//!   replace (temp file, fsync, rename) after a one-time backup that `restore` puts back.
//! - [`cli`]: `postwarden-agent check | apply | restore`.

pub mod applemail;
pub mod cli;
pub mod fsx;
pub mod journal;
pub mod mapping;
pub mod outlook;
pub mod thunderbird;
