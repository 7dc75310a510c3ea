//! Postwarden's shared language.
//!
//! A [`Profile`] is what the security officer decided: a versioned set of controls, each with a
//! stable id, a severity, the reason it exists, how to fix it and the desired value. Profiles are
//! parsed strictly from TOML ([`Profile::parse`]); every error names the file, line, column and
//! field. [`report`] holds the findings a run produces and renders them as the compliance report.
//!
//! This crate does no I/O: callers read files and hand over their text.

pub mod builtin;
mod model;
mod parse;
pub mod report;
pub mod template;
pub mod thunderbird_rules;

pub use model::{
    AccountError, AccountField, AccountType, AgentSettings, Control, ControlId, ControlValue,
    Extension, MailAccount, Mode, Profile, ProfileId, ProfileVersion, RawPrefs, RawValue,
    ResolvedAccount, Severity, TlsMinimum,
};
pub use parse::{ProfileError, FORMAT_VERSION};
pub use template::{Template, TemplateError, Vars};
