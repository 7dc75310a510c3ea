//! The Group Policy objects on this computer that may set the policy values the Outlook store
//! manages: their `Registry.pol` files, read from disk, and the names the Group Policy history
//! gives them. What each source is and how sure we are of it: docs/adr/0002, "Registry layers".
//!
//! Sources, in ascending precedence (a later one overrides an earlier one):
//!
//! | Scope | File | Known from |
//! |---|---|---|
//! | user, machine | `Windows\System32\GroupPolicy\{User,Machine}\Registry.pol` (the local GPO) | Microsoft ("Registry Policy File Format"; "Local Group Policy Objects") |
//! | user | `Windows\System32\GroupPolicyUsers\<SID>\User\Registry.pol` (the local GPOs for a group, `S-1-5-32-*`, then for the user's own SID when it is known) | third parties (multiple local GPOs, Windows Vista and later) |
//! | user, machine | `Windows\System32\GroupPolicy\DataStore\<n>\sysvol\<domain>\Policies\<GUID>\{User,Machine}\Registry.pol` and the user's `AppData\Local\GroupPolicy\DataStore\...\User\Registry.pol` (cached domain GPOs, Windows 8.1 and later) | third parties |
//! | user, last resort | `<profile>\ntuser.pol`: Windows' record of the registry policy it applied to the user (no GPO named) | third parties only; used only when it parses as `PReg` and no `Registry.pol` decides |
//!
//! Cached domain GPOs are ordered, and filtered to the ones applied, by the Group Policy
//! history (`<hive>\Software\Microsoft\Windows\CurrentVersion\Group Policy\History\<registry
//! extension GUID>\<n>`: `GPOName`, `DisplayName`; Microsoft KB 201453) when it lists any;
//! without a history every cached GPO counts, in path order.
//!
//! A `Registry.pol` that cannot be read or parsed is an error naming the file and the byte: the
//! agent cannot say what Group Policy enforces without it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use postwarden_clients::outlook::layers::GpoValue;
use postwarden_registry::pol::{self, Effect, PolIndex, MAX_FILE_SIZE};
use postwarden_registry::{KeyPath, RegError, RegValue, Registry, Root};

use crate::error::StoreError;
use crate::target::Target;

/// The Group Policy registry client-side extension, whose history names the GPOs that set
/// registry policy.
pub const REGISTRY_EXTENSION: &str = "{35378EAC-683F-11D2-A89A-00C04FBBCFA2}";
/// Where Windows records the GPOs it applied (per hive: HKLM for the computer, the user's hive
/// for the user).
pub const HISTORY: &str = r"Software\Microsoft\Windows\CurrentVersion\Group Policy\History";

/// Where the Group Policy files of one user on one computer are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicyPlace {
    /// The Windows directory, e.g. `C:\Windows`.
    pub windows: PathBuf,
    /// The user's profile folder, e.g. `C:\Users\alice`.
    pub profile: PathBuf,
    /// The user's SID when it is known (a service working on `HKEY_USERS\<SID>`).
    pub user_sid: Option<String>,
}

impl GroupPolicyPlace {
    /// The Windows directory under the target's system root, the target's home, and the SID of
    /// the hive it works on.
    pub fn of(target: &Target) -> GroupPolicyPlace {
        GroupPolicyPlace {
            windows: target.system_root.join("Windows"),
            profile: target.home.clone(),
            user_sid: target.registry_user.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    User,
    Machine,
}

#[derive(Debug)]
struct Source {
    scope: Scope,
    gpo: String,
    path: PathBuf,
    index: PolIndex,
    archive: bool,
}

/// The parsed Group Policy sources of one user, in ascending precedence.
#[derive(Debug, Default)]
pub struct GroupPolicy {
    sources: Vec<Source>,
}

/// One GPO of a Group Policy history.
#[derive(Debug, Clone)]
struct Applied {
    order: u32,
    guid: String,
    name: String,
}

fn join(base: &Path, parts: &[&str]) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

/// The entries of `dir` (name, path, is a folder); none if it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, StoreError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(StoreError::read(dir, e)),
    };
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| StoreError::read(dir, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
            is_dir,
        ));
    }
    Ok(out)
}

