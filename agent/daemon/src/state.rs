//! The agent's state folder: the enrollment (server, TLS trust, device credential, the pinned
//! signing key), the last good bundle, the durable queue, and what `status` shows.
//!
//! ```text
//! <state>/                 0700 (Windows: SYSTEM and Administrators only)
//!   enrollment.json        0600  written once by `enroll`
//!   bundle.jws             0600  the last verified bundle, exactly as the server signed it
//!   queue.db               0600  reports and events not yet acknowledged (postwarden-queue)
//!   status.json            0644  the last pass: findings per user and client, contested settings
//!   contact.json           0644  the last exchange with the server
//!   queue.json             0644  the queue's depth (the running agent holds queue.db exclusively)
//!   agent.lock                   one running agent per state folder
//! ```
//!
//! Every file is replaced atomically (a temporary file, fsync, rename), so a crash leaves the
//! old or the new version, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postwarden_agent_core::fs::{read_bytes, write_atomic};
use postwarden_wire::v1::{DeviceId, Jwk, Secret};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const ENROLLMENT_FILE: &str = "enrollment.json";
pub const BUNDLE_FILE: &str = "bundle.jws";
pub const QUEUE_FILE: &str = "queue.db";
pub const STATUS_FILE: &str = "status.json";
pub const CONTACT_FILE: &str = "contact.json";
pub const QUEUE_STATUS_FILE: &str = "queue.json";
pub const LOCK_DIR: &str = "run";

/// The schema of `enrollment.json`.
pub const ENROLLMENT_SCHEMA: &str = "postwarden.enrollment/v1";
/// The schema of `status.json`.
pub const STATUS_SCHEMA: &str = "postwarden.agent-status/v1";

/// The default state folder.
///
/// # Platform specific behavior
/// `/var/lib/postwarden` (Linux), `/Library/Application Support/Postwarden` (macOS),
/// `%ProgramData%\Postwarden` (Windows).
pub fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        base.join("Postwarden")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/Postwarden")
    } else {
        PathBuf::from("/var/lib/postwarden")
    }
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: not enrolled: run `postwarden-agent enroll --server URL --token T --pin-sha256 PIN` first")]
    NotEnrolled { path: PathBuf },
    #[error("{path}: {message}")]
    Unsafe { path: PathBuf, message: String },
}

impl StateError {
    fn io(path: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the agent trusts for TLS to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TrustSpec {
    /// `sha256//BASE64` pins of the server's public key.
    Pins(Vec<String>),
    /// The PEM text of the administrator's CA.
    CaPem(String),
}

impl TrustSpec {
    pub fn to_trust(&self) -> postwarden_transport::Trust {
        match self {
            TrustSpec::Pins(p) => postwarden_transport::Trust::Pins(p.clone()),
            TrustSpec::CaPem(pem) => postwarden_transport::Trust::Ca(pem.as_bytes().to_vec()),
        }
    }
}

/// `enrollment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    pub schema: String,
    /// The server's base URL, e.g. `https://policy.example.org:8443`.
    pub server: String,
    pub trust: TrustSpec,
    pub device_id: DeviceId,
    /// The device credential (a bearer token). Kept in the clear because the agent must present
    /// it; the file is readable by the agent's account only.
    pub credential: Secret,
    /// The key that signs this device's bundles, pinned at enrollment.
    pub signing_key: Jwk,
    pub enrolled_at: String,
    /// The local users reported to the server, as last sent.
    pub users: Vec<String>,
}

/// The agent's state folder.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn new(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Creates the folder (and its parents) readable by its owner only, or tightens an existing
    /// one that others could read.
    pub fn ensure_private(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.path).map_err(|e| StateError::io(&self.path, e))?;
        restrict(&self.path)
    }

    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.file(ENROLLMENT_FILE);
        let e: Enrollment = self
            .read_json(ENROLLMENT_FILE)?
            .ok_or(StateError::NotEnrolled { path: path.clone() })?;
        if e.schema != ENROLLMENT_SCHEMA {
            return Err(StateError::Corrupt {
                path,
                message: format!("schema {:?}, expected {ENROLLMENT_SCHEMA:?}", e.schema),
            });
        }
        Ok(e)
    }

    pub fn is_enrolled(&self) -> bool {
        self.file(ENROLLMENT_FILE).exists()
    }

    pub fn save_enrollment(&self, e: &Enrollment) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(e).expect("an enrollment serializes");
        bytes.push(b'\n');
        self.write_private(ENROLLMENT_FILE, &bytes)
    }

    /// The cached bundle, as received (not yet verified: the caller verifies it again).
    pub fn cached_bundle(&self) -> Result<Option<String>, StateError> {
        let path = self.file(BUNDLE_FILE);
        match read_bytes(&path) {
            Ok(None) => Ok(None),
            Ok(Some(b)) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| StateError::Corrupt {
                    path,
                    message: "not UTF-8 text".to_owned(),
                }),
            Err(e) => Err(StateError::Corrupt {
                path,
                message: e.to_string(),
            }),
        }
    }

    pub fn save_bundle(&self, compact: &str) -> Result<(), StateError> {
        self.write_private(BUNDLE_FILE, compact.as_bytes())
    }

    pub fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.file(name);
        write_atomic(&path, bytes, 0o600).map_err(|e| StateError::io(&path, e))
    }

    pub fn write_public(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.file(name);
        write_atomic(&path, bytes, 0o644).map_err(|e| StateError::io(&path, e))
    }

    /// Reads a JSON file of the folder; `None` if it does not exist.
    pub fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.file(name);
        let Some(bytes) = read_bytes(&path).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                message: format!("line {} column {}: {e}", e.line(), e.column()),
            })
    }
}

