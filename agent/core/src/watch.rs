//! Where a service must look for changes: every file the stores read, and the places where new
//! profiles or accounts appear. The daemon watches these (files by their folder, because
//! programs replace files by renaming a new one over them); this module only names them.
//!
//! A folder that does not exist yet is watched through its nearest existing ancestor, for the
//! name of the next component: creating `/etc/thunderbird/policies/` is then seen, and the
//! next pass watches deeper.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use postwarden_clients::applemail::mapping::Domain;
use postwarden_clients::thunderbird::paths;
use postwarden_profiles::report::Client;
use postwarden_registry::KeyPath;

use crate::applemail::store::managed_dirs;
use crate::error::StoreError;
use crate::target::Target;
use crate::thunderbird::discover;

/// The files of a Thunderbird profile the store reads, and its lock (Thunderbird starting or
/// exiting changes what is `pending_restart`).
pub const PROFILE_FILES: &[&str] = &[
    "prefs.js",
    "user.js",
    "logins.json",
    "lock",
    ".parentlock",
    "parent.lock",
];

/// Entries of one folder that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names {
    /// Only these names (files replaced by rename show up under their final name).
    Only(Vec<OsString>),
    /// Every entry (a folder of default-pref files, where any `*.js` counts).
    Any,
}

impl Names {
    pub fn matches(&self, name: &std::ffi::OsStr) -> bool {
        match self {
            Names::Any => true,
            Names::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// A folder to watch, non-recursively, and for which client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPoint {
    pub dir: PathBuf,
    pub names: Names,
    pub client: Client,
}

/// Whether `home` holds a profile of a client the agent manages (a Thunderbird profile list, or
/// Apple Mail's preferences): a service manages the accounts for which this holds.
pub fn has_managed_client(home: &Path) -> bool {
    let thunderbird = paths::PROFILE_ROOTS.iter().any(|r| {
        let root = home.join(r);
        root.join("profiles.ini").is_file() || root.join("installs.ini").is_file()
    });
    thunderbird || crate::applemail::is_set_up(home)
}

/// Everything to watch for `target` and `clients` on the file system. Reads `profiles.ini`
/// (to find the profiles); an unreadable one is an error, the caller's full check reports it.
pub fn watch_points(target: &Target, clients: &[Client]) -> Result<Vec<WatchPoint>, StoreError> {
    let mut points = Vec::new();
    let only = |names: &[&str]| Names::Only(names.iter().map(OsString::from).collect());
    for &client in clients {
        match client {
            Client::Thunderbird => {
                for root in paths::PROFILE_ROOTS {
                    let root = target.home.join(root);
                    points.push(anchored(
                        &root,
                        only(&["profiles.ini", "installs.ini"]),
                        client,
                    ));
                }
                points.push(WatchPoint {
                    dir: target.home.clone(),
                    names: only(&[".mime.types"]),
                    client,
                });
                for profile in discover::find_profiles(&target.home)? {
                    points.push(WatchPoint {
                        dir: profile,
                        names: only(PROFILE_FILES),
                        client,
                    });
                }
                let policy = paths::policy_path(&target.system_root);
                points.push(file_point(&policy, client));
                if let Some(fallback) = paths::policy_fallback_path(&target.system_root) {
                    points.push(file_point(&fallback, client));
                }
                for dir in paths::default_pref_dirs(&target.system_root) {
                    points.push(anchored(&dir, Names::Any, client));
                }
                // The AutoConfig file, whatever `general.config.filename` names.
                for dir in paths::autoconfig_dirs(&target.system_root) {
                    points.push(anchored(&dir, Names::Any, client));
                }
            }
            Client::AppleMail => {
                let mut files: Vec<PathBuf> = Domain::ALL
                    .iter()
                    .map(|d| target.home.join(d.home_path()))
                    .collect();
                for dir in managed_dirs(&target.system_root, &target.user) {
                    files.extend(
                        Domain::ALL
                            .iter()
                            .map(|d| dir.join(format!("{}.plist", d.name()))),
                    );
                }
                points.extend(files.iter().map(|f| file_point(f, client)));
            }
            // The registry is watched through `registry_roots`.
            Client::Outlook => {}
        }
    }
    Ok(merge(points))
}

/// The registry subtrees Outlook's settings are read from, in `target`'s hive.
pub fn registry_roots(target: &Target) -> Vec<KeyPath> {
    use postwarden_clients::outlook::mapping::{
        ATTACHMENT_MANAGER, CLOUD_POLICIES, OUTLOOK_POLICIES, OUTLOOK_PREFERENCES,
    };
    let hive = target.hive();
    [
        OUTLOOK_POLICIES,
        CLOUD_POLICIES,
        ATTACHMENT_MANAGER,
        OUTLOOK_PREFERENCES,
    ]
    .iter()
    .map(|k| hive.join(k))
    .collect()
}

/// The folder of `file`, for its name; anchored if the folder does not exist yet.
fn file_point(file: &Path, client: Client) -> WatchPoint {
    let name = file.file_name().map(OsString::from).unwrap_or_default();
    match file.parent() {
        Some(dir) => anchored(dir, Names::Only(vec![name]), client),
        None => WatchPoint {
            dir: file.to_path_buf(),
            names: Names::Any,
            client,
        },
    }
}

/// `dir` for `names` if it exists, else its nearest existing ancestor for the name of the next
/// component towards it.
fn anchored(dir: &Path, names: Names, client: Client) -> WatchPoint {
    if dir.is_dir() {
        return WatchPoint {
            dir: dir.to_path_buf(),
            names,
            client,
        };
    }
    let mut child = dir;
    let mut parent = dir.parent();
    while let Some(p) = parent {
        if p.is_dir() {
            let name = child.file_name().map(OsString::from).unwrap_or_default();
            return WatchPoint {
                dir: p.to_path_buf(),
                names: Names::Only(vec![name]),
                client,
            };
        }
        child = p;
        parent = p.parent();
    }
    WatchPoint {
        dir: dir.to_path_buf(),
        names,
        client,
    }
}

/// One point per (folder, client), names united.
fn merge(points: Vec<WatchPoint>) -> Vec<WatchPoint> {
    let mut out: Vec<WatchPoint> = Vec::new();
    for p in points {
        match out
            .iter_mut()
            .find(|o| o.dir == p.dir && o.client == p.client)
        {
            None => out.push(p),
            Some(o) => match (&mut o.names, p.names) {
                (Names::Any, _) => {}
                (n, Names::Any) => *n = Names::Any,
                (Names::Only(a), Names::Only(b)) => {
                    for name in b {
                        if !a.contains(&name) {
                            a.push(name);
                        }
                    }
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(home: &Path, root: &Path) -> Target {
        Target::new(home.to_path_buf(), root.to_path_buf()).unwrap()
    }

    #[test]
    fn thunderbird_profiles_policies_and_the_users_mime_types_are_watched() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let tb = home.path().join(".thunderbird");
        std::fs::create_dir_all(tb.join("abc.default")).unwrap();
        std::fs::write(
            tb.join("profiles.ini"),
            "[Profile0]\nName=default\nIsRelative=1\nPath=abc.default\n",
        )
        .unwrap();
        let points =
            watch_points(&target(home.path(), root.path()), &[Client::Thunderbird]).unwrap();
        let find = |dir: &Path| points.iter().find(|p| p.dir == dir).cloned();

        let profile = find(&tb.join("abc.default")).expect("the profile folder");
        assert!(profile.names.matches("prefs.js".as_ref()));
        assert!(profile.names.matches("lock".as_ref()));
        assert!(!profile.names.matches("places.sqlite".as_ref()));
        let ini = find(&tb).expect("the profile root");
        assert!(ini.names.matches("profiles.ini".as_ref()));
        let home_point = find(home.path()).expect("the home folder");
        assert!(home_point.names.matches(".mime.types".as_ref()));
        // Roots that do not exist are watched through the home, for their first component.
        assert!(home_point.names.matches("snap".as_ref()));
        // The policy file's folders do not exist under this root: the root itself is watched
        // for the first of them (`etc` on Linux, `Program Files` on Windows).
        let policy = paths::policy_path(root.path());
        let first = policy
            .strip_prefix(root.path())
            .unwrap()
            .components()
            .next()
            .unwrap();
        let system = find(root.path()).expect("the system root");
        assert!(system.names.matches(first.as_os_str()), "{system:?}");
    }

    #[test]
    fn an_existing_policy_folder_is_watched_for_the_policy_file_only() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let policy = paths::policy_path(root.path());
        std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
        let points =
            watch_points(&target(home.path(), root.path()), &[Client::Thunderbird]).unwrap();
        let p = points
            .iter()
            .find(|p| p.dir == policy.parent().unwrap())
            .expect("the policy folder");
        assert_eq!(p.names, Names::Only(vec![OsString::from("policies.json")]));
    }

    #[test]
    fn apple_mail_domains_and_managed_preferences_are_watched() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let prefs = home.path().join("Library/Preferences");
        std::fs::create_dir_all(&prefs).unwrap();
        let points = watch_points(&target(home.path(), root.path()), &[Client::AppleMail]).unwrap();
        assert!(points
            .iter()
            .any(|p| p.dir == prefs && p.names.matches("com.apple.mail-shared.plist".as_ref())));
        assert!(points.iter().all(|p| p.client == Client::AppleMail));
    }

    #[test]
    fn outlook_roots_are_in_the_targets_hive() {
        let home = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut t = target(home.path(), root.path());
        t.registry_user = Some("S-1-5-21-1-2-3-1001".parse().unwrap());
        let roots = registry_roots(&t);
        assert_eq!(roots.len(), 4);
        assert!(roots.iter().all(|r| r
            .to_string()
            .starts_with(r"HKEY_USERS\S-1-5-21-1-2-3-1001\Software")));
    }
}
