//! Where Thunderbird keeps its files: profile roots, `profiles.ini` / `installs.ini`, the system
//! policy file and the default-pref directories. Pure: paths are computed, never read.
//!
//! # Platform specific behavior
//! Profile roots are looked for under the user's home in every layout Thunderbird uses
//! (Linux, Snap, Flatpak, Windows `AppData\Roaming`, macOS `Library`), so one agent build finds
//! them all. The system policy file is the one Thunderbird reads on the OS the agent runs on.
//! Only the Linux paths are verified against a real Thunderbird here.

use std::path::{Path, PathBuf};

use crate::under;

/// Directories under a home that may hold a `profiles.ini`.
pub const PROFILE_ROOTS: &[&str] = &[
    ".thunderbird",
    "snap/thunderbird/common/.thunderbird",
    ".var/app/org.mozilla.Thunderbird/.thunderbird",
    "AppData/Roaming/Thunderbird",
    "Library/Thunderbird",
];

/// One profile entry of `profiles.ini` or `installs.ini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniProfile {
    pub name: Option<String>,
    pub path: String,
    pub relative: bool,
}

/// Reads the profile entries of a `profiles.ini` (`[ProfileN]` sections) or an `installs.ini`
/// (`[<hash>]` sections whose `Default=` names a relative profile path).
pub fn parse_ini(text: &str) -> Vec<IniProfile> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |section: &str, fields: &mut Vec<(String, String)>| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if section.starts_with("Profile") {
            if let Some(path) = get("Path") {
                out.push(IniProfile {
                    name: get("Name"),
                    path,
                    relative: get("IsRelative").as_deref() != Some("0"),
                });
            }
        } else if !section.is_empty() && section != "General" {
            // installs.ini `[<hash>]` and profiles.ini `[Install<hash>]`: Default=<relative path>
            if let Some(path) = get("Default") {
                out.push(IniProfile {
                    name: None,
                    path,
                    relative: true,
                });
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&section, &mut fields);
            section = name.trim().to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    flush(&section, &mut fields);
    out
}

/// Resolves an ini entry against the directory that holds the ini file.
pub fn resolve(root: &Path, p: &IniProfile) -> PathBuf {
    // Windows writes relative paths with forward slashes (`Profiles/abcd.default`).
    let rel: PathBuf = p.path.split(['/', '\\']).collect();
    if p.relative {
        root.join(rel)
    } else {
        PathBuf::from(&p.path)
    }
}

/// What this build does on the current OS without having been verified against a real
/// Thunderbird there; reported with every run's results.
pub fn platform_caveat() -> Option<&'static str> {
    if cfg!(target_os = "linux") {
        None
    } else {
        Some(
            "Thunderbird on this OS: the policies.json location (the default installation's \
             distribution directory) and the running-instance check (parent.lock) come from \
             Mozilla's documentation and were not verified against a real Thunderbird here; \
             Thunderbird installed elsewhere does not read the file Postwarden writes",
        )
    }
}

/// The policy file Thunderbird reads, which Postwarden writes.
///
/// # Platform specific behavior
/// Linux: `/etc/thunderbird/policies/policies.json` (verified; when it exists it is the only
/// file read). Windows and macOS: the installation's `distribution/policies.json` at the default
/// install location (from Mozilla's documentation; unverified here).
pub fn policy_path(system_root: &Path) -> PathBuf {
    if cfg!(windows) {
        under(
            system_root,
            "Program Files/Mozilla Thunderbird/distribution/policies.json",
        )
    } else if cfg!(target_os = "macos") {
        under(
            system_root,
            "Applications/Thunderbird.app/Contents/Resources/distribution/policies.json",
        )
    } else {
        under(system_root, "etc/thunderbird/policies/policies.json")
    }
}

/// On Linux, the file Thunderbird reads when `/etc/thunderbird/policies/policies.json` does not
/// exist. Its content is carried into the file we create, so we never shadow an
/// administrator's policies.
pub fn policy_fallback_path(system_root: &Path) -> Option<PathBuf> {
    (!cfg!(windows) && !cfg!(target_os = "macos")).then(|| {
        under(
            system_root,
            "usr/lib/thunderbird/distribution/policies.json",
        )
    })
}

/// The installation (GRE) directory: where Thunderbird looks for the AutoConfig file named by
/// `general.config.filename`.
///
/// # Platform specific behavior
/// Linux: `/usr/lib/thunderbird` (Debian's package; verified). Windows and macOS: the default
/// install location (from Mozilla's documentation; unverified here).
pub fn gre_dir(system_root: &Path) -> PathBuf {
    if cfg!(windows) {
        under(system_root, "Program Files/Mozilla Thunderbird")
    } else if cfg!(target_os = "macos") {
        under(
            system_root,
            "Applications/Thunderbird.app/Contents/Resources",
        )
    } else {
        under(system_root, "usr/lib/thunderbird")
    }
}

/// Where Thunderbird looks for the AutoConfig file, first match wins; [`gre_dir`] last.
///
/// # Platform specific behavior
/// Linux: Debian builds with `MOZ_SYSTEM_PREFERENCES`, so `/etc/thunderbird/<name>` is read and
/// shadows the installation's (measured). Elsewhere only the installation directory.
pub fn autoconfig_dirs(system_root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if !cfg!(windows) && !cfg!(target_os = "macos") {
        dirs.push(under(system_root, "etc/thunderbird"));
    }
    dirs.push(gre_dir(system_root));
    dirs
}

/// Directories of default-pref files that can lock prefs (`pref(.., locked)`), in the order
/// Thunderbird loads them (measured: the installation's, Debian's `/etc/thunderbird/pref`, then
/// `/etc/thunderbird/defaults/pref`).
pub fn default_pref_dirs(system_root: &Path) -> Vec<PathBuf> {
    if cfg!(windows) || cfg!(target_os = "macos") {
        return Vec::new();
    }
    [
        "usr/lib/thunderbird/defaults/pref",
        "etc/thunderbird/pref",
        "etc/thunderbird/defaults/pref",
    ]
    .iter()
    .map(|p| under(system_root, p))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profiles_and_installs() {
        let ini =
            "[Profile1]\nName=default-default\nIsRelative=1\nPath=0mw9qfp3.default-default\n\n\
                   [Profile0]\nName=work\nIsRelative=0\nPath=/srv/tb/work\nDefault=1\n\n\
                   [General]\nStartWithLastProfile=1\nVersion=2\n\n\
                   [InstallFDC34C9F024745EB]\nDefault=0mw9qfp3.default-default\nLocked=1\n";
        let p = parse_ini(ini);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name.as_deref(), Some("default-default"));
        assert!(p[0].relative);
        assert!(!p[1].relative);
        assert_eq!(
            resolve(Path::new("/h/.thunderbird"), &p[0]),
            PathBuf::from("/h/.thunderbird/0mw9qfp3.default-default")
        );
        assert_eq!(
            resolve(Path::new("/h"), &p[1]),
            PathBuf::from("/srv/tb/work")
        );
        let installs = parse_ini("[FDC34C9F024745EB]\nDefault=Profiles/x.default\nLocked=1\n");
        assert_eq!(
            resolve(Path::new("/r"), &installs[0]),
            PathBuf::from("/r/Profiles/x.default")
        );
    }
}
