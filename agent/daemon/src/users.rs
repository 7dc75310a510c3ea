//! Which local accounts the agent manages.
//!
//! By default every local account with a home that holds a managed client's profile:
//! - Linux: `passwd` entries with UID ≥ 1000 (not `nobody`);
//! - macOS: the folders of `/Users` (not `Shared` or `Guest`);
//! - Windows: the profile list (`HKLM\…\ProfileList`, domain and local accounts `S-1-5-21-…`),
//!   where the home holds a managed client's profile or Outlook is set up in the user's hive,
//!   which must be loaded (`HKEY_USERS\<SID>`: the user is logged on).
//!
//! `--user NAME --home DIR` replaces discovery (tests, or an administrator who wants exactly
//! these accounts). On Windows each such user gets the SID of the profile-list account with
//! that home ([`with_profile_list_sids`]): Outlook is managed in its hive, as a service must.

use std::path::{Path, PathBuf};

use postwarden_agent_core::{InputError, Sid, Target};
use postwarden_registry::{KeyPath, RegValue, Registry, Root};

/// A local account the agent manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    pub home: PathBuf,
    /// Windows: the account's SID (its registry hive is `HKEY_USERS\<SID>`).
    pub sid: Option<String>,
}

impl LocalUser {
    /// The core's target for this user.
    pub fn target(&self, system_root: &Path) -> Result<Target, InputError> {
        let mut t = Target::new(self.home.clone(), system_root.to_path_buf())?;
        t.user = self.name.clone();
        t.registry_user = self.sid.as_deref().map(str::parse::<Sid>).transpose()?;
        Ok(t)
    }
}

pub use postwarden_agent_core::watch::has_managed_client;

/// The accounts of a `passwd` file with UID ≥ 1000, except `nobody` (65534).
pub fn parse_passwd(text: &str) -> Vec<LocalUser> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            let uid: u32 = f[2].parse().ok()?;
            (uid >= 1000 && uid != 65534 && !f[0].is_empty() && f[5].starts_with('/')).then(|| {
                LocalUser {
                    name: f[0].to_owned(),
                    home: PathBuf::from(f[5]),
                    sid: None,
                }
            })
        })
        .collect()
}

/// The managed accounts of this machine (see the module documentation). `system_root`
/// prefixes `/etc/passwd` and `/Users` (tests use a fake root).
pub fn discover(system_root: &Path) -> std::io::Result<Vec<LocalUser>> {
    let all = if cfg!(target_os = "macos") {
        macos_users(&system_root.join("Users"))?
    } else if cfg!(windows) {
        // Filtered there: Outlook lives in the registry, not in the home.
        return Ok(windows_users_from_os());
    } else {
        let passwd = std::fs::read_to_string(system_root.join("etc/passwd"))?;
        parse_passwd(&passwd)
            .into_iter()
            .map(|mut u| {
                u.home = reroot(system_root, &u.home);
                u
            })
            .collect()
    };
    Ok(all
        .into_iter()
        .filter(|u| has_managed_client(&u.home))
        .collect())
}

fn reroot(system_root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) if system_root != Path::new("/") => system_root.join(rel),
        _ => path.to_path_buf(),
    }
}

