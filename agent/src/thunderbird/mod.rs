//! Thunderbird: profiles, prefs, `policies.json` and saved passwords.
//!
//! Pure (no I/O; checked by `tests/architecture.rs`): [`prefs`], [`policies`], [`effective`],
//! [`accounts`], [`logins`], [`mapping`], [`mimetypes`]. I/O: [`discover`] and [`store`].

pub mod accounts;
pub mod discover;
pub mod effective;
pub mod logins;
pub mod mapping;
pub mod mimetypes;
pub mod policies;
pub mod prefs;
pub mod store;

pub use mapping::{map, Mapped, MappingError, TbLocation};
pub use store::{Paths, ThunderbirdStore};
