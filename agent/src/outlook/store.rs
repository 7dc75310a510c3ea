//! The Outlook store: reads effective values from one user's registry hive and writes repairs,
//! through the narrow [`Registry`] trait (the real registry on Windows, an in-memory one in
//! tests).
//!
//! - Policy values are effective as Microsoft 365 Cloud Policy, then group policy, resolve them:
//!   a Cloud Policy value wins and cannot be overridden here, so a repair against it fails with
//!   the reason instead of fighting the Office service.
//! - User-writable values (accounts, Outlook's own settings) count as locked while the policy
//!   that takes away Outlook's UI for them is 1.
//! - Every value is journaled before its first change, so `restore` puts it back.
//! - While Outlook runs, what we write is reported pending restart: Outlook reads policies and
//!   account settings at start, and may write its in-memory account values back when it exits.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use postwarden_engine::{Failure, Failures, Observation, Observed, Plan, Store, Value};
use postwarden_registry::{KeyPath, RegError, RegValue, Registry};

use super::accounts::{self, Account};
use super::mapping::{
    Form, OlLocation, View, DISALLOW_ATTACHMENT_CUSTOMIZATION, MODIFY_ACCOUNTS, OUTLOOK_POLICIES,
    OUTLOOK_PREFERENCES,
};
use crate::journal::Journal;

/// Whether Outlook was found set up for a user: its settings key exists.
pub fn is_set_up(reg: &dyn Registry, hive: &KeyPath) -> Result<bool, RegError> {
    reg.exists(&hive.join(OUTLOOK_PREFERENCES))
}

/// One user's Outlook, in one registry hive.
pub struct OutlookStore<'r> {
    reg: &'r mut dyn Registry,
    /// `HKEY_CURRENT_USER`, or `HKEY_USERS\<SID>` for a service.
    hive: KeyPath,
    hive_label: String,
    journal_dir: PathBuf,
    outlook_running: bool,
    written: BTreeSet<OlLocation>,
    /// During one observation pass: each key's values, read once (by lower-cased name).
    pass: RefCell<Option<BTreeMap<KeyPath, BTreeMap<String, RegValue>>>>,
    pub accounts: Vec<Account>,
}