/// The subdirectories of `dir` (name, path), sorted by name; none if it does not exist.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out: Vec<(String, PathBuf)> = entries(dir)?
        .into_iter()
        .filter(|(_, _, is_dir)| *is_dir)
        .map(|(name, path, _)| (name, path))
        .collect();
    out.sort();
    Ok(out)
}

/// The entry of `dir` named `name` without regard to ASCII case (Windows file names), spelled
/// as the directory spells it.
fn child(dir: &Path, name: &str) -> Result<Option<PathBuf>, StoreError> {
    Ok(entries(dir)?
        .into_iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, path, _)| path))
}

/// Reads and parses a `Registry.pol`; `None` if it does not exist.
fn read_pol(path: &Path) -> Result<Option<PolIndex>, StoreError> {
    let size = match fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::read(path, e)),
    };
    if size > MAX_FILE_SIZE as u64 {
        return Err(StoreError::corrupt(
            path.display().to_string(),
            None,
            None,
            format!(
                "byte {MAX_FILE_SIZE}: the file has {size} bytes; Registry.pol files over \
                 16 MiB are refused"
            ),
        ));
    }
    let Some(bytes) = crate::fs::read_bytes(path)? else {
        return Ok(None);
    };
    let file = pol::parse(&bytes).map_err(|e| {
        StoreError::corrupt(
            path.display().to_string(),
            None,
            None,
            format!("{e} (a Registry.pol file: the [MS-GPREG] PReg format)"),
        )
    })?;
    Ok(Some(PolIndex::new(file)))
}

/// The GPOs a Group Policy history lists for the registry extension, in the order applied.
fn history(reg: &dyn Registry, hive: &KeyPath) -> Result<Vec<Applied>, RegError> {
    let key = hive.join(HISTORY).join(REGISTRY_EXTENSION);
    let mut out = Vec::new();
    for sub in reg.subkeys(&key)? {
        let Ok(order) = sub.parse::<u32>() else {
            continue;
        };
        let values = reg.values(&key.join(&sub))?;
        let text = |name: &str| {
            values
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_text())
        };
        if let Some(guid) = text("GPOName") {
            let name = text("DisplayName").unwrap_or_else(|| guid.clone());
            out.push(Applied { order, guid, name });
        }
    }
    out.sort_by_key(|a| a.order);
    Ok(out)
}

/// A well-known group's name, for the local GPOs of groups.
fn group_name(sid: &str) -> Option<&'static str> {
    match sid {
        "S-1-5-32-544" => Some("Administrators"),
        "S-1-5-32-545" => Some("Users"),
        _ => None,
    }
}

/// The cached domain GPOs under a `DataStore` folder: (GUID, the `User` or `Machine` file).
fn cached(datastore: &Path, part: &str) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for (_, n) in subdirs(datastore)? {
        let Some(sysvol) = child(&n, "sysvol")? else {
            continue;
        };
        for (_, domain) in subdirs(&sysvol)? {
            let Some(policies) = child(&domain, "Policies")? else {
                continue;
            };
            for (guid, gpo) in subdirs(&policies)? {
                let Some(dir) = child(&gpo, part)? else {
                    continue;
                };
                if let Some(file) = child(&dir, "Registry.pol")? {
                    out.push((guid, file));
                }
            }
        }
    }
    Ok(out)
}

impl GroupPolicy {
    /// No Group Policy sources (a store that has not looked).
    pub fn none() -> GroupPolicy {
        GroupPolicy::default()
    }

