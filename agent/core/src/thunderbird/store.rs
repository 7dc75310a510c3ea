//! The Thunderbird store: reads profiles and system files, resolves effective values, and
//! writes repairs. All file I/O of the Thunderbird backend is here.
//!
//! How a repair is written (see `docs/adr/0001-thunderbird-enforcement-channels.md`):
//! - a locked value goes into the machine-wide `policies.json` as `{"Value", "Status": "locked"}`;
//! - the value is also written as the user's own value: into prefs.js when Thunderbird is not
//!   running (it rewrites prefs.js while it runs), into user.js when it is (read at next start);
//! - a lock that cannot be expressed machine-wide (profiles on this machine need different values
//!   for the same pref name) falls back to user.js and is reported as enforced but not locked;
//! - saved mail passwords are removed from logins.json only while Thunderbird is closed;
//! - an attachment type Thunderbird knows no MIME type for gets one in the user's
//!   `~/.mime.types` (Linux), or the `Handlers` policy would silently skip it.
//!
//! A store is a snapshot: [`ThunderbirdStore::load`] reads and parses every file first (a corrupt
//! one is a [`StoreError::Corrupt`] naming file, line and column, and nothing is changed);
//! `observe` answers from the snapshot; `apply` writes and marks the snapshot stale, so the next
//! `observe` reads every file again and what is reported is what is on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use postwarden_clients::thunderbird::accounts::{self, Accounts};
use postwarden_clients::thunderbird::autoconfig;
use postwarden_clients::thunderbird::effective::{
    AutoConfigLayer, AutoConfigOutcome, DefaultPrefFile, Layers, Resolved, Source,
};
use postwarden_clients::thunderbird::logins::Logins;
use postwarden_clients::thunderbird::mapping::{Location, ProfileView};
use postwarden_clients::thunderbird::mimetypes;
use postwarden_clients::thunderbird::paths;
use postwarden_clients::thunderbird::platform_policies::{combine, Combined};
use postwarden_clients::thunderbird::policies::{json_to_pref, pref_to_json, PoliciesDoc};
use postwarden_clients::thunderbird::prefs::{PrefValue, PrefsFile};
use postwarden_clients::under;
use postwarden_engine::{Failure, Failures, Observation, Observed, Override, Plan, Store, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use postwarden_registry::Registry;

use super::discover::{self, Running};
use super::platform::read_platform_policies;
use crate::error::StoreError;
use crate::fs::{read_bytes, read_text, sync_dir, write_atomic_with};
use crate::journal::Journal;
use crate::target::Target;

const REMEMBER_SIGNONS: &str = "signon.rememberSignons";
const OFFER_TO_SAVE_LOGINS: &str = "OfferToSaveLogins";
/// Who asked for which machine-wide lock, in the machine's state folder.
const LOCKS_FILE: &str = "thunderbird-locks.json";

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn parse_prefs(path: &Path, text: &str) -> Result<PrefsFile, StoreError> {
    PrefsFile::parse(text).map_err(|e| {
        StoreError::corrupt(
            path.display().to_string(),
            Some(e.line),
            Some(e.column),
            e.message,
        )
    })
}

/// One Thunderbird profile as read from disk.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub dir: PathBuf,
    pub scope: String,
    pub prefs_js: PrefsFile,
    pub user_js: Option<PrefsFile>,
    user_js_mtime: Option<SystemTime>,
    pub logins: Option<Logins>,
    pub running: Option<Running>,
    pub accounts: Accounts,
}

impl LoadedProfile {
    fn read(dir: &Path) -> Result<LoadedProfile, StoreError> {
        let prefs_path = dir.join("prefs.js");
        let prefs_js = match read_text(&prefs_path)? {
            Some(t) => parse_prefs(&prefs_path, &t)?,
            None => PrefsFile::parse("").expect("empty prefs parse"),
        };
        let user_path = dir.join("user.js");
        let user_js = read_text(&user_path)?
            .map(|t| parse_prefs(&user_path, &t))
            .transpose()?;
        let logins_path = dir.join("logins.json");
        let logins = read_text(&logins_path)?
            .map(|t| {
                Logins::parse(&logins_path.display().to_string(), &t).map_err(|e| {
                    StoreError::corrupt(e.file, Some(e.line), Some(e.column), e.message)
                })
            })
            .transpose()?;
        // user.js is read after prefs.js and wins: the account graph uses the same order.
        let accounts = accounts::read(|name| {
            user_js
                .as_ref()
                .and_then(|u| u.get_user(name))
                .or_else(|| prefs_js.get_user(name))
                .cloned()
        });
        Ok(LoadedProfile {
            scope: dir.display().to_string(),
            dir: dir.to_path_buf(),
            user_js_mtime: mtime(&user_path),
            running: discover::running(dir),
            prefs_js,
            user_js,
            logins,
            accounts,
        })
    }
}

