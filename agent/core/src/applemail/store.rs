//! The Apple Mail store: reads Mail's preference domains and the forced values of installed
//! configuration profiles, and writes repairs domain by domain.
//!
//! How a domain is read and written depends on the OS ([`Channel`]):
//! - elsewhere (Linux tests, fixture homes): the plist files under `--home`, read whole, changed
//!   key by key (unknown keys kept), written binary and atomically after a backup;
//! - on macOS: through `defaults export` / `defaults import`, in the user's context, because
//!   cfprefsd caches preference files and overwrites edits made behind its back.
//!
//! Forced values come from `<system-root>/Library/Managed Preferences[/<user>]/<domain>.plist`,
//! which only the configuration-profile system writes; a value forced there is reported locked,
//! and the agent never writes those files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plist::{Dictionary, Value as Plist};
use postwarden_clients::applemail::mapping::{Domain, Form, Location};
use postwarden_clients::applemail::plistfile::PlistDoc;
use postwarden_clients::under;
use postwarden_engine::{Failures, Observation, Observed, Plan, Store, Value};

use super::channel::Channel;
use crate::error::StoreError;
use crate::fs::read_bytes;
use crate::journal::Journal;

/// Where installed configuration profiles put forced values for `user`: user scope first.
pub fn managed_dirs(system_root: &Path, user: &str) -> Vec<PathBuf> {
    let base = under(system_root, "Library/Managed Preferences");
    vec![base.join(user), base]
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
    forced: BTreeMap<Domain, Dictionary>,
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
            // Device scope first, so user scope wins.
            let mut forced = Dictionary::new();
            for dir in self.managed.iter().rev() {
                let path = dir.join(format!("{}.plist", domain.name()));
                if let Some(bytes) = read_bytes(&path)? {
                    let doc = parse(&bytes, &path.display().to_string())?;
                    for (k, v) in doc.root {
                        forced.insert(k, v);
                    }
                }
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

    fn forced_value(&self, location: &Location) -> Option<&Plist> {
        let v = self.forced.get(&location.domain)?.get(&location.key)?;
        match &location.entry {
            None => Some(v),
            Some(e) => v.as_dictionary()?.get(e),
        }
    }

    fn user_value(&self, location: &Location) -> Option<&Plist> {
        self.docs
            .get(&location.domain)?
            .as_ref()?
            .get(&location.key, location.entry.as_deref())
    }

    fn observe_one(&self, location: &Location) -> Observation {
        let forced = self.forced_value(location);
        let raw = forced.or_else(|| self.user_value(location));
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
            overridden_by: None,
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
            if let Some(forced) = self.forced_value(location) {
                if data.as_ref() != Some(forced) {
                    failures.entry(location.clone()).or_default().value = Some(format!(
                        "forced to {forced:?} by an installed configuration profile \
                         (Managed Preferences); change it in the profile"
                    ));
                    continue;
                }
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
