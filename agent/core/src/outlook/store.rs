//! The Outlook store: reads effective values from one user's registry hive and writes repairs,
//! through the narrow [`Registry`] trait (the real registry on Windows, an in-memory one in
//! tests).
//!
//! - Policy values are resolved across every registry layer, highest first: Microsoft 365 Cloud
//!   Policy, machine policy (HKLM, or a GPO's Computer Configuration), a GPO's User
//!   Configuration, then the user's own policy key, the only one the agent writes
//!   ([`postwarden_clients::outlook::layers`]). A value another layer decides carries that layer
//!   as the observation's `overridden_by` (evidence and the administrator's fix): the engine
//!   never plans a write for it, and reports it `failed` when it is not what the profile wants.
//!   Group Policy objects are read from their `Registry.pol` files ([`super::group_policy`]).
//! - User-writable values (accounts, Outlook's own settings) count as locked while the policy
//!   that takes away Outlook's UI for them is 1.
//! - Every value is journaled before its first change, so `restore` puts it back.
//! - While Outlook runs, what we write is reported pending restart: Outlook reads policies and
//!   account settings at start, and may write its in-memory account values back when it exits.
//! - Each `observe` reads the registry afresh (each key once per observation), so what is
//!   reported after `apply` is what the registry holds.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use postwarden_clients::outlook::accounts::{self, Account};
use postwarden_clients::outlook::layers::{override_of, Decider, Readings, Want};
use postwarden_clients::outlook::mapping::{
    Form, Location, View, DISALLOW_ATTACHMENT_CUSTOMIZATION, MODIFY_ACCOUNTS, OUTLOOK_POLICIES,
    OUTLOOK_PREFERENCES,
};
use postwarden_engine::{Desired, Expect, Failures, Observation, Observed, Plan, Store, Value};
use postwarden_registry::{KeyPath, RegError, RegValue, Registry, Root};

use super::group_policy::{GroupPolicy, GroupPolicyPlace};
use crate::error::StoreError;
use crate::journal::Journal;

/// Whether Outlook was found set up for a user: its settings key exists.
pub fn is_set_up(reg: &dyn Registry, hive: &KeyPath) -> Result<bool, RegError> {
    reg.exists(&hive.join(OUTLOOK_PREFERENCES))
}

/// One user's Outlook, in one registry hive. It owns its registry handle, so it can move to a
/// worker thread.
pub struct OutlookStore {
    reg: Box<dyn Registry + Send>,
    /// `HKEY_CURRENT_USER`, or `HKEY_USERS\<SID>` for a service.
    hive: KeyPath,
    hive_label: String,
    journal_dir: PathBuf,
    /// Leftovers of killed runs are looked for up to here.
    scope_root: PathBuf,
    outlook_running: bool,
    written: BTreeSet<Location>,
    /// During one observation pass: each key's values, read once (by lower-cased name).
    pass: RefCell<Option<BTreeMap<KeyPath, BTreeMap<String, RegValue>>>>,
    /// The Group Policy objects that may set policy values.
    group_policy: GroupPolicy,
    /// What the profile wants of each policy value, for the fixes findings name.
    wants: HashMap<Location, Expect>,
    pub accounts: Vec<Account>,
}

impl std::fmt::Debug for OutlookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutlookStore")
            .field("hive", &self.hive)
            .field("journal_dir", &self.journal_dir)
            .field("outlook_running", &self.outlook_running)
            .field("group_policy", &self.group_policy.files())
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

/// Where an Outlook store keeps its journal: the state folder, and the home or system root it
/// lives under.
#[derive(Debug, Clone)]
pub struct JournalPlace {
    pub dir: PathBuf,
    pub scope_root: PathBuf,
}

impl OutlookStore {
    /// Reads the user's accounts. The journal in `journal` holds the originals `restore` puts
    /// back.
    pub fn load(
        reg: Box<dyn Registry + Send>,
        hive: KeyPath,
        journal: JournalPlace,
        outlook_running: bool,
    ) -> Result<OutlookStore, StoreError> {
        let hive_label = hive.to_string();
        let accounts = accounts::read(&*reg, &hive, &hive_label)?;
        Ok(OutlookStore {
            reg,
            hive,
            hive_label,
            journal_dir: journal.dir,
            scope_root: journal.scope_root,
            outlook_running,
            written: BTreeSet::new(),
            pass: RefCell::new(None),
            group_policy: GroupPolicy::none(),
            wants: HashMap::new(),
            accounts,
        })
    }

