//! Outlook (classic, 16.0) through the Windows registry.
//!
//! - [`mapping`]: where each control lives.
//! - [`accounts`]: the POP3/IMAP accounts of the user's MAPI profiles, read through the
//!   [`postwarden_registry::Registry`] trait.
//! - [`export`]: the policy part as a `.reg` file for Group Policy users.
//! - [`layers`]: which configuration layer decides a policy value (Cloud Policy, machine
//!   policy, Group Policy objects, the user's policy key), and the override a finding reports.

pub mod accounts;
pub mod export;
pub mod layers;
pub mod mapping;

pub use mapping::{map, Location, Mapped, View};
