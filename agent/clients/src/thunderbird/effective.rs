//! How Thunderbird resolves the value it actually uses for a pref, from every layer it reads.
//!
//! Resolution replays Thunderbird's start-up for one pref name, in libpref's and the policy
//! engine's order (Mozilla's `Preferences.cpp`, `nsReadConfig.cpp`, `prefcalls.js`,
//! `EnterprisePoliciesParent.sys.mjs`; measured on Thunderbird 153, see
//! `docs/thunderbird-layers-measured.md`):
//! 1. built-in defaults;
//! 2. default-pref files in load order: `pref()`/`sticky_pref()` set the default value,
//!    `locked` locks it; once locked, later files cannot change the default (libpref's
//!    `SetDefaultValue`), and a default of another type is refused;
//! 3. user values: prefs.js, then user.js;
//! 4. AutoConfig (`general.config.filename`), which runs after the user values were read:
//!    `pref()` sets the user value, `defaultPref()` the default, `lockPref()` unlocks, sets the
//!    default and locks, `unlockPref()`, `clearPref()` clears the user value;
//! 5. enterprise policies (`policies.json`, or the platform's policies combined with it):
//!    a named policy (`PasswordManagerEnabled`/`OfferToSaveLogins`) and a legacy plain-value
//!    `Preferences` entry unlock, set and lock; `Status: locked` sets the default only when
//!    not locked yet, then locks; `default`, `user` and `clear` as their names say;
//! 6. what runs after all of that and cannot be evaluated here: a remote AutoConfig
//!    (`autoadmin.global_config_url`) and AutoConfig code we cannot model (it may act at any
//!    time). A pref these can reach has no known value.
//!
//! The value in use is the default while locked, else the user value, else the default. A
//! per-server pref (`mail.server.<key>.<name>`, `mail.smtpserver.<key>.<name>`) without a value
//! falls back to the `.default.` pref of the same name, as `MsgIncomingServer` does.

use std::path::PathBuf;

use super::autoconfig::{AutoConfig, CfgOp, CfgTarget, CfgValue};
use super::policies::{PoliciesDoc, PolicyStatus};
use super::prefs::{PrefKind, PrefValue, PrefsFile};

/// A default-pref file Thunderbird reads at start.
#[derive(Debug, Clone)]
pub struct DefaultPrefFile {
    pub path: PathBuf,
    pub prefs: PrefsFile,
}

/// The AutoConfig file named by `general.config.filename`, as the agent read it.
#[derive(Debug, Clone)]
pub struct AutoConfigLayer {
    pub path: PathBuf,
    pub outcome: AutoConfigOutcome,
}

