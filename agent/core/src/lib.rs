//! The agent core: everything between a parsed profile and the machine, shared by the command
//! line and the service.
//!
//! - [`session`]: the one way through: check the input, load and parse every client's files,
//!   then reconcile; and `restore`. [`export`] writes a profile in other tools' formats.
//! - [`target`]: whose configuration (home, system root, registry hive) and where the agent
//!   keeps its state.
//! - [`thunderbird`], [`outlook`], [`applemail`]: the stores that read and write each client's
//!   configuration (the knowledge of *where* lives in `postwarden-clients`).
//! - [`fs`], [`journal`] and [`lock`]: the only code that writes a user's configuration:
//!   atomic replace after a write-ahead journal commit, under the state folder's lock.
//! - [`error`]: typed errors, so a caller can tell bad input from a corrupt file from a
//!   transient failure.
//!
//! Architecture invariant: synchronous, no clap, no async runtime; the clock is read by the
//! caller and passed in.

pub mod applemail;
pub mod error;
pub mod export;
pub mod fs;
pub mod journal;
pub mod lock;
pub mod outlook;
pub mod profile_source;
pub mod session;
pub mod target;
pub mod thunderbird;
pub mod watch;

pub use error::{InputError, StoreError, StoreErrorKind};
pub use profile_source::load_profile;
pub use session::{Hold, Outcome, Prepared, Problem, Session, SettingKey};
pub use target::{default_clients, Sid, Target};