impl std::fmt::Debug for OutlookStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutlookStore")
            .field("hive", &self.hive)
            .field("journal_dir", &self.journal_dir)
            .field("outlook_running", &self.outlook_running)
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl<'r> OutlookStore<'r> {
    /// Reads the user's accounts. `journal_dir` holds the backups `restore` uses.
    pub fn load(
        reg: &'r mut dyn Registry,
        hive: KeyPath,
        journal_dir: PathBuf,
        outlook_running: bool,
    ) -> Result<OutlookStore<'r>> {
        let hive_label = hive.to_string();
        let accounts = accounts::read(&*reg, &hive, &hive_label)?;
        Ok(OutlookStore {
            reg,
            hive,
            hive_label,
            journal_dir,
            outlook_running,
            written: BTreeSet::new(),
            pass: RefCell::new(None),
            accounts,
        })
    }

    pub fn hive_label(&self) -> &str {
        &self.hive_label
    }

    pub fn view(&self) -> View<'_> {
        View {
            hive: &self.hive_label,
            accounts: &self.accounts,
        }
    }

    fn key(&self, relative: &str) -> KeyPath {
        self.hive.join(relative)
    }

    /// A value; within an observation pass, from one read of its key's values.
    fn get(&self, key: &KeyPath, name: &str) -> Result<Option<RegValue>, RegError> {
        let mut pass = self.pass.borrow_mut();
        let Some(cache) = pass.as_mut() else {
            return self.reg.get(key, name);
        };
        if !cache.contains_key(key) {
            let values = self
                .reg
                .values(key)?
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect();
            cache.insert(key.clone(), values);
        }
        Ok(cache[key].get(&name.to_ascii_lowercase()).cloned())
    }

    /// The effective value of a policy: Cloud Policy first, then group policy.
    fn policy_value(&self, location: &OlLocation) -> Result<(Option<RegValue>, bool), RegError> {
        if let Some(cloud) = location.cloud_twin() {
            if let Some(v) = self.get(&self.key(&cloud), &location.name)? {
                return Ok((Some(v), true));
            }
        }
        Ok((self.get(&self.key(&location.key), &location.name)?, false))
    }

    fn guard_of(form: Form) -> Option<(&'static str, &'static str)> {
        match form {
            Form::PolicyDword | Form::PolicyText => None,
            Form::PreferenceText => Some(DISALLOW_ATTACHMENT_CUSTOMIZATION),
            Form::AccountDword | Form::AccountText | Form::LeaveOnServer | Form::Secret => {
                Some(MODIFY_ACCOUNTS)
            }
        }
    }

    fn guard_location((sub, name): (&str, &str)) -> OlLocation {
        OlLocation {
            key: if sub.is_empty() {
                OUTLOOK_POLICIES.to_owned()
            } else {
                format!("{OUTLOOK_POLICIES}\\{sub}")
            },
            name: name.to_owned(),
            form: Form::PolicyDword,
        }
    }

    fn observe_one(&self, location: &OlLocation) -> Result<Observation, RegError> {
        let (raw, locked) = if location.form.is_policy() {
            let (v, _) = self.policy_value(location)?;
            let present = v.is_some();
            (v, present)
        } else {
            let locked = match Self::guard_of(location.form).map(Self::guard_location) {
                Some(g) => self.policy_value(&g)?.0 == Some(RegValue::Dword(1)),
                None => false,
            };
            (self.get(&self.key(&location.key), &location.name)?, locked)
        };
        let value = match (location.form, raw) {
            (_, None) => Value::Absent,
            (Form::PolicyDword | Form::AccountDword, Some(RegValue::Dword(v))) => {
                Value::Int(i64::from(v))
            }
            (Form::PolicyText | Form::PreferenceText, Some(RegValue::Sz(s))) => Value::Text(s),
            (Form::AccountText, Some(v)) => match v.as_text() {
                Some(s) => Value::Text(s),
                None => Value::Text(v.to_string()),
            },
            (Form::LeaveOnServer, Some(RegValue::Dword(v))) => Value::Bool(v & 1 != 0),
            (Form::Secret, Some(v)) => {
                Value::Redacted(format!("saved password, {} bytes", v.to_bytes().len()))
            }
            // A value of the wrong type: Outlook ignores it; show what is there.
            (_, Some(v)) => Value::Text(v.to_string()),
        };
        Ok(Observation {
            value,
            locked,
            stale: self.outlook_running && self.written.contains(location),
        })
    }

    /// The registry data that makes `value` effective at `location`.
    fn encode(&self, location: &OlLocation, value: &Value) -> Result<Option<RegValue>, String> {
        let key = self.key(&location.key);
        let current = self
            .reg
            .get(&key, &location.name)
            .map_err(|e| e.to_string())?;
        Ok(Some(match (location.form, value) {
            (_, Value::Absent) => return Ok(None),
            (Form::PolicyDword | Form::AccountDword, Value::Int(i)) => {
                RegValue::Dword(u32::try_from(*i).map_err(|_| format!("{i} is not a DWORD"))?)
            }
            (Form::PolicyText | Form::PreferenceText, Value::Text(s)) => RegValue::Sz(s.clone()),
            // Keep the type Outlook used for this value; new values as Outlook writes them.
            (Form::AccountText, Value::Text(s)) => match current {
                Some(RegValue::Sz(_)) => RegValue::Sz(s.clone()),
                _ => RegValue::binary_text(s),
            },
            // Only the LEAVE_ON_SERVER bit changes; the day count and other flags stay.
            (Form::LeaveOnServer, Value::Bool(leave)) => {
                let old = match current {
                    Some(RegValue::Dword(v)) => v,
                    _ => 0,
                };
                RegValue::Dword(if *leave { old | 1 } else { old & !1 })
            }
            (form, v) => return Err(format!("cannot write {v} as {form:?}")),
        }))
    }

    /// Writes (or deletes) one value, journaled first. A registry refusal is a per-location
    /// failure; a journal failure stops the run.
    fn write(
        &mut self,
        journal: &mut Journal,
        location: &OlLocation,
        data: Option<&RegValue>,
    ) -> Result<Option<String>> {
        let key = self.key(&location.key);
        if location.form.is_policy() {
            let (effective, from_cloud) = self.policy_value(location)?;
            if from_cloud && effective.as_ref() != data {
                return Ok(Some(format!(
                    "held by Microsoft 365 Cloud Policy ({}\\{} \"{}\" = {}), which overrides \
                     group policy and is rewritten by the Office service; change it in the \
                     Microsoft 365 Apps admin center",
                    self.hive_label(),
                    location.cloud_twin().unwrap_or_default(),
                    location.name,
                    effective.map_or("(not set)".to_owned(), |v| v.to_string())
                )));
            }
        }
        journal.record_registry_value(&*self.reg, &key, &location.name)?;
        let result = match data {
            Some(v) => self.reg.set(&key, &location.name, v),
            None => self.reg.delete_value(&key, &location.name),
        };
        match result {
            Ok(()) => {
                self.written.insert(location.clone());
                Ok(None)
            }
            Err(e) if e.is_access_denied() => Ok(Some(format!(
                "{e}: {} can only be written by an administrator or SYSTEM; run \
                 postwarden-agent elevated or as the service",
                if location.form.is_policy() {
                    "a policy key"
                } else {
                    "this key"
                }
            ))),
            Err(e) => Ok(Some(e.to_string())),
        }
    }
}

