//! How Thunderbird resolves the value it actually uses for a pref, from the files we can read.
//!
//! Layers, strongest first (libpref plus the policy engine, measured on Thunderbird 140/153):
//! 1. a legacy plain-value `Preferences` entry or a named policy (they unlock, set and lock);
//! 2. a `pref(name, value, locked)` in a default-pref file (`/etc/thunderbird/pref/*.js`, ...);
//! 3. a `{"Status": "locked"}` `Preferences` entry (it cannot override 2, and nothing is logged);
//! 4. user values: a `Status: user` entry, then user.js, then prefs.js (`Status: clear` hides them);
//! 5. defaults: a `Status: default` entry, an unlocked default-pref file, Thunderbird's built-ins.
//!
//! A per-server pref (`mail.server.<key>.<name>`, `mail.smtpserver.<key>.<name>`) that no layer
//! sets falls back to the `.default.` pref of the same name, as `MsgIncomingServer` does.

use std::path::PathBuf;

use super::policies::{PoliciesDoc, PolicyStatus};
use super::prefs::{PrefKind, PrefValue, PrefsFile};

/// A default-pref file Thunderbird reads at start.
#[derive(Debug, Clone)]
pub struct DefaultPrefFile {
    pub path: PathBuf,
    pub prefs: PrefsFile,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: Option<PrefValue>,
    pub locked: bool,
    pub source: Source,
}

/// Everything that decides a pref's value for one profile.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    pub default_files: &'a [DefaultPrefFile],
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

impl Layers<'_> {
    fn default_file_pref(&self, name: &str, locked: bool) -> Option<(PrefValue, Source)> {
        // Later files override earlier ones, like later statements in one file.
        // Through each file's name index: a lookup does not scan the file.
        self.default_files.iter().rev().find_map(|f| {
            f.prefs
                .entries_named(name)
                .rev()
                .find(|e| {
                    e.locked == locked && matches!(e.kind, PrefKind::Default | PrefKind::Sticky)
                })
                .map(|e| {
                    let source = if locked {
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
                    (e.value.clone(), source)
                })
        })
    }

    /// The value Thunderbird uses for `name`, and whether it is locked.
    pub fn resolve(&self, name: &str) -> Resolved {
        let policy = self.policy.and_then(|p| p.pref(name));
        let found = |value: PrefValue, locked, source| Resolved {
            value: Some(value),
            locked,
            source,
        };
        if let Some(p) = &policy {
            if p.status == PolicyStatus::Legacy {
                if let Some(v) = &p.value {
                    return found(v.clone(), true, Source::PolicyLegacy);
                }
            }
        }
        if name == "signon.rememberSignons" {
            if let Some(named) = self.policy.and_then(PoliciesDoc::named_signon_lock) {
                return found(PrefValue::Bool(false), true, Source::PolicyNamed(named));
            }
        }
        if let Some((v, source)) = self.default_file_pref(name, true) {
            return found(v, true, source);
        }
        if let Some(p) = &policy {
            if p.status == PolicyStatus::Locked {
                // A locked entry whose value has the wrong type leaves the pref locked with no
                // value; reads then fall back (measured), which `value: None` models.
                return Resolved {
                    value: p.value.clone(),
                    locked: true,
                    source: Source::PolicyLocked,
                };
            }
        }
        let cleared = policy.as_ref().map(|p| p.status) == Some(PolicyStatus::Clear);
        if let Some(p) = &policy {
            if p.status == PolicyStatus::User {
                if let Some(v) = &p.value {
                    return found(v.clone(), false, Source::PolicyUser);
                }
            }
        }
        if !cleared {
            if let Some(v) = self.user_js.and_then(|u| u.get_user(name)) {
                return found(v.clone(), false, Source::UserJs);
            }
            if let Some(v) = self.prefs_js.get_user(name) {
                return found(v.clone(), false, Source::PrefsJs);
            }
        }
        if let Some(p) = &policy {
            if p.status == PolicyStatus::Default {
                if let Some(v) = &p.value {
                    return found(v.clone(), false, Source::PolicyDefault);
                }
            }
        }
        if let Some((v, source)) = self.default_file_pref(name, false) {
            return found(v, false, source);
        }
        if let Some(fallback) = fallback_name(name) {
            let r = self.resolve(&fallback);
            // The per-server pref itself is not locked even if the default one is.
            return Resolved { locked: false, ..r };
        }
        match builtin(name) {
            Some(v) => found(v, false, Source::BuiltIn),
            None => Resolved {
                value: None,
                locked: false,
                source: Source::Unset,
            },
        }
    }
}

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
    fn the_last_statement_of_the_last_default_file_wins() {
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
        // A lock in an earlier file still beats later unlocked statements.
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
            (Some(PrefValue::Int(5)), true),
        );
        assert_eq!(
            src,
            Source::DefaultFileLock {
                path: "/a.js".into(),
                line: 2
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