/// The machine-wide files Thunderbird reads.
#[derive(Debug, Clone)]
pub struct SystemFiles {
    /// Where Thunderbird reads (and Postwarden writes) the policy file.
    pub policy_path: PathBuf,
    /// The policy file's content (from `policy_path`, or the fallback file when it is absent):
    /// what the agent edits and writes back.
    pub policy: Option<PoliciesDoc>,
    /// The policies in force: the platform's (Windows registry, macOS managed preferences)
    /// combined with the file's the way Mozilla's policy engine does, with where each comes
    /// from.
    pub in_force: Combined,
    policy_mtime: Option<SystemTime>,
    pub default_files: Vec<DefaultPrefFile>,
    /// The AutoConfig file `general.config.filename` names, evaluated for this user.
    pub autoconfig: Option<AutoConfigLayer>,
    autoconfig_mtime: Option<SystemTime>,
    /// Extensions with a MIME type in `/etc/mime.types` (Linux; `None` elsewhere, where the OS
    /// type registry is not modelled).
    mime_extensions: Option<BTreeSet<String>>,
}

impl SystemFiles {
    fn read(target: &Target, reg: Option<&dyn Registry>) -> Result<SystemFiles, StoreError> {
        let parse_policies = |path: &Path, text: &str| {
            PoliciesDoc::parse(&path.display().to_string(), text)
                .map_err(|e| StoreError::corrupt(e.file, Some(e.line), Some(e.column), e.message))
        };
        let policy_path = paths::policy_path(&target.system_root);
        let policy_text = read_text(&policy_path)?;
        let (policy, policy_mtime) = match &policy_text {
            Some(text) => (
                Some(parse_policies(&policy_path, text)?),
                mtime(&policy_path),
            ),
            None => match paths::policy_fallback_path(&target.system_root) {
                Some(fallback) => match read_text(&fallback)? {
                    Some(text) => (Some(parse_policies(&fallback, &text)?), mtime(&fallback)),
                    None => (None, None),
                },
                None => (None, None),
            },
        };
        let mut default_files = Vec::new();
        for dir in paths::default_pref_dirs(&target.system_root) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "js"))
                .collect();
            // Thunderbird loads a directory's files in reverse alphabetical order (measured).
            files.sort();
            files.reverse();
            for path in files {
                let Some(text) = read_text(&path)? else {
                    continue;
                };
                default_files.push(DefaultPrefFile {
                    prefs: parse_default_file(&path, text),
                    path,
                });
            }
        }
        let (autoconfig, autoconfig_mtime) = read_autoconfig(target, &default_files)?;
        let platform = read_platform_policies(target, reg)?;
        let in_force = combine(platform.as_ref(), policy.as_ref());
        for note in &in_force.notes {
            tracing::warn!("Thunderbird policies: {note}");
        }
        let mime_extensions = if cfg!(target_os = "linux") {
            let path = under(&target.system_root, "etc/mime.types");
            Some(
                read_text(&path)?
                    .map(|t| mimetypes::extensions(&t))
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        Ok(SystemFiles {
            mime_extensions,
            policy_path,
            policy,
            policy_mtime,
            in_force,
            default_files,
            autoconfig,
            autoconfig_mtime,
        })
    }
}