    /// Reads every source of `place`, and the Group Policy histories of `hive` (the user's) and
    /// of the computer.
    pub fn load(
        place: &GroupPolicyPlace,
        reg: &dyn Registry,
        hive: &KeyPath,
    ) -> Result<GroupPolicy, StoreError> {
        let mut gp = GroupPolicy::default();
        let system = join(&place.windows, &["System32"]);
        // 1. The local GPO.
        for (scope, part) in [(Scope::User, "User"), (Scope::Machine, "Machine")] {
            let path = join(&system, &["GroupPolicy", part, "Registry.pol"]);
            gp.add(scope, "Local Group Policy".to_owned(), path)?;
        }
        // 2. The local GPOs of groups, then of this user.
        let mut per_user: Vec<(String, PathBuf)> = subdirs(&system.join("GroupPolicyUsers"))?
            .into_iter()
            .filter(|(sid, _)| sid.starts_with("S-1-5-32-"))
            .collect();
        if let Some(sid) = &place.user_sid {
            per_user.push((sid.clone(), join(&system, &["GroupPolicyUsers", sid])));
        }
        for (sid, dir) in per_user {
            let name = match group_name(&sid) {
                Some(group) => format!("Local Group Policy for {sid} ({group})"),
                None => format!("Local Group Policy for {sid}"),
            };
            gp.add(Scope::User, name, join(&dir, &["User", "Registry.pol"]))?;
        }
        // 3. Cached domain GPOs, in the order the histories give (or path order).
        let machine_store = join(&system, &["GroupPolicy", "DataStore"]);
        let user_store = join(
            &place.profile,
            &["AppData", "Local", "GroupPolicy", "DataStore"],
        );
        let user_history = history(reg, hive)?;
        let machine_history = history(reg, &KeyPath::new(Root::LocalMachine, ""))?;
        let mut user_files = cached(&machine_store, "User")?;
        user_files.extend(cached(&user_store, "User")?);
        for (scope, files, applied) in [
            (Scope::User, user_files, &user_history),
            (
                Scope::Machine,
                cached(&machine_store, "Machine")?,
                &machine_history,
            ),
        ] {
            let mut ordered: BTreeMap<(u32, PathBuf), String> = BTreeMap::new();
            for (guid, path) in files {
                let seen = applied.iter().find(|a| a.guid.eq_ignore_ascii_case(&guid));
                match (seen, applied.is_empty()) {
                    (Some(a), _) => {
                        ordered.insert((a.order, path), format!("\"{}\" {guid}", a.name));
                    }
                    // Not applied, by the history: another user's, or no longer linked.
                    (None, false) => {}
                    (None, true) => {
                        ordered.insert(
                            (u32::MAX, path),
                            format!("{guid} (cached copy; no Group Policy history names it)"),
                        );
                    }
                }
            }
            for ((_, path), name) in ordered {
                gp.add(scope, name, path)?;
            }
        }
        // 4. The record of applied user policy, when it reads as a policy file.
        let archive = place.profile.join("ntuser.pol");
        if let Ok(Some(index)) = read_pol(&archive) {
            gp.sources.push(Source {
                scope: Scope::User,
                gpo: "ntuser.pol".to_owned(),
                path: archive,
                index,
                archive: true,
            });
        }
        Ok(gp)
    }

    fn add(&mut self, scope: Scope, gpo: String, path: PathBuf) -> Result<(), StoreError> {
        if let Some(index) = read_pol(&path)? {
            self.sources.push(Source {
                scope,
                gpo,
                path,
                index,
                archive: false,
            });
        }
        Ok(())
    }

    /// The files read, in ascending precedence.
    pub fn files(&self) -> Vec<&Path> {
        self.sources.iter().map(|s| s.path.as_path()).collect()
    }

    fn value(&self, scope: Scope, key: &str, name: &str) -> Option<GpoValue> {
        let decide = |archive: bool| {
            let mut found = None;
            for s in self
                .sources
                .iter()
                .filter(|s| s.scope == scope && s.archive == archive)
            {
                let Some((effect, entry)) = s.index.effect(key, name) else {
                    continue;
                };
                let value: Option<RegValue> = match effect {
                    Effect::Set(v) => Some(v),
                    Effect::Deleted => None,
                    // Set only when missing: it does not fight a value that is there.
                    Effect::Soft(_) => continue,
                };
                found = Some(GpoValue {
                    gpo: s.gpo.clone(),
                    file: s.path.display().to_string(),
                    offset: entry.offset,
                    key: entry.key_path().to_owned(),
                    name: name.to_owned(),
                    value,
                    archive,
                });
            }
            found
        };
        decide(false).or_else(|| decide(true))
    }

    /// What Group Policy's User Configuration does to `key\name` of the user's hive.
    pub fn user_value(&self, key: &str, name: &str) -> Option<GpoValue> {
        self.value(Scope::User, key, name)
    }

    /// What Group Policy's Computer Configuration does to `HKLM\key\name`.
    pub fn machine_value(&self, key: &str, name: &str) -> Option<GpoValue> {
        self.value(Scope::Machine, key, name)
    }
}