impl Store for OutlookStore<'_> {
    type Location = OlLocation;
    type Error = anyhow::Error;

    fn observe(&mut self, locations: &[OlLocation]) -> Result<Observed<OlLocation>> {
        *self.pass.borrow_mut() = Some(BTreeMap::new());
        let observed = locations
            .iter()
            .map(|l| {
                let obs = self
                    .observe_one(l)
                    .map_err(|e| anyhow!("reading {l}: {e}"))?;
                Ok((l.clone(), obs))
            })
            .collect();
        *self.pass.borrow_mut() = None;
        observed
    }

    fn apply(&mut self, plan: &Plan<OlLocation>) -> Result<Failures<OlLocation>> {
        let mut journal = Journal::open(&self.journal_dir)?;
        let mut failures = Failures::new();
        // Locks first: a guard policy is shared by many values and written once.
        let mut guards_done: Vec<(OlLocation, Option<String>)> = Vec::new();
        for action in plan.actions.iter().filter(|a| a.lock) {
            let Some(guard) = Self::guard_of(action.location.form).map(Self::guard_location) else {
                continue;
            };
            let outcome = match guards_done.iter().find(|(g, _)| *g == guard) {
                Some((_, outcome)) => outcome.clone(),
                None => {
                    let (current, _) = self.policy_value(&guard)?;
                    let outcome = if current == Some(RegValue::Dword(1)) {
                        None
                    } else {
                        self.write(&mut journal, &guard, Some(&RegValue::Dword(1)))?
                    };
                    guards_done.push((guard.clone(), outcome.clone()));
                    outcome
                }
            };
            if let Some(why) = outcome {
                failures.insert(
                    action.location.clone(),
                    Failure::lock(format!("could not set {guard}: {why}")),
                );
            }
        }
        for action in &plan.actions {
            let data = match self.encode(&action.location, &action.value) {
                Ok(d) => d,
                Err(why) => {
                    failures.entry(action.location.clone()).or_default().value = Some(why);
                    continue;
                }
            };
            if let Some(why) = self.write(&mut journal, &action.location, data.as_ref())? {
                failures.entry(action.location.clone()).or_default().value = Some(why);
            }
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests;
