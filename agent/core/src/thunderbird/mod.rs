//! Thunderbird's store: finding a user's profiles, reading every file Thunderbird resolves a pref
//! from, and writing repairs.

pub mod discover;
pub mod platform;
pub mod store;

pub use store::ThunderbirdStore;