/// Reads a default-pref file the way libpref does: a statement it cannot parse is lost up to
/// the next `;`, and the rest of the file still counts (measured: a lock after a syntax error
/// holds). The lost statements keep their lines blank, so lines stay right.
fn parse_default_file(path: &Path, text: String) -> PrefsFile {
    let mut text = text;
    // Each round blanks one more non-blank piece; at most one per `;`, and the tail.
    for _ in 0..text.matches(';').count() + 2 {
        let e = match PrefsFile::parse(&text) {
            Ok(prefs) => return prefs,
            Err(e) => e,
        };
        tracing::warn!(
            file = %path.display(),
            line = e.line,
            column = e.column,
            "default-pref statement not understood, skipped up to the next ';' as Thunderbird \
             does: {}",
            e.message
        );
        let at = byte_offset(&text, e.line, e.column);
        let start = text[..at].rfind(';').map_or(0, |i| i + 1);
        let end = text[at..].find(';').map_or(text.len(), |i| at + i + 1);
        let blank: String = text[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        if text[start..end].trim().is_empty() {
            break;
        }
        text.replace_range(start..end, &blank);
    }
    PrefsFile::parse("").expect("empty prefs parse")
}

/// The byte offset of a 1-based line and column (in characters).
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text.len(), |(i, _)| line_start + i)
}

/// The file nsReadConfig refuses to run (Mozilla's block list).
const BLOCKED_CONFIGS: &[&str] = &["dsengine.cfg"];

/// Reads and evaluates the AutoConfig file the default-pref files name, the way Thunderbird
/// does at start: from `/etc/thunderbird` or else the installation directory, un-obscured by `general.config.obscure_value`,
/// with the user's `USER`, `LOGNAME` and `HOME` (other environment variables are unknown).
fn read_autoconfig(
    target: &Target,
    default_files: &[DefaultPrefFile],
) -> Result<(Option<AutoConfigLayer>, Option<SystemTime>), StoreError> {
    let empty = PrefsFile::parse("").expect("empty prefs parse");
    let defaults = Layers {
        default_files,
        autoconfig: None,
        policy: None,
        user_js: None,
        prefs_js: &empty,
    };
    let Some(PrefValue::Str(name)) = defaults.default_value("general.config.filename") else {
        return Ok((None, None));
    };
    if name.is_empty() || BLOCKED_CONFIGS.contains(&name.as_str()) {
        return Ok((None, None));
    }
    let obscure = match defaults.default_value("general.config.obscure_value") {
        Some(PrefValue::Int(v)) => v,
        _ => 0,
    };
    let path = paths::autoconfig_dirs(&target.system_root)
        .into_iter()
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| paths::gre_dir(&target.system_root).join(&name));
    let outcome = match read_bytes(&path)? {
        None => AutoConfigOutcome::Broken {
            line: 0,
            column: 0,
            message: "the file does not exist".to_owned(),
        },
        Some(bytes) => {
            let home = target.home.display().to_string();
            let env = |var: &str| match var {
                "USER" | "LOGNAME" => Some(target.user.clone()),
                "HOME" => Some(home.clone()),
                _ => None,
            };
            match autoconfig::evaluate(&bytes, obscure, &env) {
                Ok(cfg) => AutoConfigOutcome::Evaluated(cfg),
                Err(e) => AutoConfigOutcome::Broken {
                    line: e.line,
                    column: e.column,
                    message: e.message,
                },
            }
        }
    };
    Ok((
        Some(AutoConfigLayer {
            path: path.clone(),
            outcome,
        }),
        mtime(&path),
    ))
}

/// The layer that decides a pref beyond the agent's reach, as a finding's evidence and fix.
fn override_of(source: &Source) -> Option<Override> {
    Some(match source {
        Source::AutoConfigAny { path, line, why } => Override {
            layer: "AutoConfig".to_owned(),
            location: format!("{}:{line}", path.display()),
            evidence: format!(
                "{why}; such code may change any pref while Thunderbird runs, also after the \
                 policies Postwarden writes, so no value can be vouched for"
            ),
            fix: format!(
                "replace this code in {} with plain pref/defaultPref/lockPref/clearPref calls, \
                 or remove it, then run the agent again",
                path.display()
            ),
        },
        Source::AutoConfigBroken {
            path,
            line,
            column,
            message,
        } => Override {
            layer: "AutoConfig".to_owned(),
            location: if *line == 0 {
                path.display().to_string()
            } else {
                format!("{}:{line}:{column}", path.display())
            },
            evidence: format!(
                "{message}: Thunderbird shows \"Failed to read the configuration file\" at \
                 every start and waits for the user (headless, it hangs there); what the file \
                 sets depends on how far it ran"
            ),
            fix: format!(
                "repair {} or remove general.config.filename from the default-pref file that \
                 names it",
                path.display()
            ),
        },
        Source::RemoteAutoConfig { url, set_at } => Override {
            layer: "remote AutoConfig".to_owned(),
            location: match set_at {
                Some((path, line)) => format!(
                    "{url} (autoadmin.global_config_url, set at {}:{line})",
                    path.display()
                ),
                None => format!("{url} (autoadmin.global_config_url)"),
            },
            evidence: "Thunderbird fetches this configuration and runs it at every start, after \
                       the policies; Postwarden cannot evaluate it offline"
                .to_owned(),
            fix: "move these settings into the Postwarden profile, or make sure the remote \
                  configuration leaves them alone and remove autoadmin.global_config_url"
                .to_owned(),
        },
        _ => return None,
    })
}