#[cfg(unix)]
fn restrict(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(|e| StateError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(StateError::Unsafe {
            path: dir.to_path_buf(),
            message: "not a directory".to_owned(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StateError::io(dir, e))?;
    }
    Ok(())
}

/// Windows: inheritance off, full control for SYSTEM, Administrators and the folder's owner
/// only (`icacls`, by well-known SID so it works in every language). The owner is the account
/// that created the folder: SYSTEM for the service, the user for a console `run`, who would
/// otherwise lock itself out (a non-elevated administrator's Administrators membership is
/// deny-only). Unverified here: Wine's `icacls` does not implement ACLs (it exits 0).
#[cfg(windows)]
fn restrict(dir: &Path) -> Result<(), StateError> {
    let out = std::process::Command::new("icacls")
        .arg(dir)
        .args([
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "/grant:r",
            "*S-1-5-32-544:(OI)(CI)F",
            // OWNER RIGHTS: the owner of the folder, and of each file in it.
            "/grant:r",
            "*S-1-3-4:(OI)(CI)F",
        ])
        .output()
        .map_err(|e| StateError::io(dir, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StateError::Unsafe {
            path: dir.to_path_buf(),
            message: format!(
                "icacls could not restrict the folder to SYSTEM, Administrators and its owner: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// `status.json`: what the last passes found, for `postwarden-agent status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub schema: String,
    pub updated_at: String,
    /// `enrolled` or `standalone`.
    pub mode: String,
    pub profile: Option<ProfileStatus>,
    /// Per user: per client, the count of findings by status, and when it was checked.
    pub users: BTreeMap<String, UserStatus>,
    pub contested: Vec<ContestedStatus>,
    /// Why a user could not be enforced (e.g. a variable the bundle lacks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub id: String,
    pub version: u32,
    /// The bundle's serial (enrolled mode).
    pub serial: Option<u64>,
    /// Where it came from: `bundle` or the profile file.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserStatus {
    pub checked_at: String,
    pub compliant: bool,
    /// Client name → status name → count.
    pub clients: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestedStatus {
    pub user: String,
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: String,
    pub repairs_in_last_hour: u32,
    pub held_until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

/// `queue.json`: the queue's depth as the running agent last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub depth: u64,
    pub bytes: u64,
    pub oldest_at: Option<String>,
    pub merged_total: u64,
    pub dropped_total: u64,
    pub updated_at: String,
}

impl QueueStatus {
    pub fn of(stats: &postwarden_queue::Stats, now: time::OffsetDateTime) -> QueueStatus {
        QueueStatus {
            depth: stats.items,
            bytes: stats.bytes,
            oldest_at: stats.oldest_at.map(crate::track::rfc3339),
            merged_total: stats.merged_total,
            dropped_total: stats.dropped_total,
            updated_at: crate::track::rfc3339(now),
        }
    }
}

impl StateDir {
    /// Writes `queue.json` from the open queue. Informational, so not fsynced: after a power
    /// loss it may be older than the queue, never torn (it is renamed into place).
    pub fn publish_queue(&self, queue: &postwarden_queue::Queue) {
        let Ok(stats) = queue.stats() else { return };
        let status = QueueStatus::of(&stats, time::OffsetDateTime::now_utc());
        let path = self.file(QUEUE_STATUS_FILE);
        let tmp = self.file(".queue.json.tmp");
        let mut bytes = serde_json::to_vec_pretty(&status).expect("queue status serializes");
        bytes.push(b'\n');
        if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::debug!(error = %e, "cannot write queue.json");
        }
    }
}

/// `contact.json`: the last exchange with the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFile {
    pub server: String,
    /// The last time the server answered (any status but a transport error).
    pub last_contact_at: Option<String>,
    /// The last error, cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_state_folder_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::new(dir.clone()).ensure_private().unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_missing_enrollment_says_how_to_enroll() {
        let tmp = tempfile::tempdir().unwrap();
        let e = StateDir::new(tmp.path().to_path_buf())
            .enrollment()
            .unwrap_err();
        assert!(e.to_string().contains("postwarden-agent enroll"), "{e}");
    }

    #[test]
    fn a_corrupt_enrollment_names_the_file_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().to_path_buf());
        state
            .write_private(ENROLLMENT_FILE, b"{\n  \"schema\": 3\n}")
            .unwrap();
        let e = state.enrollment().unwrap_err().to_string();
        assert!(e.contains("enrollment.json"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
