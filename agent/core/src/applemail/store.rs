//! The Apple Mail store: reads Mail's preference domains and the forced values of installed
//! configuration profiles, and writes repairs domain by domain.
//!
//! How a domain is read and written depends on the OS ([`Channel`]):
//! - elsewhere (Linux tests, fixture homes): the plist files under `--home`, read whole, changed
//!   key by key (unknown keys kept), written binary and atomically after a backup;
//! - on macOS: through `defaults export` / `defaults import`, in the user's context, because
//!   cfprefsd caches preference files and overwrites edits made behind its back.
//!
//! The managed layers of a domain (`docs/adr/0003-apple-mail-preferences-and-profiles.md`):
//! - **forced for the user**: `<system-root>/Library/Managed Preferences/<user>/<domain>.plist`,
//! - **forced for the computer**: `<system-root>/Library/Managed Preferences/<domain>.plist`,
//!
//!   both written only by the configuration-profile system (a `com.apple.ManagedClient.
//!   preferences` payload's `Forced` settings, or a custom payload for the domain). A forced key
//!   decides the whole key, a dictionary included (CFPreferences takes a key from the first
//!   domain that has it and does not merge dictionaries), and the user's layer beats the
//!   computer's (Apple's managed-client model: user settings override computer settings). The
//!   agent never writes these files and cannot outrank them: a forced setting is observed with
//!   `overridden_by` naming the file, the key and the profile's payload when the file records it,
//!   so the engine never writes it and reports it `failed` when its value is wrong (`compliant`
//!   and locked when it is right).
//! - **set-once** (`Set-Once` settings): written once into the user's own domain, after which
//!   the user may change them; they are ordinary user values here, read and repaired like any
//!   other (a profile that is changed or reinstalled may write them again).
//!
//! `complete.plist` in the managed folders (an aggregate of every managed domain) is not read:
//! the per-domain files carry the same values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plist::{Dictionary, Value as Plist};
use postwarden_clients::applemail::mapping::{Domain, Form, Location};
use postwarden_clients::applemail::plistfile::PlistDoc;
use postwarden_clients::under;
use postwarden_engine::{Failures, Observation, Observed, Override, Plan, Store, Value};

use super::channel::Channel;
use crate::error::StoreError;
use crate::fs::read_bytes;
use crate::journal::Journal;

/// Where installed configuration profiles put forced values for `user`: user scope first.
pub fn managed_dirs(system_root: &Path, user: &str) -> Vec<PathBuf> {
    let base = under(system_root, "Library/Managed Preferences");
    vec![base.join(user), base]
}

/// How a finding names the layer that forces a preference.
pub const MANAGED_LAYER: &str = "macOS managed preferences (configuration profile)";

/// Keys the profile system writes into a managed plist about the payload itself (a custom
/// payload for the domain is written whole); they are not preferences.
const PAYLOAD_KEYS: &[&str] = &[
    "PayloadDisplayName",
    "PayloadIdentifier",
    "PayloadType",
    "PayloadUUID",
    "PayloadVersion",
    "_manualProfile",
];

/// Who a managed plist forces preferences for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `/Library/Managed Preferences/<user>/`: a user-scope profile (or a device profile's
    /// settings for this user).
    User,
    /// `/Library/Managed Preferences/`: every user of the computer.
    Computer,
}

/// One managed plist of one domain.
#[derive(Debug, Clone)]
struct ForcedFile {
    scope: Scope,
    path: PathBuf,
    /// The forced preferences (payload metadata removed).
    values: Dictionary,
    /// The payload that wrote it, when the file says: `PayloadIdentifier` ("display name").
    payload: Option<String>,
}

impl ForcedFile {
    fn read(scope: Scope, path: PathBuf) -> Result<Option<ForcedFile>, StoreError> {
        let Some(bytes) = read_bytes(&path)? else {
            return Ok(None);
        };
        let mut values = parse(&bytes, &path.display().to_string())?.root;
        let text = |v: Option<Plist>| v.and_then(|v| v.into_string());
        let id = text(values.remove("PayloadIdentifier"));
        let name = text(values.remove("PayloadDisplayName"));
        for key in PAYLOAD_KEYS {
            values.remove(key);
        }
        let payload = match (id, name) {
            (Some(id), Some(name)) => Some(format!("{id} (\"{name}\")")),
            (Some(id), None) => Some(id),
            (None, Some(name)) => Some(format!("\"{name}\"")),
            (None, None) => None,
        };
        Ok(Some(ForcedFile {
            scope,
            path,
            values,
            payload,
        }))
    }
}