/// How a value the agent cannot know is shown.
fn unknown_value(r: &Resolved) -> Value {
    Value::Redacted(match &r.source {
        Source::AutoConfigUnknown { path, line, why } => {
            format!("not known: {why} ({}:{line})", path.display())
        }
        // The finding names the layer that decides it.
        _ => "not known".to_owned(),
    })
}

/// Who asked for which locked value, per pref name, per profile directory. `policies.json` is
/// machine-wide, so a per-profile pref name (`mail.identity.id1.reply_to`) can be locked only
/// when every profile on the machine that uses it wants the same value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct LockOwners {
    schema: String,
    prefs: BTreeMap<String, BTreeMap<String, Json>>,
}

const LOCKS_SCHEMA: &str = "postwarden.thunderbird-locks/v1";

impl LockOwners {
    fn load(path: &Path) -> Result<LockOwners, StoreError> {
        match read_text(path)? {
            None => Ok(LockOwners {
                schema: LOCKS_SCHEMA.to_owned(),
                prefs: BTreeMap::new(),
            }),
            Some(text) => {
                let owners: LockOwners = serde_json::from_str(&text).map_err(|e| {
                    StoreError::corrupt(
                        path.display().to_string(),
                        Some(e.line()),
                        Some(e.column()),
                        e.to_string(),
                    )
                })?;
                if owners.schema != LOCKS_SCHEMA {
                    return Err(StoreError::corrupt(
                        path.display().to_string(),
                        None,
                        None,
                        format!("schema {:?} is not {LOCKS_SCHEMA:?}", owners.schema),
                    ));
                }
                Ok(owners)
            }
        }
    }

    fn set(&mut self, name: &str, profile: &Path, value: Json) {
        self.prefs
            .entry(name.to_owned())
            .or_default()
            .insert(profile.display().to_string(), value);
    }

    fn forget_missing_profiles(&mut self) {
        for owners in self.prefs.values_mut() {
            owners.retain(|dir, _| Path::new(dir).is_dir());
        }
        self.prefs.retain(|_, owners| !owners.is_empty());
    }

    /// The value every owner agrees on, or the profiles that disagree.
    fn agreed(&self, name: &str) -> std::result::Result<Json, Vec<String>> {
        let owners = &self.prefs[name];
        let first = owners.values().next().cloned().unwrap_or(Json::Null);
        if owners.values().all(|v| *v == first) {
            Ok(first)
        } else {
            Err(owners.keys().cloned().collect())
        }
    }
}

/// The pref form of a value; `Err` for a redacted value, which is never written.
fn to_pref(v: &Value) -> Result<Option<PrefValue>, String> {
    Ok(match v {
        Value::Absent => None,
        Value::Bool(b) => Some(PrefValue::Bool(*b)),
        Value::Int(i) => Some(PrefValue::Int(*i)),
        Value::Text(s) => Some(PrefValue::Str(s.clone())),
        Value::Redacted(_) => return Err("a redacted value cannot be written".to_owned()),
    })
}

fn to_value(v: Option<PrefValue>) -> Value {
    match v {
        None => Value::Absent,
        Some(PrefValue::Bool(b)) => Value::Bool(b),
        Some(PrefValue::Int(i)) => Value::Int(i),
        Some(PrefValue::Str(s)) => Value::Text(s),
    }
}