    /// Reads the Group Policy objects that may set this user's policy values (their
    /// `Registry.pol` files under `place`, and the Group Policy histories). Without this, only
    /// the registry's layers are seen.
    pub fn with_group_policy(mut self, place: &GroupPolicyPlace) -> Result<Self, StoreError> {
        self.group_policy = GroupPolicy::load(place, &*self.reg, &self.hive)?;
        Ok(self)
    }

    /// Tells the store what the profile wants of each setting, so that a finding's fix can say
    /// which value an administrator should set in the layer that overrides it.
    pub fn expect(&mut self, desired: &[Desired<Location>]) {
        for d in desired {
            if d.location.form.is_policy() && d.expect != Expect::Locked {
                self.wants
                    .entry(d.location.clone())
                    .or_insert_with(|| d.expect.clone());
            }
        }
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

    /// Every layer's reading of a policy value.
    fn readings(&self, location: &Location) -> Result<Readings, RegError> {
        let name = &location.name;
        let cloud = match location.cloud_twin() {
            Some(cloud) => self.get(&self.key(&cloud), name)?,
            None => None,
        };
        Ok(Readings {
            cloud,
            machine_gpo: self.group_policy.machine_value(&location.key, name),
            machine: self.get(&KeyPath::new(Root::LocalMachine, &location.key), name)?,
            user_gpo: self.group_policy.user_value(&location.key, name),
            user: self.get(&self.key(&location.key), name)?,
        })
    }

    /// The effective value of a policy, the layer that decides it, and every layer's reading.
    fn policy_value(
        &self,
        location: &Location,
    ) -> Result<(Option<RegValue>, Decider, Readings), RegError> {
        let readings = self.readings(location)?;
        let (value, decider) = readings.decide();
        Ok((value, decider, readings))
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

    fn guard_location((sub, name): (&str, &str)) -> Location {
        Location {
            key: if sub.is_empty() {
                OUTLOOK_POLICIES.to_owned()
            } else {
                format!("{OUTLOOK_POLICIES}\\{sub}")
            },
            name: name.to_owned(),
            form: Form::PolicyDword,
        }
    }

    fn observe_one(&self, location: &Location) -> Result<Observation, RegError> {
        if location.form.is_policy() {
            let (raw, decider, readings) = self.policy_value(location)?;
            let locked = raw.is_some();
            let value = Self::value_of(location.form, raw);
            let want = self.wants.get(location).and_then(|expect| {
                let met = expect.is_met(&Observation::new(value.clone()));
                Want::describe(expect, met)
            });
            let overridden_by = override_of(
                &decider,
                location,
                &self.hive_label,
                &readings,
                want.as_ref(),
            );
            return Ok(Observation {
                value,
                locked,
                stale: self.outlook_running && self.written.contains(location),
                overridden_by,
            });
        }
        let locked = match Self::guard_of(location.form).map(Self::guard_location) {
            Some(g) => self.policy_value(&g)?.0 == Some(RegValue::Dword(1)),
            None => false,
        };
        let raw = self.get(&self.key(&location.key), &location.name)?;
        Ok(Observation {
            value: Self::value_of(location.form, raw),
            locked,
            stale: self.outlook_running && self.written.contains(location),
            overridden_by: None,
        })
    }

    /// A registry value as the engine compares it.
    fn value_of(form: Form, raw: Option<RegValue>) -> Value {
        match (form, raw) {
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
        }
    }

    /// The registry data that makes `value` effective at `location`.
    fn encode(&self, location: &Location, value: &Value) -> Result<Option<RegValue>, String> {
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

    /// Writes (or deletes) one value the journal has recorded. A registry refusal is this
    /// location's failure, not the run's.
    fn write(&mut self, location: &Location, data: Option<&RegValue>) -> Option<String> {
        let key = self.key(&location.key);
        let result = match data {
            Some(v) => self.reg.set(&key, &location.name, v),
            None => self.reg.delete_value(&key, &location.name),
        };
        match result {
            Ok(()) => {
                self.written.insert(location.clone());
                None
            }
            Err(e) if e.is_access_denied() => Some(format!(
                "{e}: {} can only be written by an administrator or SYSTEM; run \
                 postwarden-agent elevated or as the service",
                if location.form.is_policy() {
                    "a policy key"
                } else {
                    "this key"
                }
            )),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Why a policy value cannot be written: a layer the agent does not own decides it, with
    /// another value. (The engine plans no write for a value such a layer decides; this holds
    /// the store's own writes, the UI locks, to the same rule.)
    fn held_by(
        &self,
        location: &Location,
        data: Option<&RegValue>,
    ) -> Result<Option<String>, RegError> {
        if !location.form.is_policy() {
            return Ok(None);
        }
        let (effective, decider, readings) = self.policy_value(location)?;
        if decider.is_agents() || effective.as_ref() == data {
            return Ok(None);
        }
        let want = Want {
            text: data.map(|v| match v {
                RegValue::Dword(d) => format!("{d} (REG_DWORD)"),
                RegValue::Sz(s) => format!("{s:?} (REG_SZ)"),
                other => other.to_string(),
            }),
            met: false,
        };
        Ok(
            override_of(&decider, location, &self.hive_label, &readings, Some(&want)).map(|o| {
                format!(
                    "held by {} at {}: {}; fix: {}",
                    o.layer, o.location, o.evidence, o.fix
                )
            }),
        )
    }
}

impl Store for OutlookStore {
    type Location = Location;
    type Error = StoreError;

    fn observe(&mut self, locations: &[Location]) -> Result<Observed<Location>, StoreError> {
        *self.pass.borrow_mut() = Some(BTreeMap::new());
        let observed = locations
            .iter()
            .map(|l| Ok((l.clone(), self.observe_one(l)?)))
            .collect();
        *self.pass.borrow_mut() = None;
        observed
    }

    fn apply(&mut self, plan: &Plan<Location>) -> Result<Failures<Location>, StoreError> {
        let mut failures = Failures::new();
        // 1. What to write. Locks first: a guard policy is shared by many values, written once.
        let mut writes: Vec<(Location, Option<RegValue>)> = Vec::new();
        let mut guard_of_action: Vec<(Location, Location)> = Vec::new();
        for action in plan.actions.iter().filter(|a| a.lock) {
            let Some(guard) = Self::guard_of(action.location.form).map(Self::guard_location) else {
                continue;
            };
            guard_of_action.push((action.location.clone(), guard.clone()));
            if writes.iter().any(|(l, _)| *l == guard) {
                continue;
            }
            if self.policy_value(&guard)?.0 != Some(RegValue::Dword(1)) {
                writes.push((guard, Some(RegValue::Dword(1))));
            }
        }
        for action in &plan.actions {
            match self.encode(&action.location, &action.value) {
                Ok(data) => writes.push((action.location.clone(), data)),
                Err(why) => {
                    failures.entry(action.location.clone()).or_default().value = Some(why);
                }
            }
        }
        // 2. What another layer decides is reported, not fought.
        let mut refused: BTreeMap<Location, String> = BTreeMap::new();
        for (location, data) in &writes {
            if let Some(why) = self.held_by(location, data.as_ref())? {
                refused.insert(location.clone(), why);
            }
        }
        writes.retain(|(l, _)| !refused.contains_key(l));
        // 3. One journal commit for every value, then the writes.
        let mut outcome: BTreeMap<Location, Option<String>> =
            refused.into_iter().map(|(l, why)| (l, Some(why))).collect();
        if !writes.is_empty() {
            let mut journal = Journal::open_for_write(&self.journal_dir, &self.scope_root)?;
            let values: Vec<(KeyPath, String)> = writes
                .iter()
                .map(|(l, _)| (self.key(&l.key), l.name.clone()))
                .collect();
            journal.record_registry_values(&*self.reg, &values)?;
            for (location, data) in &writes {
                let why = self.write(location, data.as_ref());
                outcome.insert(location.clone(), why);
            }
        }
        // 4. Failures: a guard's is a lock failure of every value it guards.
        for (action, guard) in guard_of_action {
            if let Some(Some(why)) = outcome.get(&guard) {
                failures.entry(action).or_default().lock =
                    Some(format!("could not set {guard}: {why}"));
            }
        }
        for action in &plan.actions {
            if let Some(Some(why)) = outcome.get(&action.location) {
                failures.entry(action.location.clone()).or_default().value = Some(why.clone());
            }
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests;
