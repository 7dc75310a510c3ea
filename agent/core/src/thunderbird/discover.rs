//! Finding a user's Thunderbird profiles on disk, and whether Thunderbird is running.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use postwarden_clients::thunderbird::paths;

use crate::error::StoreError;
use crate::fs::read_text;

/// The running Thunderbird that holds a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub pid: u32,
    /// When it took the profile lock (≈ when it started and read its configuration).
    pub since: SystemTime,
}

/// Whether a Thunderbird process holds `profile`.
///
/// # Platform specific behavior
/// On Linux the profile's `lock` symlink points to `<ip>:+<pid>`; the lock is stale (left by a
/// crash) unless that process exists and is Thunderbird. Elsewhere a `parent.lock` file is
/// taken as "running" (conservative: we then do not edit prefs.js); unverified.
pub fn running(profile: &Path) -> Option<Running> {
    #[cfg(target_os = "linux")]
    {
        let lock = profile.join("lock");
        let target = std::fs::read_link(&lock).ok()?;
        let pid: u32 = target.to_str()?.rsplit_once(":+")?.1.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if !comm.trim().starts_with("thunderbird") {
            return None;
        }
        // An exited Thunderbird its parent has not reaped yet is a zombie: not running.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if is_zombie(&stat) {
            return None;
        }
        let since = std::fs::symlink_metadata(&lock).ok()?.modified().ok()?;
        Some(Running { pid, since })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let meta = std::fs::metadata(profile.join("parent.lock")).ok()?;
        Some(Running {
            pid: 0,
            since: meta.modified().ok()?,
        })
    }
}

/// Whether a `/proc/<pid>/stat` line is a zombie's (state `Z`; `X` is dead). The command name
/// is in parentheses and may itself contain spaces and parentheses: the state follows the last
/// `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// Every profile directory listed in a `profiles.ini` or `installs.ini` under `home`, once,
/// in a stable order. A listed directory that does not exist is skipped with a warning.
pub fn find_profiles(home: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in paths::PROFILE_ROOTS {
        let root = home.join(root);
        for ini in ["profiles.ini", "installs.ini"] {
            let Some(text) = read_text(&root.join(ini))? else {
                continue;
            };
            for entry in paths::parse_ini(&text) {
                let dir = paths::resolve(&root, &entry);
                if dirs.contains(&dir) {
                    continue;
                }
                if dir.is_dir() {
                    dirs.push(dir);
                } else {
                    tracing::warn!(profile = %dir.display(), ini = %root.join(ini).display(),
                        "listed Thunderbird profile does not exist");
                }
            }
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_running() {
        assert!(is_zombie("4242 (thunderbird) Z 1 4242 4242 0 -1"));
        assert!(is_zombie("4242 (thunder (bird)) X 1"));
        assert!(!is_zombie("4242 (thunderbird) S 1 4242 4242 0 -1"));
        assert!(!is_zombie("garbage"));
    }

    #[test]
    fn a_stale_lock_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("127.0.0.1:+999999999", dir.path().join("lock")).unwrap();
        assert_eq!(running(dir.path()), None);
    }
}