fn macos_users(users: &Path) -> std::io::Result<Vec<LocalUser>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(users)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "Shared" || name == "Guest" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            out.push(LocalUser {
                name,
                home: entry.path(),
                sid: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(windows)]
fn windows_users_from_os() -> Vec<LocalUser> {
    let reg = postwarden_registry::windows::WinRegistry::new();
    windows_users(&reg)
        .into_iter()
        .filter(|u| is_managed_on_windows(&reg, u))
        .collect()
}

#[cfg(not(windows))]
fn windows_users_from_os() -> Vec<LocalUser> {
    Vec::new()
}

const PROFILE_LIST: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList";

/// The interactive accounts of the Windows profile list (`S-1-5-21-…`), with their profile
/// folder. The account name is the folder's name (the profile list keeps no name).
pub fn windows_users(reg: &dyn Registry) -> Vec<LocalUser> {
    let list = KeyPath::new(Root::LocalMachine, PROFILE_LIST);
    let Ok(sids) = reg.subkeys(&list) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sid in sids.into_iter().filter(|s| s.starts_with("S-1-5-21-")) {
        let Ok(Some(path)) = reg.get(&list.join(&sid), "ProfileImagePath") else {
            continue;
        };
        let Some(text) = path.as_text() else { continue };
        // Windows writes `%SystemDrive%\Users\<name>` (REG_EXPAND_SZ).
        let path = match path {
            RegValue::ExpandSz(_) => expand_env_vars(&text, &|name| std::env::var(name).ok()),
            _ => text,
        };
        let home = PathBuf::from(&path);
        let name = path
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or_default()
            .to_owned();
        out.push(LocalUser {
            name,
            home,
            sid: Some(sid),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether the hive of `sid` is loaded (the user is logged on, or a service loaded it).
pub fn hive_loaded(reg: &dyn Registry, sid: &str) -> bool {
    reg.exists(&KeyPath::new(Root::Users, sid)).unwrap_or(false)
}

/// Whether a profile-list account is managed: its home exists and holds a managed client's
/// profile, or Outlook is set up in its hive, which must be loaded (a hive that is not loaded
/// cannot be read; such an account joins at the first full check after its user logs on).
pub fn is_managed_on_windows(reg: &dyn Registry, user: &LocalUser) -> bool {
    if !user.home.is_dir() {
        return false;
    }
    has_managed_client(&user.home)
        || user.sid.as_deref().is_some_and(|sid| {
            postwarden_agent_core::outlook::is_set_up(reg, &KeyPath::new(Root::Users, sid))
                .unwrap_or(false)
        })
}

/// Windows: gives each user named on the command line (`--user NAME --home DIR`) the SID of
/// the profile-list account with that home (`listed`, from [`windows_users`]), so that a
/// service works on that account's hive (`HKEY_USERS\<SID>`). Without one the target is
/// `HKEY_CURRENT_USER`: right for a console run by that user, but a service's
/// `HKEY_CURRENT_USER` is its own account's hive, so `service` refuses such a user.
pub fn with_profile_list_sids(
    users: Vec<LocalUser>,
    listed: &[LocalUser],
    service: bool,
) -> Result<Vec<LocalUser>, String> {
    users
        .into_iter()
        .map(|mut u| {
            if u.sid.is_none() {
                u.sid = listed
                    .iter()
                    .find(|l| same_windows_path(&l.home, &u.home))
                    .and_then(|l| l.sid.clone());
            }
            match (&u.sid, service) {
                (Some(_), _) => Ok(u),
                (None, true) => Err(format!(
                    "--home {}: no account of this machine's profile list has this home, so the \
                     service cannot find the registry hive of --user {} (its \
                     HKEY_CURRENT_USER is the service account's own)",
                    u.home.display(),
                    u.name
                )),
                (None, false) => {
                    tracing::info!(user = %u.name, home = %u.home.display(),
                        "no profile-list account has this home: Outlook is managed in \
                         HKEY_CURRENT_USER, the hive of the account running the agent");
                    Ok(u)
                }
            }
        })
        .collect()
}

/// [`with_profile_list_sids`] with this machine's profile list.
#[cfg(windows)]
pub fn with_os_profile_list_sids(
    users: Vec<LocalUser>,
    service: bool,
) -> Result<Vec<LocalUser>, String> {
    let reg = postwarden_registry::windows::WinRegistry::new();
    with_profile_list_sids(users, &windows_users(&reg), service)
}

/// Windows paths name the same folder regardless of case, separator and a trailing separator.
fn same_windows_path(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| {
        p.to_string_lossy()
            .replace('/', "\\")
            .trim_end_matches('\\')
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// `%NAME%` replaced by `lookup(NAME)`, as Windows expands REG_EXPAND_SZ; unknown names and a
/// lone `%` stay as they are.
fn expand_env_vars(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 => match lookup(&after[..end]) {
                Some(value) => {
                    out.push_str(&value);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push('%');
                    rest = after;
                }
            },
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use postwarden_registry::{MemRegistry, RegValue};

    use super::*;

    #[test]
    fn passwd_gives_human_accounts_only() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment\n\
                    daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                    alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                    broken:x:1001\n\
                    bob:x:1001:1001::/home/bob:/bin/zsh\n";
        let users = parse_passwd(text);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(users[0].home, PathBuf::from("/home/alice"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_homes_with_a_managed_client_are_discovered() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(
            r.join("etc/passwd"),
            "alice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("home/alice/.thunderbird")).unwrap();
        std::fs::write(r.join("home/alice/.thunderbird/profiles.ini"), "").unwrap();
        std::fs::create_dir_all(r.join("home/bob")).unwrap();
        let users = discover(r).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "alice");
        assert_eq!(users[0].home, r.join("home/alice"));
    }

    #[test]
    fn the_windows_profile_list_gives_interactive_accounts() {
        let mut reg = MemRegistry::new();
        let list = KeyPath::new(Root::LocalMachine, PROFILE_LIST);
        for (sid, path) in [
            ("S-1-5-18", r"C:\Windows\system32\config\systemprofile"),
            ("S-1-5-21-1-2-3-1001", r"C:\Users\alice"),
        ] {
            reg.set(
                &list.join(sid),
                "ProfileImagePath",
                &RegValue::ExpandSz(path.to_owned()),
            )
            .unwrap();
        }
        let users = windows_users(&reg);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].name, "alice");
        assert_eq!(users[0].sid.as_deref(), Some("S-1-5-21-1-2-3-1001"));
        assert!(!hive_loaded(&reg, "S-1-5-21-1-2-3-1001"));
    }

    #[test]
    fn profile_image_paths_expand_environment_variables() {
        let env = |name: &str| (name == "SystemDrive").then(|| "C:".to_owned());
        for (text, expanded) in [
            (r"%SystemDrive%\Users\alice", r"C:\Users\alice"),
            (r"C:\Users\alice", r"C:\Users\alice"),
            (r"%Unknown%\x", r"%Unknown%\x"),
            (r"100%\a%%b", r"100%\a%%b"),
        ] {
            assert_eq!(expand_env_vars(text, &env), expanded, "{text}");
        }
    }

    fn user(name: &str, home: &str, sid: Option<&str>) -> LocalUser {
        LocalUser {
            name: name.to_owned(),
            home: PathBuf::from(home),
            sid: sid.map(str::to_owned),
        }
    }

    #[test]
    fn users_named_on_the_command_line_get_the_sid_of_their_home() {
        let listed = [user(
            "alice",
            r"C:\Users\Alice",
            Some("S-1-5-21-1-2-3-1001"),
        )];
        let named = vec![
            user("alice", r"c:/users/alice/", None),
            user("bob", r"C:\Users\bob", None),
        ];
        let users = with_profile_list_sids(named.clone(), &listed, false).unwrap();
        assert_eq!(users[0].sid.as_deref(), Some("S-1-5-21-1-2-3-1001"));
        assert_eq!(users[1].sid, None, "a console run uses HKEY_CURRENT_USER");
        let err = with_profile_list_sids(named, &listed, true).unwrap_err();
        assert!(
            err.contains(r"C:\Users\bob") && err.contains("bob"),
            "{err}"
        );
    }
}