fn set_or_remove(prefs: &mut PrefsFile, name: &str, value: Option<&PrefValue>) {
    match value {
        Some(v) => prefs.set_user(name, v),
        None => {
            prefs.remove_user(name);
        }
    }
}

/// The Thunderbird side of the engine's [`Store`].
pub struct ThunderbirdStore {
    target: Target,
    /// Where Thunderbird's registry policies are read (Windows; a `MemRegistry` in tests).
    registry: Option<Box<dyn Registry + Send>>,
    dirs: Vec<PathBuf>,
    pub system: SystemFiles,
    pub profiles: Vec<LoadedProfile>,
    /// The user's `~/.mime.types`, if any, and the extensions it maps (parsed once per read).
    user_mime: Option<String>,
    user_mime_extensions: BTreeSet<String>,
    /// Files were written since the snapshot was read: the next `observe` reads again.
    stale: bool,
}

impl std::fmt::Debug for ThunderbirdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThunderbirdStore")
            .field("target", &self.target)
            .field("registry", &self.registry.is_some())
            .field("dirs", &self.dirs)
            .field("system", &self.system)
            .field("profiles", &self.profiles)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

impl ThunderbirdStore {
    /// Finds every Thunderbird profile of the user and reads all files the backend needs;
    /// Thunderbird's registry policies from `registry` (Windows, or an in-memory one in tests).
    pub fn load(
        target: &Target,
        registry: Option<Box<dyn Registry + Send>>,
    ) -> Result<ThunderbirdStore, StoreError> {
        let dirs = discover::find_profiles(&target.home)?;
        let system = SystemFiles::read(target, registry.as_deref().map(|r| r as &dyn Registry))?;
        let mut store = ThunderbirdStore {
            target: target.clone(),
            registry,
            dirs,
            system,
            profiles: Vec::new(),
            user_mime: None,
            user_mime_extensions: BTreeSet::new(),
            stale: false,
        };
        store.read_user_mime()?;
        store.profiles = store
            .dirs
            .iter()
            .map(|d| LoadedProfile::read(d))
            .collect::<Result<_, _>>()?;
        Ok(store)
    }

    fn refresh(&mut self) -> Result<(), StoreError> {
        self.system = SystemFiles::read(
            &self.target,
            self.registry.as_deref().map(|r| r as &dyn Registry),
        )?;
        self.read_user_mime()?;
        self.profiles = self
            .dirs
            .iter()
            .map(|d| LoadedProfile::read(d))
            .collect::<Result<_, _>>()?;
        self.stale = false;
        Ok(())
    }

    /// Whether the user has any Thunderbird profile.
    pub fn is_set_up(&self) -> bool {
        !self.profiles.is_empty()
    }

    fn locks_file(&self) -> PathBuf {
        self.target.system_state().join(LOCKS_FILE)
    }