#[derive(Debug, Clone)]
pub enum AutoConfigOutcome {
    Evaluated(AutoConfig),
    /// Thunderbird cannot read or run it: it shows an error and quits at every start.
    Broken {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    PolicyLegacy,
    PolicyNamed(&'static str),
    DefaultFileLock {
        path: PathBuf,
        line: usize,
    },
    PolicyLocked,
    PolicyUser,
    UserJs,
    PrefsJs,
    PolicyDefault,
    DefaultFile {
        path: PathBuf,
        line: usize,
    },
    /// A statement of the AutoConfig file with a known value.
    AutoConfig {
        path: PathBuf,
        line: usize,
        statement: String,
    },
    /// A statement of the AutoConfig file whose value the agent cannot know (an environment
    /// variable, a condition). A later policy lock still outranks it.
    AutoConfigUnknown {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// AutoConfig code the agent cannot model: it may change any pref at any time, also after
    /// the policies were applied.
    AutoConfigAny {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// The AutoConfig file cannot be read or run: Thunderbird quits at start.
    AutoConfigBroken {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A remote AutoConfig, fetched and run at every start after everything else.
    RemoteAutoConfig {
        url: String,
        /// The file and line that set `autoadmin.global_config_url`, where one did.
        set_at: Option<(PathBuf, usize)>,
    },
    BuiltIn,
    /// Nothing sets it.
    Unset,
}

impl Source {
    /// Comes from the system-wide policy file.
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            Source::PolicyLegacy
                | Source::PolicyNamed(_)
                | Source::PolicyLocked
                | Source::PolicyUser
                | Source::PolicyDefault
        )
    }

    /// Comes from the AutoConfig file.
    pub fn is_autoconfig(&self) -> bool {
        matches!(
            self,
            Source::AutoConfig { .. }
                | Source::AutoConfigUnknown { .. }
                | Source::AutoConfigAny { .. }
                | Source::AutoConfigBroken { .. }
        )
    }

    /// A layer that acts after the policies, which no channel of the agent outranks.
    pub fn is_beyond_reach(&self) -> bool {
        matches!(
            self,
            Source::AutoConfigAny { .. }
                | Source::AutoConfigBroken { .. }
                | Source::RemoteAutoConfig { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `None`: no value (or, with an unknown source, a value the agent cannot know).
    pub value: Option<PrefValue>,
    pub locked: bool,
    pub source: Source,
}

impl Resolved {
    /// The value in use cannot be known here.
    pub fn is_unknown(&self) -> bool {
        matches!(self.source, Source::AutoConfigUnknown { .. }) || self.source.is_beyond_reach()
    }
}

/// Everything that decides a pref's value for one profile.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// In the order Thunderbird loads them.
    pub default_files: &'a [DefaultPrefFile],
    pub autoconfig: Option<&'a AutoConfigLayer>,
    pub policy: Option<&'a PoliciesDoc>,
    pub user_js: Option<&'a PrefsFile>,
    pub prefs_js: &'a PrefsFile,
}

/// Thunderbird's built-in defaults for the prefs Postwarden reads (`defaults/pref/mailnews.js`
/// and toolkit's `all.js` of 153). `check_new_mail` has no pref default: `doBiff` falls back to
/// the protocol default, true for POP3 and IMAP.
fn builtin(name: &str) -> Option<PrefValue> {
    use PrefValue::*;
    Some(match name {
        "mail.server.default.check_time" => Int(10),
        "mail.server.default.leave_on_server" => Bool(false),
        "mail.server.default.authMethod" => Int(3),
        "mail.server.default.socketType" => Int(0),
        "mail.server.default.check_new_mail" => Bool(true),
        "mail.smtpserver.default.try_ssl" => Int(0),
        "mail.smtpserver.default.authMethod" => Int(3),
        "signon.rememberSignons" => Bool(true),
        "mail.quota.mainwindow_threshold.warning" => Int(80),
        _ => return None,
    })
}

/// `mail.server.server1.check_time` → `mail.server.default.check_time`.
fn fallback_name(name: &str) -> Option<String> {
    for prefix in ["mail.server.", "mail.smtpserver."] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let (key, attr) = rest.split_once('.')?;
            if key != "default" {
                return Some(format!("{prefix}default.{attr}"));
            }
        }
    }
    None
}

/// A value and who set it; `None` as value: set to something the agent cannot know.
#[derive(Debug, Clone)]
struct Slot {
    value: Option<PrefValue>,
    source: Source,
}

/// One pref during the replay of Thunderbird's start.
#[derive(Debug, Clone, Default)]
struct PrefState {
    default: Option<Slot>,
    user: Option<Slot>,
    locked: bool,
    lock_source: Option<Source>,
}

fn same_type(a: &PrefValue, b: &PrefValue) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

impl PrefState {
    /// libpref's `SetDefaultValue`: ignored while locked, refused for another type.
    fn set_default(&mut self, value: Option<PrefValue>, source: Source) {
        if self.locked {
            return;
        }
        if let (
            Some(new),
            Some(Slot {
                value: Some(old), ..
            }),
        ) = (&value, &self.default)
        {
            if !same_type(new, old) {
                return;
            }
        }
        self.default = Some(Slot { value, source });
    }

    fn lock(&mut self, source: Source) {
        self.locked = true;
        self.lock_source = Some(source);
    }

    /// Unlock, set the default, lock: `lockPref()` and the policies' `setAndLockPref`.
    fn force(&mut self, value: Option<PrefValue>, source: Source) {
        self.locked = false;
        self.set_default(value, source.clone());
        self.lock(source);
    }

    /// The slot whose value is in use.
    fn in_use(&self) -> Option<&Slot> {
        if self.locked {
            self.default.as_ref()
        } else {
            self.user.as_ref().or(self.default.as_ref())
        }
    }
}

/// How far to replay the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The default branch after the default-pref files (what `nsReadConfig` reads).
    Defaults,
    /// Everything before the enterprise policies.
    BeforePolicies,
    /// Everything.
    All,
}

impl Layers<'_> {
    fn replay(&self, name: &str, stage: Stage) -> (PrefState, Option<Source>) {
        let mut st = PrefState::default();
        if let Some(v) = builtin(name) {
            st.default = Some(Slot {
                value: Some(v),
                source: Source::BuiltIn,
            });
        }
        for f in self.default_files {
            for e in f.prefs.entries_named(name) {
                if !matches!(e.kind, PrefKind::Default | PrefKind::Sticky) {
                    continue;
                }
                let source = if e.locked {
                    Source::DefaultFileLock {
                        path: f.path.clone(),
                        line: e.line,
                    }
                } else {
                    Source::DefaultFile {
                        path: f.path.clone(),
                        line: e.line,
                    }
                };
                let was_locked = st.locked;
                st.set_default(Some(e.value.clone()), source.clone());
                if e.locked && !was_locked {
                    st.lock(source);
                }
            }
        }
        if stage == Stage::Defaults {
            return (st, None);
        }
        if let Some(v) = self.prefs_js.get_user(name) {
            st.user = Some(Slot {
                value: Some(v.clone()),
                source: Source::PrefsJs,
            });
        }
        if let Some(v) = self.user_js.and_then(|u| u.get_user(name)) {
            st.user = Some(Slot {
                value: Some(v.clone()),
                source: Source::UserJs,
            });
        }
        // What acts after the policies and cannot be evaluated: the first such layer is named.
        let mut beyond: Option<Source> = None;
        if let Some(ac) = self.autoconfig {
            match &ac.outcome {
                AutoConfigOutcome::Broken {
                    line,
                    column,
                    message,
                } => {
                    beyond = Some(Source::AutoConfigBroken {
                        path: ac.path.clone(),
                        line: *line,
                        column: *column,
                        message: message.clone(),
                    });
                }
                AutoConfigOutcome::Evaluated(cfg) => {
                    for effect in &cfg.effects {
                        let target = match &effect.target {
                            CfgTarget::Pref(n) => n,
                            CfgTarget::Any(why) => {
                                beyond.get_or_insert_with(|| Source::AutoConfigAny {
                                    path: ac.path.clone(),
                                    line: effect.line,
                                    why: why.clone(),
                                });
                                continue;
                            }
                        };
                        if target != name {
                            continue;
                        }
                        let source_of = |v: &CfgValue| match v {
                            CfgValue::Known(_) => Source::AutoConfig {
                                path: ac.path.clone(),
                                line: effect.line,
                                statement: effect.text.clone(),
                            },
                            CfgValue::Unknown(why) => Source::AutoConfigUnknown {
                                path: ac.path.clone(),
                                line: effect.line,
                                why: why.clone(),
                            },
                        };
                        let known = |v: &CfgValue| match v {
                            CfgValue::Known(p) => Some(p.clone()),
                            CfgValue::Unknown(_) => None,
                        };
                        match &effect.op {
                            CfgOp::User(v) => {
                                st.user = Some(Slot {
                                    value: known(v),
                                    source: source_of(v),
                                })
                            }
                            CfgOp::Default(v) => st.set_default(known(v), source_of(v)),
                            CfgOp::Lock(v) => st.force(known(v), source_of(v)),
                            CfgOp::Unlock => {
                                st.locked = false;
                                st.lock_source = None;
                            }
                            CfgOp::Clear => st.user = None,
                        }
                    }
                    if beyond.is_none() && name != REMOTE_URL {
                        let (url_state, _) = self.replay(REMOTE_URL, Stage::BeforePolicies);
                        match url_state.in_use() {
                            Some(Slot {
                                value: Some(PrefValue::Str(url)),
                                source,
                            }) if !url.is_empty() => {
                                let set_at = match source {
                                    Source::AutoConfig { path, line, .. }
                                    | Source::DefaultFile { path, line }
                                    | Source::DefaultFileLock { path, line } => {
                                        Some((path.clone(), *line))
                                    }
                                    _ => None,
                                };
                                beyond = Some(Source::RemoteAutoConfig {
                                    url: url.clone(),
                                    set_at,
                                })
                            }
                            Some(Slot { value: None, .. }) => {
                                beyond = Some(Source::RemoteAutoConfig {
                                    url: "a URL the agent cannot know".to_owned(),
                                    set_at: None,
                                })
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if stage == Stage::BeforePolicies {
            return (st, beyond);
        }
        if let Some(policy) = self.policy {
            if name == "signon.rememberSignons" {
                if let Some(named) = policy.named_signon_lock() {
                    st.force(Some(PrefValue::Bool(false)), Source::PolicyNamed(named));
                }
            }
            if let Some(p) = policy.pref(name) {
                match p.status {
                    PolicyStatus::Legacy => {
                        if p.value.is_some() {
                            st.force(p.value, Source::PolicyLegacy);
                        }
                    }
                    PolicyStatus::Locked => {
                        if let Some(v) = p.value {
                            st.set_default(Some(v), Source::PolicyLocked);
                        }
                        if !st.locked {
                            st.lock(Source::PolicyLocked);
                        }
                    }
                    PolicyStatus::Default => {
                        if let Some(v) = p.value {
                            st.set_default(Some(v), Source::PolicyDefault);
                        }
                    }
                    PolicyStatus::User => {
                        if let Some(v) = p.value {
                            st.user = Some(Slot {
                                value: Some(v),
                                source: Source::PolicyUser,
                            });
                        }
                    }
                    PolicyStatus::Clear => st.user = None,
                }
            }
        }
        (st, beyond)
    }

    /// The value of `name` on the default branch after the default-pref files: what
    /// `nsReadConfig` reads for `general.config.filename` and `general.config.obscure_value`.
    pub fn default_value(&self, name: &str) -> Option<PrefValue> {
        let (st, _) = self.replay(name, Stage::Defaults);
        st.default.and_then(|s| s.value)
    }

    /// The value Thunderbird uses for `name` before the enterprise policies apply, and whether
    /// it is locked then: a lock here is only outranked by a legacy or named policy.
    pub fn resolve_before_policies(&self, name: &str) -> Resolved {
        self.finish(name, Stage::BeforePolicies)
    }

    /// The value Thunderbird uses for `name`, and whether it is locked.
    pub fn resolve(&self, name: &str) -> Resolved {
        self.finish(name, Stage::All)
    }

    fn finish(&self, name: &str, stage: Stage) -> Resolved {
        let (st, beyond) = self.replay(name, stage);
        if let Some(source) = beyond {
            return Resolved {
                value: None,
                locked: false,
                source,
            };
        }
        if let Some(slot) = st.in_use() {
            // A slot without a value holds a value the agent cannot know.
            return Resolved {
                value: slot.value.clone(),
                locked: st.locked,
                source: slot.source.clone(),
            };
        }
        if let Some(fallback) = fallback_name(name) {
            let r = self.finish(&fallback, stage);
            // The per-server pref itself is not locked even if the default one is.
            return Resolved {
                locked: st.locked,
                ..r
            };
        }
        if st.locked {
            // Locked without a value (a policy value of the wrong type): reads fail.
            return Resolved {
                value: None,
                locked: true,
                source: st.lock_source.unwrap_or(Source::Unset),
            };
        }
        Resolved {
            value: None,
            locked: false,
            source: Source::Unset,
        }
    }
}

/// The pref that names a remote AutoConfig.
pub const REMOTE_URL: &str = "autoadmin.global_config_url";

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(text: &str) -> PrefsFile {
        PrefsFile::parse(text).unwrap()
    }

    fn policy(text: &str) -> PoliciesDoc {
        PoliciesDoc::parse("p.json", text).unwrap()
    }

    /// Resolves `name` and renders `value locked source` compactly for table tests.
    fn check(
        default_files: &[DefaultPrefFile],
        policy: Option<&PoliciesDoc>,
        user_js: Option<&PrefsFile>,
        prefs_js: &PrefsFile,
        name: &str,
        want: (Option<PrefValue>, bool),
    ) -> Source {
        let r = Layers {
            default_files,
            autoconfig: None,
            policy,
            user_js,
            prefs_js,
        }
        .resolve(name);
        assert_eq!((r.value, r.locked), want, "{name}");
        r.source
    }

    const S1: &str = "mail.server.server1.check_time";

    #[test]
    fn user_values_then_fallback_then_builtin() {
        let p = prefs("user_pref(\"mail.server.server1.check_time\", 5);\n");
        check(&[], None, None, &p, S1, (Some(PrefValue::Int(5)), false));
        let empty = prefs("");
        let src = check(
            &[],
            None,
            None,
            &empty,
            S1,
            (Some(PrefValue::Int(10)), false),
        );
        assert_eq!(src, Source::BuiltIn);
        let d = prefs("user_pref(\"mail.server.default.check_time\", 20);\n");
        check(&[], None, None, &d, S1, (Some(PrefValue::Int(20)), false));
        let u = prefs("user_pref(\"mail.server.server1.check_time\", 7);\n");
        check(
            &[],
            None,
            Some(&u),
            &p,
            S1,
            (Some(PrefValue::Int(7)), false),
        );
    }

    #[test]
    fn locked_policy_beats_user_values() {
        let p = prefs("user_pref(\"mail.server.server1.check_time\", 5);\n");
        let pol = policy(
            r#"{"policies":{"Preferences":{"mail.server.server1.check_time":{"Value":30,"Status":"locked"}}}}"#,
        );
        let src = check(
            &[],
            Some(&pol),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(30)), true),
        );
        assert_eq!(src, Source::PolicyLocked);
    }

    #[test]
    fn default_status_loses_to_user_value() {
        let p = prefs("user_pref(\"mail.server.server1.check_time\", 5);\n");
        let pol = policy(
            r#"{"policies":{"Preferences":{"mail.server.server1.check_time":{"Value":30}}}}"#,
        );
        check(
            &[],
            Some(&pol),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(5)), false),
        );
    }

    #[test]
    fn locking_the_default_server_pref_does_not_lock_a_server() {
        let p = prefs("user_pref(\"mail.server.server1.check_time\", 5);\n");
        let pol = policy(
            r#"{"policies":{"Preferences":{"mail.server.default.check_time":{"Value":30,"Status":"locked"}}}}"#,
        );
        check(
            &[],
            Some(&pol),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(5)), false),
        );
        let empty = prefs("");
        check(
            &[],
            Some(&pol),
            None,
            &empty,
            S1,
            (Some(PrefValue::Int(30)), false),
        );
    }

