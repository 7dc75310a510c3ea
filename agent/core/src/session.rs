//! The one way through the agent: the command line and the service both use it.
//!
//! ```text
//! Session::new(target, clients)      options checked            (InputError → nothing read)
//!   .prepare(profile, vars)          templates checked, then every client's files loaded and
//!                                    parsed, and mapped         (InputError → nothing written)
//!   .run(RunKind)                    per client: observe, plan, apply, observe again
//!   → Outcome { report, problems }
//! ```
//!
//! # Semantics
//! - A bad profile, variable or option is an [`InputError`] before anything is written, for
//!   every client: templates are checked against the variables before any file is read.
//! - Every client's files are read and parsed before the first write to any client. A client
//!   whose files cannot be read or parsed (a [`StoreError`]) is not touched: each control of the
//!   profile gets a `failed` finding for it naming the file, line and reason, and the other
//!   clients are still checked and enforced. The report is complete either way.
//! - A client whose repair fails part-way (a journal or write error) is observed again: what
//!   landed is `repaired`, the rest `failed` with the error; the other clients go on.
//! - Each pass reads afresh: a session's stores are built by `prepare` and used for one run; a
//!   service prepares again for its next pass.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;

use postwarden_clients::mapping::check_templates;
use postwarden_clients::{applemail as apple_map, outlook as outlook_map, thunderbird as tb_map};
use postwarden_engine::{reconcile, Desired, RunKind};
use postwarden_profiles::report::{Client, Finding, Report, Status, RAW_THUNDERBIRD};
use postwarden_profiles::{Mode, Profile, Vars};
use postwarden_registry::Registry;
use serde_json::Value as Json;

use crate::applemail::{self, AppleMailStore, Channel};
use crate::error::{InputError, StoreError};
use crate::journal::{Journal, Restored};
use crate::outlook::{self, JournalPlace, OutlookStore};
use crate::target::{default_clients, Target};
use crate::thunderbird::ThunderbirdStore;

/// Opens the registry Outlook's settings are in: the real one on Windows, an in-memory one
/// in tests. Called once per pass.
pub type RegistryFactory = Arc<dyn Fn() -> Box<dyn Registry + Send> + Send + Sync>;

/// What every report with Apple Mail findings says about how far they are proven.
pub const APPLE_MAIL_CAVEAT: &str = "Apple Mail: the preference files are read and written as \
macOS keeps them (checked with independent plist parsers), but no macOS ran these tests: \
whether Mail honours each key, and writes through `defaults` on a live Mac, are unverified; \
keys from community or decompiled sources say so in the findings' notes";

/// What every report with Outlook findings says about how far they are proven.
pub const OUTLOOK_CAVEAT: &str = "Outlook: values are read and written through the Windows \
registry API (tested under Wine's registry); no Outlook ran to confirm it honours them, and \
value names marked unconfirmed in the findings' notes come from third-party sources";

const OUTLOOK_PROCESS_NOTE: &str =
    "Outlook: the process list could not be read; Outlook was assumed closed";

