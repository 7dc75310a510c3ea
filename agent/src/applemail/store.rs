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
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use plist::{Dictionary, Value as Plist};
use postwarden_engine::{Failures, Observation, Observed, Plan, Store, Value};

use super::mapping::{AmLocation, Domain, Form};
use super::plistfile::PlistDoc;
use crate::fsx::write_atomic;
use crate::journal::Journal;

/// How preference domains are read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// The plist files themselves (not on a live macOS session: cfprefsd would overwrite them).
    Files,
    /// `defaults export DOMAIN -` and `defaults import DOMAIN FILE`, run as the user.
    Defaults { program: PathBuf },
}

impl Channel {
    /// `defaults` on macOS, the files elsewhere.
    pub fn for_this_os() -> Channel {
        if cfg!(target_os = "macos") {
            Channel::Defaults {
                program: PathBuf::from("/usr/bin/defaults"),
            }
        } else {
            Channel::Files
        }
    }

    /// What `defaults` calls the domain: its name, or for the app-group suite the path of its
    /// plist without `.plist` (`defaults` does not resolve group containers by name).
    fn defaults_target(home: &Path, domain: Domain) -> String {
        match domain {
            Domain::MailGroup => {
                let path = home.join(domain.home_path());
                path.with_extension("").display().to_string()
            }
            other => other.name().to_owned(),
        }
    }

    fn run(program: &Path, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new(program)
            .args(args)
            .output()
            .with_context(|| format!("running {} {}", program.display(), args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                program.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    /// The domain's current content; `None` if it has none.
    fn read(&self, home: &Path, domain: Domain) -> Result<Option<(Vec<u8>, String)>> {
        match self {
            Channel::Files => {
                let path = home.join(domain.home_path());
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some((bytes, path.display().to_string()))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
            Channel::Defaults { program } => {
                let target = Self::defaults_target(home, domain);
                let bytes = Self::run(program, &["export", &target, "-"])?;
                Ok(Some((bytes, format!("`defaults export {target}`"))))
            }
        }
    }

    /// Replaces the domain's content.
    fn write(&self, home: &Path, domain: Domain, doc: &PlistDoc) -> Result<()> {
        let path = home.join(domain.home_path());
        match self {
            Channel::Files => write_atomic(&path, &doc.to_binary(), 0o600)
                .with_context(|| format!("writing {}", path.display())),
            Channel::Defaults { program } => {
                let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
                fs::write(tmp.path(), doc.to_binary()).context("writing a temporary file")?;
                let target = Self::defaults_target(home, domain);
                Self::run(
                    program,
                    &["import", &target, &tmp.path().display().to_string()],
                )?;
                Ok(())
            }
        }
    }

    /// After `restore` put `path` back (or removed it): make the preferences system load it.
    /// Nothing to do for plain files.
    pub fn reload(&self, home: &Path, path: &Path, exists: bool) -> Result<()> {
        let Channel::Defaults { program } = self else {
            return Ok(());
        };
        let Some(domain) = Domain::ALL
            .into_iter()
            .find(|d| home.join(d.home_path()) == path)
        else {
            return Ok(());
        };
        let target = Self::defaults_target(home, domain);
        if exists {
            Self::run(program, &["import", &target, &path.display().to_string()])?;
        } else {
            Self::run(program, &["delete", &target])?;
        }
        Ok(())
    }
}

/// Where installed configuration profiles put forced values for `user`: user scope first.
pub fn managed_dirs(system_root: &Path, user: &str) -> Vec<PathBuf> {
    let base = crate::thunderbird::discover::under(system_root, "Library/Managed Preferences");
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
}

fn parse(bytes: &[u8], name: &str) -> Result<PlistDoc> {
    PlistDoc::parse(bytes).map_err(|e| anyhow!("{name}: {e}"))
}

impl AppleMailStore {
    /// Reads every domain and every forced value first: a corrupt file stops the run before
    /// anything is written.
    pub fn load(
        home: &Path,
        system_root: &Path,
        user: &str,
        channel: Channel,
        journal_dir: PathBuf,
        mail_running: bool,
    ) -> Result<AppleMailStore> {
        let mut store = AppleMailStore {
            home: home.to_path_buf(),
            channel,
            journal_dir,
            managed: managed_dirs(system_root, user),
            mail_running,
            docs: BTreeMap::new(),
            forced: BTreeMap::new(),
            written: Vec::new(),
        };
        store.refresh()?;
        Ok(store)
    }

    fn refresh(&mut self) -> Result<()> {
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
                match fs::read(&path) {
                    Ok(bytes) => {
                        let doc = parse(&bytes, &path.display().to_string())?;
                        for (k, v) in doc.root {
                            forced.insert(k, v);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
            self.forced.insert(domain, forced);
        }
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

    fn forced_value(&self, location: &AmLocation) -> Option<&Plist> {
        let v = self.forced.get(&location.domain)?.get(&location.key)?;
        match &location.entry {
            None => Some(v),
            Some(e) => v.as_dictionary()?.get(e),
        }
    }

    fn user_value(&self, location: &AmLocation) -> Option<&Plist> {
        self.docs
            .get(&location.domain)?
            .as_ref()?
            .get(&location.key, location.entry.as_deref())
    }

    fn observe_one(&self, location: &AmLocation) -> Observation {
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
        }
    }

    fn encode(location: &AmLocation, value: &Value) -> Result<Option<Plist>, String> {
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
    type Location = AmLocation;
    type Error = anyhow::Error;

    fn observe(&mut self, locations: &[AmLocation]) -> Result<Observed<AmLocation>> {
        Ok(locations
            .iter()
            .map(|l| (l.clone(), self.observe_one(l)))
            .collect())
    }

    fn apply(&mut self, plan: &Plan<AmLocation>) -> Result<Failures<AmLocation>> {
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
        if changed.is_empty() {
            return Ok(failures);
        }
        let mut journal = Journal::open(&self.journal_dir)?;
        for (domain, doc) in changed {
            if self.docs.get(&domain).cloned().flatten().as_ref() == Some(&doc) {
                continue;
            }
            let path = self.home.join(domain.home_path());
            journal.record(&path)?;
            self.channel.write(&self.home, domain, &doc)?;
            self.written.push(domain);
        }
        self.refresh()?;
        Ok(failures)
    }
}

#[cfg(test)]
mod tests;