    /// What the mapping needs of each profile.
    pub fn views(&self) -> Vec<ProfileView<'_>> {
        self.profiles
            .iter()
            .map(|p| ProfileView {
                scope: &p.scope,
                accounts: &p.accounts,
            })
            .collect()
    }

    pub fn policy_scope(&self) -> String {
        self.system.policy_path.display().to_string()
    }

    fn read_user_mime(&mut self) -> Result<(), StoreError> {
        self.user_mime = read_text(&self.target.home.join(".mime.types"))?;
        self.user_mime_extensions = self
            .user_mime
            .as_deref()
            .map(mimetypes::extensions)
            .unwrap_or_default();
        Ok(())
    }

    /// Whether Thunderbird can resolve a MIME type for `ext` (always assumed off Linux).
    fn knows_type(&self, ext: &str) -> bool {
        let Some(system) = &self.system.mime_extensions else {
            return true;
        };
        system.contains(ext) || self.user_mime_extensions.contains(ext)
    }

    fn stale(&self, running: Option<&Running>, source: &Source, profile: &LoadedProfile) -> bool {
        let Some(run) = running else {
            return false;
        };
        let changed = match source {
            s if s.is_policy() => self.system.policy_mtime,
            s if s.is_autoconfig() => self.system.autoconfig_mtime,
            Source::UserJs => profile.user_js_mtime,
            _ => None,
        };
        changed.is_some_and(|t| t > run.since)
    }

    /// The platform policy (Windows registry, macOS managed preferences) that decides `name`,
    /// or that hides the `policies.json` policy the agent would lock it with.
    fn platform_override(&self, name: &str, source: &Source) -> Option<Override> {
        let c = &self.system.in_force;
        let origin = match source {
            Source::PolicyLegacy | Source::PolicyLocked | Source::PolicyUser => {
                c.origins.pref(name)
            }
            Source::PolicyNamed(policy) => c.origins.policy(policy),
            _ => None,
        };
        origin
            .or_else(|| c.hides("Preferences"))
            .map(|o| o.to_override())
    }

    /// Every layer that decides a pref of profile `p`.
    fn layers<'a>(&'a self, p: &'a LoadedProfile) -> Layers<'a> {
        Layers {
            default_files: &self.system.default_files,
            autoconfig: self.system.autoconfig.as_ref(),
            policy: self.system.in_force.doc.as_ref(),
            user_js: p.user_js.as_ref(),
            prefs_js: &p.prefs_js,
        }
    }

    fn observe_one(&self, location: &Location) -> Observation {
        match location {
            Location::Pref { profile, name } => {
                let p = &self.profiles[*profile];
                let r = self.layers(p).resolve(name);
                Observation {
                    stale: self.stale(p.running.as_ref(), &r.source, p),
                    value: if r.is_unknown() {
                        unknown_value(&r)
                    } else {
                        to_value(r.value.clone())
                    },
                    locked: r.locked,
                    overridden_by: override_of(&r.source)
                        .or_else(|| self.platform_override(name, &r.source)),
                }
            }
            Location::StoredPasswords { profile } => {
                let hosts = self.profiles[*profile]
                    .logins
                    .as_ref()
                    .map(Logins::mail_hosts)
                    .unwrap_or_default();
                Observation::new(if hosts.is_empty() {
                    Value::Absent
                } else {
                    Value::Redacted(format!(
                        "{} saved mail password{} for {}",
                        hosts.len(),
                        if hosts.len() == 1 { "" } else { "s" },
                        hosts.join(", ")
                    ))
                })
            }
            Location::Handler { ext } => {
                let value = match self
                    .system
                    .in_force
                    .doc
                    .as_ref()
                    .and_then(|p| p.handler(ext))
                {
                    None => Value::Absent,
                    Some(_) if !self.knows_type(ext) => Value::Text(format!(
                        "ignored: Thunderbird knows no MIME type for .{ext}"
                    )),
                    Some((action, false)) => Value::Text(action),
                    Some((action, true)) => Value::Text(format!("{action}, ask first")),
                };
                let stale = self.profiles.iter().any(|p| {
                    p.running
                        .as_ref()
                        .is_some_and(|r| self.system.policy_mtime.is_some_and(|t| t > r.since))
                });
                Observation {
                    value,
                    locked: false,
                    stale,
                    overridden_by: None,
                }
            }
        }
    }
}

/// One file to write: its path, content, and the mode it gets if new.
struct Write {
    path: PathBuf,
    text: String,
    mode: u32,
}

impl Store for ThunderbirdStore {
    type Location = Location;
    type Error = StoreError;

    fn observe(&mut self, locations: &[Location]) -> Result<Observed<Location>, StoreError> {
        if self.stale {
            self.refresh()?;
        }
        Ok(locations
            .iter()
            .map(|l| (l.clone(), self.observe_one(l)))
            .collect())
    }