/// A run's target, clients and the platform access it needs.
pub struct Session {
    target: Target,
    clients: Vec<Client>,
    registry: Option<RegistryFactory>,
    outlook_running: Option<bool>,
    apple_channel: Channel,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("clients", &self.clients)
            .field("registry", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for these clients (none: every client this build supports, see
    /// [`default_clients`]). Refuses options that contradict each other.
    pub fn new(target: Target, clients: &[Client]) -> Result<Session, InputError> {
        let mut chosen: Vec<Client> = Vec::new();
        let requested = if clients.is_empty() {
            default_clients()
        } else {
            clients.to_vec()
        };
        for c in requested {
            if !chosen.contains(&c) {
                chosen.push(c);
            }
        }
        if target.registry_user.is_some() && !chosen.contains(&Client::Outlook) {
            return Err(InputError::Option {
                option: "--registry-user",
                message: "applies to Outlook's registry only; add --client outlook".to_owned(),
            });
        }
        Ok(Session {
            target,
            clients: chosen,
            registry: default_registry(),
            outlook_running: None,
            apple_channel: Channel::for_this_os(),
        })
    }

    /// Uses this registry for Outlook (tests use an in-memory one on any OS).
    pub fn with_registry(mut self, registry: RegistryFactory) -> Session {
        self.registry = Some(registry);
        self
    }

    /// Says whether Outlook runs instead of asking the OS (tests).
    pub fn with_outlook_running(mut self, running: bool) -> Session {
        self.outlook_running = Some(running);
        self
    }

    /// Reads and writes Apple Mail's domains through this channel.
    pub fn with_apple_channel(mut self, channel: Channel) -> Session {
        self.apple_channel = channel;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    fn registry(&self) -> Result<&RegistryFactory, InputError> {
        self.registry.as_ref().ok_or_else(|| InputError::Option {
            option: "--client outlook",
            message: "Outlook is managed through the Windows registry; run the Windows build of \
                      postwarden-agent (`export --format reg` works on any OS)"
                .to_owned(),
        })
    }

    /// Checks the profile's templates against `vars`, then loads, parses and maps every
    /// client. Nothing is written.
    pub fn prepare<'p>(
        &self,
        profile: &'p Profile,
        vars: &Vars,
    ) -> Result<Prepared<'p>, InputError> {
        check_templates(profile, vars)?;
        if self.clients.contains(&Client::Outlook) {
            self.registry()?;
        }
        let mut passes = Vec::new();
        let mut caveats = Vec::new();
        for &client in &self.clients {
            let loaded = match client {
                Client::Thunderbird => self.thunderbird(profile, vars, &mut caveats),
                Client::Outlook => self.outlook(profile, vars, &mut caveats),
                Client::AppleMail => self.apple_mail(profile, vars, &mut caveats),
            };
            match loaded {
                Ok(Some(pass)) => passes.push(pass),
                Ok(None) => {}
                Err(Loading::Input(e)) => return Err(e),
                Err(Loading::Store(error)) => {
                    tracing::info!(client = client.display_name(), %error,
                        "client configuration unreadable; its controls are reported failed");
                    passes.push(Pass::Failed { client, error });
                }
            }
        }
        Ok(Prepared {
            profile,
            passes,
            caveats,
        })
    }

    fn thunderbird(
        &self,
        profile: &Profile,
        vars: &Vars,
        caveats: &mut Vec<String>,
    ) -> Result<Option<Pass>, Loading> {
        // Thunderbird's own registry policies, where there is a registry (Windows; tests).
        let registry = self.registry.as_ref().map(|open| open());
        let store = ThunderbirdStore::load(&self.target, registry)?;
        if !store.is_set_up() {
            return Ok(None);
        }
        let mapped = tb_map::map(profile, vars, &store.views(), &store.policy_scope())
            .map_err(InputError::from)?;
        caveats.extend(tb_map::paths::platform_caveat().map(str::to_owned));
        Ok(Some(Pass::Thunderbird {
            store: Box::new(store),
            mapped,
        }))
    }

    fn outlook(
        &self,
        profile: &Profile,
        vars: &Vars,
        caveats: &mut Vec<String>,
    ) -> Result<Option<Pass>, Loading> {
        let registry = (self.registry()?)();
        let hive = self.target.hive();
        if !outlook::is_set_up(&*registry, &hive).map_err(StoreError::from)? {
            return Ok(None);
        }
        let running = match self.outlook_running.or_else(outlook::outlook_running) {
            Some(r) => r,
            None => {
                caveats.push(OUTLOOK_PROCESS_NOTE.to_owned());
                false
            }
        };
        let state = self.target.registry_state();
        let journal = JournalPlace {
            scope_root: self.target.scope_root(&state),
            dir: state,
        };
        let mut store = OutlookStore::load(registry, hive, journal, running)?
            .with_group_policy(&outlook::GroupPolicyPlace::of(&self.target))?;
        let mapped = outlook_map::map(profile, vars, &store.view()).map_err(InputError::from)?;
        store.expect(&mapped.desired);
        caveats.push(OUTLOOK_CAVEAT.to_owned());
        Ok(Some(Pass::Outlook { store, mapped }))
    }

    fn apple_mail(
        &self,
        profile: &Profile,
        vars: &Vars,
        caveats: &mut Vec<String>,
    ) -> Result<Option<Pass>, Loading> {
        let home = &self.target.home;
        if !applemail::is_set_up(home) {
            return Ok(None);
        }
        let store = AppleMailStore::load(
            home,
            &self.target.system_root,
            &self.target.user,
            self.apple_channel.clone(),
            self.target.home_state(),
            applemail::mail_running(home),
        )?;
        let mapped =
            apple_map::map(profile, vars, &home.display().to_string()).map_err(InputError::from)?;
        caveats.push(APPLE_MAIL_CAVEAT.to_owned());
        Ok(Some(Pass::AppleMail { store, mapped }))
    }

    /// Undoes everything `apply` changed on this target, in every scope (machine, user, and
    /// the registry hive), whatever the clients: originals back byte for byte, created files,
    /// folders, registry values and keys removed, and the journals with their folders. Safe to
    /// run again if it was interrupted.
    pub fn restore(&self) -> Result<Vec<Restored>, StoreError> {
        let mut done = Vec::new();
        for dir in self.target.state_dirs() {
            let scope_root = self.target.scope_root(&dir);
            let journal = Journal::open_for_write(&dir, &scope_root)?;
            let mut registry = match (&self.registry, journal.has_registry_entries()) {
                (Some(factory), true) => Some(factory()),
                _ => None,
            };
            let registry = registry.as_deref_mut().map(|r| r as &mut dyn Registry);
            done.extend(journal.restore(registry)?);
        }
        // Have the preferences system load what was put back (macOS; nothing for plain files).
        for d in &done {
            match d {
                Restored::PutBack(p) => self.apple_channel.reload(&self.target.home, p, true)?,
                Restored::Removed(p) => self.apple_channel.reload(&self.target.home, p, false)?,
                _ => {}
            }
        }
        Ok(done)
    }
}

#[cfg(windows)]
fn default_registry() -> Option<RegistryFactory> {
    Some(Arc::new(|| {
        Box::new(postwarden_registry::windows::WinRegistry::new()) as Box<dyn Registry + Send>
    }))
}

#[cfg(not(windows))]
fn default_registry() -> Option<RegistryFactory> {
    None
}

/// Why one client could not be prepared.
enum Loading {
    Input(InputError),
    Store(StoreError),
}

impl From<InputError> for Loading {
    fn from(e: InputError) -> Self {
        Loading::Input(e)
    }
}

impl From<StoreError> for Loading {
    fn from(e: StoreError) -> Self {
        Loading::Store(e)
    }
}

/// One client, loaded and mapped, ready to reconcile; or why it could not be loaded.
enum Pass {
    Thunderbird {
        // Boxed: the system files (policies, AutoConfig, platform policies) make it large.
        store: Box<ThunderbirdStore>,
        mapped: tb_map::Mapped,
    },
    Outlook {
        store: OutlookStore,
        mapped: outlook_map::Mapped,
    },
    AppleMail {
        store: AppleMailStore,
        mapped: apple_map::Mapped,
    },
    Failed {
        client: Client,
        error: StoreError,
    },
}

impl Pass {
    fn client(&self) -> Client {
        match self {
            Pass::Thunderbird { .. } => Client::Thunderbird,
            Pass::Outlook { .. } => Client::Outlook,
            Pass::AppleMail { .. } => Client::AppleMail,
            Pass::Failed { client, .. } => *client,
        }
    }
}

/// Every client of a session, loaded and mapped; nothing written yet.
pub struct Prepared<'p> {
    profile: &'p Profile,
    passes: Vec<Pass>,
    caveats: Vec<String>,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("profile", &self.profile.id)
            .field(
                "clients",
                &self.passes.iter().map(Pass::client).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A client that could not be checked, or whose repair stopped part-way, and why.
#[derive(Debug)]
pub struct Problem {
    pub client: Client,
    pub error: StoreError,
}

/// What a run found and did.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// The clients whose files could not be read or written: their controls are `failed`
    /// (all of them, or those whose repair did not land).
    pub problems: Vec<Problem>,
}

/// One setting, named as findings name it: client, scope, target and setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SettingKey {
    pub client: Client,
    pub scope: String,
    pub target: String,
    pub setting: String,
}