    #[test]
    fn a_locked_default_file_beats_a_locked_policy_but_not_a_legacy_one() {
        let files = [DefaultPrefFile {
            path: "/etc/thunderbird/pref/site.js".into(),
            prefs: prefs("pref(\"mail.server.server1.check_time\", 45, locked);\n"),
        }];
        let p = prefs("");
        let locked = policy(
            r#"{"policies":{"Preferences":{"mail.server.server1.check_time":{"Value":30,"Status":"locked"}}}}"#,
        );
        let src = check(
            &files,
            Some(&locked),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(45)), true),
        );
        assert_eq!(
            src,
            Source::DefaultFileLock {
                path: "/etc/thunderbird/pref/site.js".into(),
                line: 1
            }
        );
        let legacy =
            policy(r#"{"policies":{"Preferences":{"mail.server.server1.check_time":30}}}"#);
        check(
            &files,
            Some(&legacy),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(30)), true),
        );
    }

    #[test]
    fn unlocked_the_last_statement_wins_locked_the_first() {
        let file = |path: &str, text: &str| DefaultPrefFile {
            path: path.into(),
            prefs: prefs(text),
        };
        let unlocked = [
            file("/a.js", "pref(\"mail.server.server1.check_time\", 1);\n"),
            file(
                "/b.js",
                "pref(\"mail.server.server1.check_time\", 2);\npref(\"x\", 0);\n\
                 sticky_pref(\"mail.server.server1.check_time\", 3);\npref(\"y\", 0);\n",
            ),
        ];
        let empty = prefs("");
        let src = check(
            &unlocked,
            None,
            None,
            &empty,
            S1,
            (Some(PrefValue::Int(3)), false),
        );
        assert_eq!(
            src,
            Source::DefaultFile {
                path: "/b.js".into(),
                line: 3
            }
        );
        // A lock in an earlier file still beats later statements, locked or not: once
        // locked, a default cannot change (measured: the first lock wins).
        let locked = [
            file(
                "/a.js",
                "pref(\"mail.server.server1.check_time\", 4, locked);\n\
                 pref(\"mail.server.server1.check_time\", 5, locked);\n",
            ),
            unlocked[1].clone(),
        ];
        let src = check(
            &locked,
            None,
            None,
            &empty,
            S1,
            (Some(PrefValue::Int(4)), true),
        );
        assert_eq!(
            src,
            Source::DefaultFileLock {
                path: "/a.js".into(),
                line: 1
            }
        );
    }

    #[test]
    fn named_policies_lock_remember_signons() {
        let p = prefs("user_pref(\"signon.rememberSignons\", true);\n");
        let pol = policy(r#"{"policies":{"PasswordManagerEnabled":false}}"#);
        let src = check(
            &[],
            Some(&pol),
            None,
            &p,
            "signon.rememberSignons",
            (Some(PrefValue::Bool(false)), true),
        );
        assert_eq!(src, Source::PolicyNamed("PasswordManagerEnabled"));
    }

    #[test]
    fn clear_status_hides_user_values() {
        let p = prefs("user_pref(\"mail.server.server1.check_time\", 5);\n");
        let pol = policy(
            r#"{"policies":{"Preferences":{"mail.server.server1.check_time":{"Status":"clear"}}}}"#,
        );
        check(
            &[],
            Some(&pol),
            None,
            &p,
            S1,
            (Some(PrefValue::Int(10)), false),
        );
    }

    #[test]
    fn unknown_prefs_are_unset() {
        let p = prefs("");
        let src = check(
            &[],
            None,
            None,
            &p,
            "mailnews.downloadToTempFile",
            (None, false),
        );
        assert_eq!(src, Source::Unset);
    }
}