/// A forced key that decides a setting.
struct Forced<'a> {
    file: &'a ForcedFile,
    /// The value in force: the key's, or its dictionary's entry (`None`: the forced dictionary
    /// has no such entry, so the setting is absent).
    value: Option<&'a Plist>,
}

/// A plist value in a few words, for evidence.
fn describe(v: &Plist) -> String {
    match v {
        Plist::Boolean(b) => b.to_string(),
        Plist::Integer(i) => i.to_string(),
        Plist::Real(r) => r.to_string(),
        Plist::String(s) => format!("{s:?}"),
        Plist::Array(a) => format!(
            "[{}]",
            a.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Plist::Dictionary(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{k:?}: {}", describe(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

/// Whether Mail was ever set up for the user: its container or one of its domains exists.
pub fn is_set_up(home: &Path) -> bool {
    home.join("Library/Containers/com.apple.mail").is_dir()
        || Domain::ALL[..3]
            .iter()
            .any(|d| home.join(d.home_path()).is_file())
}

/// One user's Apple Mail preferences.
///
/// A snapshot, like every store: `load` reads every domain and forced value (a corrupt one is a
/// [`StoreError::Corrupt`] and nothing is written), `observe` answers from it, and `apply`
/// marks it stale so the next `observe` reads again.
#[derive(Debug)]
pub struct AppleMailStore {
    home: PathBuf,
    channel: Channel,
    journal_dir: PathBuf,
    managed: Vec<PathBuf>,
    mail_running: bool,
    docs: BTreeMap<Domain, Option<PlistDoc>>,
    /// Per domain, the managed plists that exist, user scope first.
    forced: BTreeMap<Domain, Vec<ForcedFile>>,
    written: Vec<Domain>,
    stale: bool,
}

fn parse(bytes: &[u8], name: &str) -> Result<PlistDoc, StoreError> {
    PlistDoc::parse(bytes).map_err(|e| StoreError::corrupt(name, None, None, e.to_string()))
}

impl AppleMailStore {
    /// Reads every domain and every forced value first: a corrupt file stops this client before
    /// anything is written. `user` names the user's folder of managed preferences.
    pub fn load(
        home: &Path,
        system_root: &Path,
        user: &str,
        channel: Channel,
        journal_dir: PathBuf,
        mail_running: bool,
    ) -> Result<AppleMailStore, StoreError> {
        let mut store = AppleMailStore {
            home: home.to_path_buf(),
            channel,
            journal_dir,
            managed: managed_dirs(system_root, user),
            mail_running,
            docs: BTreeMap::new(),
            forced: BTreeMap::new(),
            written: Vec::new(),
            stale: false,
        };
        store.refresh()?;
        Ok(store)
    }

    fn refresh(&mut self) -> Result<(), StoreError> {
        self.docs.clear();
        self.forced.clear();
        for domain in Domain::ALL {
            let doc = match self.channel.read(&self.home, domain)? {
                Some((bytes, name)) => Some(parse(&bytes, &name)?),
                None => None,
            };
            self.docs.insert(domain, doc);
            let mut forced = Vec::new();
            for (dir, scope) in self.managed.iter().zip([Scope::User, Scope::Computer]) {
                let path = dir.join(format!("{}.plist", domain.name()));
                forced.extend(ForcedFile::read(scope, path)?);
            }
            self.forced.insert(domain, forced);
        }
        self.stale = false;
        Ok(())
    }

    /// The files a watcher must follow for drift: the user's domains and the forced values.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Domain::ALL
            .iter()
            .map(|d| self.home.join(d.home_path()))
            .collect();
        for dir in &self.managed {
            for d in Domain::ALL {
                files.push(dir.join(format!("{}.plist", d.name())));
            }
        }
        files
    }

    /// The managed plist that forces `location`'s key, user scope first. A forced key decides
    /// the whole key: for an entry of a dictionary, the forced dictionary's entry or nothing,
    /// never the user's.
    fn forced(&self, location: &Location) -> Option<Forced<'_>> {
        let file = self
            .forced
            .get(&location.domain)?
            .iter()
            .find(|f| f.values.contains_key(&location.key))?;
        let v = &file.values[&location.key];
        let value = match &location.entry {
            None => Some(v),
            Some(e) => v.as_dictionary().and_then(|d| d.get(e)),
        };
        Some(Forced { file, value })
    }

    fn overridden_by(location: &Location, forced: &Forced<'_>) -> Override {
        let file = forced.file;
        let key = &location.key;
        let mut at = format!("{}, key \"{key}\"", file.path.display());
        if let Some(e) = &location.entry {
            at.push_str(&format!(", entry \"{e}\""));
        }
        let evidence = match (&location.entry, forced.value) {
            (None, Some(v)) => format!("{key} = {} (forced)", describe(v)),
            (Some(e), Some(v)) => format!("{key} → {e} = {} (forced)", describe(v)),
            (Some(e), None) => format!(
                "{key} is forced to {} without \"{e}\"",
                describe(&file.values[key])
            ),
            (None, None) => unreachable!("a forced key has a value"),
        };
        let whom = match file.scope {
            Scope::User => "for this user",
            Scope::Computer => "for every user of this computer",
        };
        let profile = match &file.payload {
            Some(p) => format!("the configuration profile with the payload {p}"),
            None => "the configuration profile (`profiles show` lists them)".to_owned(),
        };
        Override {
            layer: MANAGED_LAYER.to_owned(),
            location: at,
            evidence,
            fix: format!(
                "change {profile} that forces {} {key} {whom}, or remove the key from it; \
                 Postwarden writes the user's preferences, which a forced preference outranks",
                location.domain.name()
            ),
        }
    }

    fn user_value(&self, location: &Location) -> Option<&Plist> {
        self.docs
            .get(&location.domain)?
            .as_ref()?
            .get(&location.key, location.entry.as_deref())
    }

    fn observe_one(&self, location: &Location) -> Observation {
        let forced = self.forced(location);
        let raw = match &forced {
            Some(f) => f.value,
            None => self.user_value(location),
        };
        let value = match (location.form, raw) {
            (_, None) => Value::Absent,
            (Form::Bool, Some(Plist::Boolean(b))) => Value::Bool(*b),
            (Form::Int, Some(Plist::Integer(i))) => match i.as_signed() {
                Some(i) => Value::Int(i),
                None => Value::Text(format!("{i:?}")),
            },
            (Form::Int, Some(Plist::String(s))) => match s.trim().parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Text(s.clone()),
            },
            (Form::Text, Some(Plist::String(s))) => Value::Text(s.clone()),
            (_, Some(other)) => Value::Text(format!("{other:?}")),
        };
        Observation {
            value,
            locked: forced.is_some(),
            stale: self.mail_running && self.written.contains(&location.domain),
            overridden_by: forced.map(|f| Self::overridden_by(location, &f)),
        }
    }

    fn encode(location: &Location, value: &Value) -> Result<Option<Plist>, String> {
        Ok(Some(match (location.form, value) {
            (_, Value::Absent) => return Ok(None),
            (Form::Bool, Value::Bool(b)) => Plist::Boolean(*b),
            (Form::Int, Value::Int(i)) => Plist::Integer((*i).into()),
            (Form::Text, Value::Text(s)) => Plist::String(s.clone()),
            (form, v) => return Err(format!("cannot write {v} as {form:?}")),
        }))
    }
}

impl Store for AppleMailStore {
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
        let mut failures = Failures::new();
        let mut changed: BTreeMap<Domain, PlistDoc> = BTreeMap::new();
        for action in &plan.actions {
            let location = &action.location;
            if action.lock {
                failures.entry(location.clone()).or_default().lock = Some(
                    "only a configuration profile installed by MDM can force this preference; \
                     deploy postwarden-agent export --format mobileconfig"
                        .to_owned(),
                );
            }
            let data = match Self::encode(location, &action.value) {
                Ok(d) => d,
                Err(why) => {
                    failures.entry(location.clone()).or_default().value = Some(why);
                    continue;
                }
            };
            // The engine never plans a forced setting; should a caller ask, it is not written
            // either: the user's value would be hidden by the forced one.
            if let Some(forced) = self.forced(location) {
                let o = Self::overridden_by(location, &forced);
                failures.entry(location.clone()).or_default().value =
                    Some(format!("{}: {}; {}", o.location, o.evidence, o.fix));
                continue;
            }
            let doc = changed.entry(location.domain).or_insert_with(|| {
                self.docs
                    .get(&location.domain)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(PlistDoc::empty)
            });
            doc.set(&location.key, location.entry.as_deref(), data);
        }
        changed
            .retain(|domain, doc| self.docs.get(domain).cloned().flatten().as_ref() != Some(doc));
        if changed.is_empty() {
            return Ok(failures);
        }
        let scope_root = self.home.clone();
        let mut journal = Journal::open_for_write(&self.journal_dir, &scope_root)?;
        let paths: Vec<PathBuf> = changed
            .keys()
            .map(|d| self.home.join(d.home_path()))
            .collect();
        journal.record_files(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        self.stale = true;
        for (domain, doc) in changed {
            self.channel.write(&self.home, domain, &doc)?;
            self.written.push(domain);
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests;