impl SettingKey {
    /// The key of a finding; `None` for findings about a whole control (no setting).
    pub fn of(finding: &Finding) -> Option<SettingKey> {
        Some(SettingKey {
            client: finding.client,
            scope: finding.scope.clone(),
            target: finding.target.clone(),
            setting: finding.setting.clone()?,
        })
    }
}

/// Settings a caller wants checked and reported but not repaired in this pass, each with the
/// note its finding carries (a service's contested settings: no endless fight with a GPO or
/// another tool).
#[derive(Debug, Clone, Default)]
pub struct Hold {
    notes: HashMap<SettingKey, String>,
}

impl Hold {
    pub fn insert(&mut self, key: SettingKey, note: String) {
        self.notes.insert(key, note);
    }

    pub fn remove(&mut self, key: &SettingKey) {
        self.notes.remove(key);
    }

    pub fn contains(&self, key: &SettingKey) -> bool {
        self.notes.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SettingKey> {
        self.notes.keys()
    }

    pub fn clear(&mut self) {
        self.notes.clear();
    }

    /// Switches the held settings of `desired` to audit mode, with the hold's note.
    fn apply_to<L: Display>(&self, desired: &mut [Desired<L>]) {
        if self.notes.is_empty() {
            return;
        }
        for d in desired.iter_mut().filter(|d| d.mode == Mode::Enforce) {
            let key = SettingKey {
                client: d.client,
                scope: d.scope.to_string(),
                target: d.target.to_string(),
                setting: d.location.to_string(),
            };
            if let Some(note) = self.notes.get(&key) {
                d.mode = Mode::Audit;
                d.note = Some(Arc::from(note.as_str()));
            }
        }
    }
}

impl Prepared<'_> {
    /// Leaves the settings in `hold` alone in this pass: they are observed and reported
    /// (`drifted` when wrong, with the hold's note), never written.
    pub fn hold(&mut self, hold: &Hold) {
        for pass in &mut self.passes {
            match pass {
                Pass::Thunderbird { mapped, .. } => hold.apply_to(&mut mapped.desired),
                Pass::Outlook { mapped, .. } => hold.apply_to(&mut mapped.desired),
                Pass::AppleMail { mapped, .. } => hold.apply_to(&mut mapped.desired),
                Pass::Failed { .. } => {}
            }
        }
    }