    fn apply(&mut self, plan: &Plan<Location>) -> Result<Failures<Location>, StoreError> {
        let mut failures: Failures<Location> = Failures::new();
        let policy_before = self.system.policy.clone().unwrap_or_default();
        let mut policy = policy_before.clone();
        let locks_path = self.locks_file();
        let mut owners = LockOwners::load(&locks_path)?;
        let owners_before = owners.clone();
        // A profile that no longer exists no longer needs its value.
        owners.forget_missing_profiles();

        // 1. Locks: who wants which value for each machine-wide pref name.
        let mut lock_names: BTreeMap<&str, Vec<&Location>> = BTreeMap::new();
        for a in plan.actions.iter().filter(|a| a.lock) {
            if let Location::Pref { profile, name } = &a.location {
                let v = match to_pref(&a.value) {
                    Ok(v) => v.map_or(Json::Null, |v| pref_to_json(&v)),
                    Err(why) => {
                        failures.insert(a.location.clone(), Failure::value(why));
                        continue;
                    }
                };
                owners.set(name, &self.profiles[*profile].dir, v);
                lock_names.entry(name).or_default().push(&a.location);
            }
        }
        let mut unlockable: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, locations) in &lock_names {
            match owners.agreed(name) {
                Ok(v) => match json_to_pref(&v) {
                    // The named policy locks it and, unlike a Status:locked entry, also wins
                    // over a default-pref file or AutoConfig lock.
                    Some(PrefValue::Bool(false)) if *name == REMEMBER_SIGNONS => {
                        policy.remove_pref(name);
                        policy.set_named(OFFER_TO_SAVE_LOGINS, Json::Bool(false));
                    }
                    Some(v) if self.locked_before_policies(locations) => {
                        policy.set_legacy_pref(name, &v)
                    }
                    Some(v) => policy.set_locked_pref(name, &v),
                    None => {
                        policy.remove_pref(name);
                    }
                },
                Err(profiles) => {
                    policy.remove_pref(name);
                    for l in locations {
                        failures.insert(
                            (*l).clone(),
                            Failure::lock(format!(
                                "enforced, not locked: Thunderbird's policies.json is machine-wide \
                                 and these profiles need different values for this pref: {}; \
                                 the value is re-applied from user.js at every start instead",
                                profiles.join(", ")
                            )),
                        );
                    }
                    unlockable.insert(name, profiles);
                }
            }
        }

        // 2. User values, saved passwords, handlers.
        let mut prefs_js: BTreeMap<usize, PrefsFile> = BTreeMap::new();
        let mut user_js: BTreeMap<usize, PrefsFile> = BTreeMap::new();
        let mut logins: BTreeMap<usize, Logins> = BTreeMap::new();
        let mut untyped: Vec<String> = Vec::new();
        for a in &plan.actions {
            match &a.location {
                Location::Pref { profile, name } => {
                    let p = &self.profiles[*profile];
                    let value = match to_pref(&a.value) {
                        Ok(v) => v,
                        Err(why) => {
                            failures.insert(a.location.clone(), Failure::value(why));
                            continue;
                        }
                    };
                    let locked = a.lock && !unlockable.contains_key(name.as_str());
                    let in_user_js = p
                        .user_js
                        .as_ref()
                        .is_some_and(|u| u.get_user(name).is_some());
                    let fallback = a.lock && !locked;
                    if p.running.is_none() {
                        let f = prefs_js
                            .entry(*profile)
                            .or_insert_with(|| p.prefs_js.clone());
                        set_or_remove(f, name, value.as_ref());
                    }
                    // user.js overrides prefs.js at every start: keep it in line, and use it
                    // where prefs.js cannot be edited (running: the user's own value then
                    // becomes right at the next start, not only the lock above it) or where no
                    // lock can hold the value.
                    if in_user_js || fallback || p.running.is_some() {
                        let f = user_js.entry(*profile).or_insert_with(|| {
                            p.user_js
                                .clone()
                                .unwrap_or_else(|| PrefsFile::parse("").expect("empty parses"))
                        });
                        set_or_remove(f, name, value.as_ref());
                    }
                }
                Location::StoredPasswords { profile } => {
                    let p = &self.profiles[*profile];
                    if let Some(run) = &p.running {
                        failures.insert(
                            a.location.clone(),
                            Failure::value(format!(
                                "Thunderbird is running (pid {}); saved passwords can only be \
                                 removed while it is closed: close it and run apply again",
                                run.pid
                            )),
                        );
                    } else if let Some(l) = &p.logins {
                        logins
                            .entry(*profile)
                            .or_insert_with(|| l.clone())
                            .remove_mail();
                    }
                }
                Location::Handler { ext } => {
                    policy.set_save_to_disk(ext);
                    if !self.knows_type(ext) {
                        untyped.push(ext.clone());
                    }
                }
            }
        }