    /// The clients that were loaded (or failed to load); clients not set up are absent.
    pub fn clients(&self) -> Vec<Client> {
        self.passes.iter().map(Pass::client).collect()
    }

    /// Checks (`RunKind::Check`, never writes) or enforces (`RunKind::Apply`) every client,
    /// one after the other, and reports. `generated_at` is the report's time (RFC 3339), given
    /// by the caller: the core reads no clock.
    pub fn run(self, run: RunKind, generated_at: Option<String>) -> Outcome {
        let mut findings = Vec::new();
        let mut problems = Vec::new();
        for pass in self.passes {
            let client = pass.client();
            let result = match pass {
                Pass::Thunderbird { mut store, mapped } => {
                    reconcile(&mut *store, run, &mapped.desired, &mapped.not_applicable)
                }
                Pass::Outlook { mut store, mapped } => {
                    reconcile(&mut store, run, &mapped.desired, &mapped.not_applicable)
                }
                Pass::AppleMail { mut store, mapped } => {
                    reconcile(&mut store, run, &mapped.desired, &mapped.not_applicable)
                }
                Pass::Failed { error, .. } => Err(error),
            };
            match result {
                Ok(reconciled) => {
                    // Moved, not copied, when it is the first client: a large profile has tens
                    // of thousands of findings.
                    if findings.is_empty() {
                        findings = reconciled.findings;
                    } else {
                        findings.extend(reconciled.findings);
                    }
                    if let Some(error) = reconciled.interrupted {
                        tracing::info!(client = client.display_name(), %error,
                            "repair stopped part-way; what landed is reported repaired");
                        problems.push(Problem { client, error });
                    }
                }
                Err(error) => {
                    findings.extend(unavailable(self.profile, client, &error));
                    problems.push(Problem { client, error });
                }
            }
        }
        let mut report = Report::new(run, self.profile, findings, generated_at);
        report.caveats.extend(self.caveats);
        Outcome { report, problems }
    }
}

/// The findings of a client that could not be checked: every control `failed`, with the file
/// and the reason.
fn unavailable(profile: &Profile, client: Client, error: &StoreError) -> Vec<Finding> {
    let scope = error
        .file()
        .unwrap_or_else(|| format!("{} configuration", client.display_name()));
    let reason = format!(
        "{} could not be checked or changed: {error}",
        client.display_name()
    );
    let mut controls: Vec<String> = profile
        .controls
        .iter()
        .map(|c| c.id.as_str().to_owned())
        .collect();
    if client == Client::Thunderbird && profile.raw_thunderbird.is_some() {
        controls.push(RAW_THUNDERBIRD.to_owned());
    }
    controls
        .into_iter()
        .map(|control| Finding {
            control,
            client,
            scope: scope.clone(),
            target: "configuration".to_owned(),
            setting: None,
            status: Status::Failed,
            expected: Json::Null,
            actual: Json::Null,
            previous: None,
            locked: None,
            reason: Some(reason.clone()),
            note: None,
            overridden_by: None,
        })
        .collect()
}

/// A service moves a pass to a worker thread (`spawn_blocking`): everything it holds is `Send`
/// (checked when this compiles).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Session>();
    send::<Prepared<'static>>();
    send::<Outcome>();
    send::<ThunderbirdStore>();
    send::<OutlookStore>();
    send::<AppleMailStore>();
};