        // 3. Write, each file atomically after the journal recorded them all. The lock
        // ownership table goes before policies.json: a run killed in between still knows which
        // locks are ours, and the next run writes the policy it finds missing.
        let mut writes = Vec::new();
        if owners != owners_before {
            let json = serde_json::to_string_pretty(&owners).expect("serialises") + "\n";
            writes.push(Write {
                path: locks_path,
                text: json,
                mode: 0o644,
            });
        }
        // Written when our edits change it, or when the policies in force came from the
        // fallback file, whose content then moves into the file that shadows it.
        if policy != policy_before {
            writes.push(Write {
                path: self.system.policy_path.clone(),
                text: policy.render(),
                mode: 0o644,
            });
        }
        for (i, f) in prefs_js {
            writes.push(Write {
                path: self.profiles[i].dir.join("prefs.js"),
                text: f.render(),
                mode: 0o600,
            });
        }
        for (i, f) in user_js {
            writes.push(Write {
                path: self.profiles[i].dir.join("user.js"),
                text: f.render(),
                mode: 0o600,
            });
        }
        if !untyped.is_empty() {
            let text = mimetypes::with_types(self.user_mime.as_deref().unwrap_or(""), &untyped);
            writes.push(Write {
                path: self.target.home.join(".mime.types"),
                text,
                mode: 0o644,
            });
        }
        for (i, l) in logins {
            writes.push(Write {
                path: self.profiles[i].dir.join("logins.json"),
                text: l.render(),
                mode: 0o600,
            });
        }
        self.stale = true;
        self.write_all(writes)?;
        Ok(failures)
    }
}

impl ThunderbirdStore {
    /// A default-pref file or the AutoConfig file locks one of these prefs (or sets it to a
    /// value the agent cannot know) before the policies apply: only the legacy policy form,
    /// which unlocks, sets and locks, outranks that.
    fn locked_before_policies(&self, locations: &[&Location]) -> bool {
        locations.iter().any(|l| match l {
            Location::Pref { profile, name } => {
                let r = self
                    .layers(&self.profiles[*profile])
                    .resolve_before_policies(name);
                r.locked || r.is_unknown()
            }
            _ => false,
        })
    }

    /// Writes the files whose content changes: per scope (machine, then user), one journal
    /// commit recording them all, then each file atomically, then each folder synced once.
    fn write_all(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut changed = Vec::new();
        for w in writes {
            if read_text(&w.path)?.as_deref() != Some(w.text.as_str()) {
                changed.push(w);
            }
        }
        let home = &self.target.home;
        let (user, machine): (Vec<Write>, Vec<Write>) =
            changed.into_iter().partition(|w| w.path.starts_with(home));
        for (files, state) in [
            (machine, self.target.system_state()),
            (user, self.target.home_state()),
        ] {
            if files.is_empty() {
                continue;
            }
            let scope_root = self.target.scope_root(&state);
            let mut journal = Journal::open_for_write(&state, &scope_root)?;
            let paths: Vec<&Path> = files.iter().map(|w| w.path.as_path()).collect();
            journal.record_files(&paths)?;
            let mut dirs = BTreeSet::new();
            for w in &files {
                write_atomic_with(&w.path, w.text.as_bytes(), w.mode, false)
                    .map_err(|e| StoreError::write(&w.path, e))?;
                dirs.extend(w.path.parent().map(Path::to_path_buf));
                tracing::info!(file = %w.path.display(), "setting repaired: file written");
            }
            for dir in dirs {
                sync_dir(&dir).map_err(|e| StoreError::write(&dir, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_default_pref_statement_is_skipped_up_to_the_next_semicolon() {
        let text = "pref(\"a\", 1);\nthis is no pref;\npref(\"b\", 2, locked);\npref(\"c\", \n";
        let prefs = parse_default_file(Path::new("/etc/thunderbird/pref/x.js"), text.into());
        let names: Vec<(&str, usize, bool)> = prefs
            .entries()
            .iter()
            .map(|e| (e.name.as_str(), e.line, e.locked))
            .collect();
        // As Thunderbird: the broken statement is lost, the lock after it holds, lines stay.
        assert_eq!(names, [("a", 1, false), ("b", 3, true)]);
        assert!(parse_default_file(Path::new("x.js"), ";;;(((".into())
            .entries()
            .is_empty());
        assert_eq!(byte_offset("ab\ncdé\nf", 2, 3), 5);
        assert_eq!(byte_offset("ab\ncdé\nf", 3, 1), 8);
    }
}
