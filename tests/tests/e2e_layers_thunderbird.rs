//! Proof that the agent's model of Thunderbird's configuration layers is Thunderbird's own.
//!
//! For the layer stacks of `docs/thunderbird-layers-measured.md` (default-pref files in the three
//! folders, AutoConfig with every call, obscured and in both places, policies.json in both
//! places, user.js, prefs.js) the agent's `check` runs on a home and a system root that hold the
//! stack; then the real Thunderbird 153 starts on the same profile with the same files (the
//! system root's `etc/thunderbird` shown to it as `/etc/thunderbird`, its `usr/lib/thunderbird`
//! laid over the installation), and every setting is compared: what the agent says (status,
//! value, lock, `overridden_by`) against what Thunderbird uses. Each stack has its own pref, so
//! one Thunderbird start checks many stacks.
//!
//! A row fails when
//! * the agent says `compliant` and Thunderbird's value is not the profile's (a
//!   `settings-locked` row: Thunderbird has not locked the pref);
//! * Thunderbird uses the profile's value and the agent does not say `compliant`;
//! * the agent's value or lock is not Thunderbird's (unless the agent says it cannot know:
//!   a `<redacted: ...>` value on a finding that is not compliant);
//! * the agent names an `overridden_by` layer without reporting `failed`, or without a
//!   location and a fix;
//! * Thunderbird does not start (a broken AutoConfig file) and the agent does not report the
//!   setting `failed` with an `overridden_by` whose location names that file;
//! * Thunderbird no longer does what the measurement document says (then the document, and the
//!   model built on it, must be revisited).
//!
//! The whole table is printed either way. Without Thunderbird the test fails with the install
//! hint; it never skips.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postwarden_e2e::fixture::{
    user_pref_line, PrefValue, DEBIAN_INSTALL_HASH, PREFS_JS_HEADER, PROFILE_DIR_NAME,
};
use postwarden_e2e::{thunderbird_lock, LaunchOptions, ProbeQuery, ThunderbirdRun};
use serde_json::{json, Value};
use tempfile::TempDir;

/// What the profile wants of every int pref, and what the other layers set instead.
const WANT: i64 = 30;
const OTHER: i64 = 10;
const RAW: &str = "raw.thunderbird";
const LOCK: &str = "settings-locked";
const NO_SAVED: &str = "no-saved-passwords";
const CFG: &str = "mozilla.cfg";
/// How long a start may take before it counts as "did not start" where the measurement says
/// Thunderbird blocks (a broken AutoConfig file: a modal alert, forever, when headless).
const BLOCKED_AFTER: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------
// Stacks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum V {
    I(i64),
    B(bool),
    S(&'static str),
}

impl V {
    fn json(self) -> Value {
        match self {
            V::I(i) => json!(i),
            V::B(b) => json!(b),
            V::S(s) => json!(s),
        }
    }

    /// As JavaScript (default-pref files, AutoConfig), TOML and JSON write it.
    fn literal(self) -> String {
        self.json().to_string()
    }

    fn pref(self) -> PrefValue {
        match self {
            V::I(i) => PrefValue::Int(i),
            V::B(b) => PrefValue::Bool(b),
            V::S(s) => PrefValue::Str(s.to_owned()),
        }
    }
}

/// The default-pref folders, as the agent's `--system-root` models them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dir {
    /// `/usr/lib/thunderbird/defaults/pref` (Debian: `/usr/share/thunderbird/defaults/pref`).
    Gre,
    /// `/etc/thunderbird/pref` (Debian's `defaults/syspref`).
    EtcPref,
    /// `/etc/thunderbird/defaults/pref`.
    EtcDefaults,
}

impl Dir {
    fn under_root(self) -> &'static str {
        match self {
            Dir::Gre => "usr/lib/thunderbird/defaults/pref",
            Dir::EtcPref => "etc/thunderbird/pref",
            Dir::EtcDefaults => "etc/thunderbird/defaults/pref",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Dir::Gre => "G",
            Dir::EtcPref => "S",
            Dir::EtcDefaults => "E",
        }
    }
}

/// Where a file of the installation lives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// `/usr/lib/thunderbird/...` (the GRE directory).
    Gre,
    /// `/etc/thunderbird/...`.
    Etc,
}

impl At {
    fn cfg(self) -> String {
        match self {
            At::Gre => format!("usr/lib/thunderbird/{CFG}"),
            At::Etc => format!("etc/thunderbird/{CFG}"),
        }
    }

    fn policies(self) -> &'static str {
        match self {
            At::Gre => "usr/lib/thunderbird/distribution/policies.json",
            At::Etc => "etc/thunderbird/policies/policies.json",
        }
    }

    fn short(self) -> &'static str {
        match self {
            At::Gre => "gre",
            At::Etc => "etc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pol {
    /// `{"name": value}`
    Legacy,
    Locked,
    Default,
    User,
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    /// `pref(name, v)` in `file` of a default-pref folder; `true`: `pref(name, v, locked)`.
    File(Dir, &'static str, V, bool),
    /// Verbatim text in `file` of a default-pref folder, `{pref}` replaced by the quoted name.
    FileText(Dir, &'static str, &'static str),
    PrefsJs(V),
    UserJs(V),
    /// An AutoConfig call in the `.cfg` at `At`: `pref`, `defaultPref`, `lockPref` (with a
    /// value), `clearPref`, `unlockPref` (without).
    Cfg(At, &'static str, Option<V>),
    /// A `Preferences` entry of the policies.json at `At` (`Gre`: `distribution/`).
    Policy(At, Pol, Option<V>),
}

impl Layer {
    fn describe(self) -> String {
        match self {
            Layer::File(dir, file, v, locked) => format!(
                "{}:{file}:{}{}",
                dir.short(),
                v.literal(),
                if locked { " locked" } else { "" }
            ),
            Layer::FileText(dir, file, text) => format!("{}:{file}:{text:?}", dir.short()),
            Layer::PrefsJs(v) => format!("prefs.js {}", v.literal()),
            Layer::UserJs(v) => format!("user.js {}", v.literal()),
            Layer::Cfg(at, call, v) => format!(
                "cfg({}) {call}{}",
                at.short(),
                v.map(|v| format!(" {}", v.literal())).unwrap_or_default()
            ),
            Layer::Policy(at, pol, v) => format!(
                "policy({}) {pol:?}{}",
                at.short(),
                v.map(|v| format!(" {}", v.literal())).unwrap_or_default()
            )
            .to_lowercase(),
        }
    }
}

/// One setting: a pref with its own layer stack.
#[derive(Debug, Clone)]
struct Row {
    pref: &'static str,
    /// The control that wants it: [`RAW`] or [`NO_SAVED`].
    control: &'static str,
    want: V,
    stack: Vec<Layer>,
    /// What Thunderbird did with this stack when it was measured (the document): the value
    /// (`None`: unset) and whether it was locked. Ignored where Thunderbird does not start.
    measured: (Option<V>, bool),
}

fn row(pref: &'static str, stack: Vec<Layer>, measured: (Option<V>, bool)) -> Row {
    Row {
        pref,
        control: RAW,
        want: V::I(WANT),
        stack,
        measured,
    }
}

/// Where `general.config.filename` is set.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Enable {
    File(Dir),
    UserJs,
}

/// One Thunderbird start.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    /// AutoConfig: where it is enabled and `general.config.obscure_value` (`None`: not set).
    autoconfig: Option<(Enable, Option<i64>)>,
    /// Added to every byte of each `.cfg` (what `obscure_value` undoes).
    cfg_shift: u8,
    /// Appended to the GRE `.cfg` (creating it).
    cfg_tail: &'static str,
    /// Whether Thunderbird starts (measured); `false`: it blocks at AutoConfig's alert.
    starts: bool,
    rows: Vec<Row>,
}

use Layer::{Cfg, File, FileText, Policy, PrefsJs, UserJs};
use V::{B, I, S};

const WANT_URL: &str = "https://start.postwarden.test/";

fn scenarios() -> Vec<Scenario> {
    let want = Some(I(WANT));
    let other = Some(I(OTHER));
    let g = |v, locked| File(Dir::Gre, "postwarden-test.js", I(v), locked);
    let s = |v, locked| File(Dir::EtcPref, "postwarden-test.js", I(v), locked);
    let e = |v, locked| File(Dir::EtcDefaults, "postwarden-test.js", I(v), locked);
    let cfg = |call, v: Option<i64>| Cfg(At::Gre, call, v.map(I));
    let pol = |p, v: Option<i64>| Policy(At::Etc, p, v.map(I));
    vec![
        Scenario {
            name: "every layer (AutoConfig enabled in the GRE, plain mozilla.cfg in the GRE)",
            autoconfig: Some((Enable::File(Dir::Gre), Some(0))),
            cfg_shift: 0,
            cfg_tail: "",
            starts: true,
            rows: vec![
                row(
                    "mail.pwtest.s_lock_after_a_syntax_error",
                    vec![
                        PrefsJs(I(WANT)),
                        FileText(Dir::EtcPref, "broken.js", "this is no pref;"),
                        FileText(Dir::EtcPref, "broken.js", "pref({pref}, 10, locked);"),
                    ],
                    (other, true),
                ),
                row(
                    "mail.pwtest.s_lockpref_is_no_default_statement",
                    vec![
                        PrefsJs(I(WANT)),
                        FileText(Dir::EtcPref, "broken.js", "lockPref({pref}, 10);"),
                    ],
                    (want, false),
                ),
                row(
                    "mail.pwtest.prefsjs10",
                    vec![PrefsJs(I(OTHER))],
                    (other, false),
                ),
                row(
                    "mail.pwtest.prefsjs30",
                    vec![PrefsJs(I(WANT))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.prefsjs30_userjs10",
                    vec![PrefsJs(I(WANT)), UserJs(I(OTHER))],
                    (other, false),
                ),
                row(
                    "mail.pwtest.g_locked10",
                    vec![g(OTHER, true)],
                    (other, true),
                ),
                row("mail.pwtest.s_locked30", vec![s(WANT, true)], (want, true)),
                row(
                    "mail.pwtest.g10_s30",
                    vec![g(OTHER, false), s(WANT, false)],
                    (want, false),
                ),
                row(
                    "mail.pwtest.s30_e10",
                    vec![s(WANT, false), e(OTHER, false)],
                    (other, false),
                ),
                row(
                    "mail.pwtest.s_a_locked10_b_locked30",
                    vec![
                        File(Dir::EtcPref, "a.js", I(OTHER), true),
                        File(Dir::EtcPref, "b.js", I(WANT), true),
                    ],
                    (want, true),
                ),
                row(
                    "mail.pwtest.s_a_locked30_b_locked10",
                    vec![
                        File(Dir::EtcPref, "a.js", I(WANT), true),
                        File(Dir::EtcPref, "b.js", I(OTHER), true),
                    ],
                    (other, true),
                ),
                row(
                    "mail.pwtest.s_a30_b10",
                    vec![
                        File(Dir::EtcPref, "a.js", I(WANT), false),
                        File(Dir::EtcPref, "b.js", I(OTHER), false),
                    ],
                    (want, false),
                ),
                row(
                    "mail.pwtest.s_a10_b30",
                    vec![
                        File(Dir::EtcPref, "a.js", I(OTHER), false),
                        File(Dir::EtcPref, "b.js", I(WANT), false),
                    ],
                    (other, false),
                ),
                row(
                    "mail.pwtest.g_locked30_s_locked10",
                    vec![g(WANT, true), s(OTHER, true)],
                    (want, true),
                ),
                row(
                    "mail.pwtest.g_locked30_e_locked10",
                    vec![g(WANT, true), e(OTHER, true)],
                    (want, true),
                ),
                row(
                    "mail.pwtest.e_locked30_prefsjs10",
                    vec![e(WANT, true), PrefsJs(I(OTHER))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.cfgpref10_prefsjs30",
                    vec![PrefsJs(I(WANT)), cfg("pref", Some(OTHER))],
                    (other, false),
                ),
                row(
                    "mail.pwtest.cfgpref30_userjs10",
                    vec![UserJs(I(OTHER)), cfg("pref", Some(WANT))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.cfgdefault30",
                    vec![cfg("defaultPref", Some(WANT))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.cfgdefault30_prefsjs10",
                    vec![PrefsJs(I(OTHER)), cfg("defaultPref", Some(WANT))],
                    (other, false),
                ),
                row(
                    "mail.pwtest.g_locked10_cfgdefault30",
                    vec![g(OTHER, true), cfg("defaultPref", Some(WANT))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.cfglock30",
                    vec![cfg("lockPref", Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.cfglock10_prefsjs30",
                    vec![PrefsJs(I(WANT)), cfg("lockPref", Some(OTHER))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.g_locked30_cfglock10",
                    vec![g(WANT, true), cfg("lockPref", Some(OTHER))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.e_locked10_cfglock30",
                    vec![e(OTHER, true), cfg("lockPref", Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.g30_prefsjs10_cfgclear",
                    vec![g(WANT, false), PrefsJs(I(OTHER)), cfg("clearPref", None)],
                    (want, false),
                ),
                row(
                    "mail.pwtest.prefsjs30_cfgclear",
                    vec![PrefsJs(I(WANT)), cfg("clearPref", None)],
                    (None, false),
                ),
                row(
                    "mail.pwtest.g_locked30_prefsjs10_cfgunlock",
                    vec![g(WANT, true), PrefsJs(I(OTHER)), cfg("unlockPref", None)],
                    (other, false),
                ),
                row(
                    "mail.pwtest.cfglock10_policylocked30",
                    vec![cfg("lockPref", Some(OTHER)), pol(Pol::Locked, Some(WANT))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.cfglock10_policylegacy30",
                    vec![cfg("lockPref", Some(OTHER)), pol(Pol::Legacy, Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.cfglock30_policylocked10",
                    vec![cfg("lockPref", Some(WANT)), pol(Pol::Locked, Some(OTHER))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.cfgpref10_policylocked30",
                    vec![cfg("pref", Some(OTHER)), pol(Pol::Locked, Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.cfgpref10_policyuser30",
                    vec![cfg("pref", Some(OTHER)), pol(Pol::User, Some(WANT))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.cfgpref30_policydefault10",
                    vec![cfg("pref", Some(WANT)), pol(Pol::Default, Some(OTHER))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.g30_cfgpref10_policyclear",
                    vec![
                        g(WANT, false),
                        cfg("pref", Some(OTHER)),
                        pol(Pol::Clear, None),
                    ],
                    (want, false),
                ),
                row(
                    "mail.pwtest.g_locked10_policylocked30",
                    vec![g(OTHER, true), pol(Pol::Locked, Some(WANT))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.g_locked10_policylegacy30",
                    vec![g(OTHER, true), pol(Pol::Legacy, Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.prefsjs10_policydefault30",
                    vec![PrefsJs(I(OTHER)), pol(Pol::Default, Some(WANT))],
                    (other, false),
                ),
                row(
                    "mail.pwtest.userjs10_policyuser30",
                    vec![UserJs(I(OTHER)), pol(Pol::User, Some(WANT))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.g30_prefsjs10_policyclear",
                    vec![g(WANT, false), PrefsJs(I(OTHER)), pol(Pol::Clear, None)],
                    (want, false),
                ),
                row(
                    "mail.pwtest.e_locked30_policylocked10",
                    vec![e(WANT, true), pol(Pol::Locked, Some(OTHER))],
                    (want, true),
                ),
                row(
                    "mail.server.default.check_time",
                    vec![cfg("lockPref", Some(OTHER)), pol(Pol::Locked, Some(WANT))],
                    (other, true),
                ),
                Row {
                    pref: "signon.rememberSignons",
                    control: NO_SAVED,
                    want: B(false),
                    stack: vec![
                        Cfg(At::Gre, "lockPref", Some(B(true))),
                        Policy(At::Etc, Pol::Legacy, Some(B(false))),
                    ],
                    measured: (Some(B(false)), true),
                },
                Row {
                    pref: "mailnews.start_page.url",
                    control: RAW,
                    want: S(WANT_URL),
                    stack: vec![
                        PrefsJs(S("https://prefsjs.postwarden.test/")),
                        Cfg(At::Gre, "pref", Some(S("https://cfg.postwarden.test/"))),
                        Policy(At::Etc, Pol::User, Some(S(WANT_URL))),
                    ],
                    measured: (Some(S(WANT_URL)), false),
                },
                Row {
                    pref: "mail.pwtest.bool_s_locked_false_userjs_true",
                    control: RAW,
                    want: B(true),
                    stack: vec![
                        File(Dir::EtcPref, "postwarden-test.js", B(false), true),
                        UserJs(B(true)),
                    ],
                    measured: (Some(B(false)), true),
                },
            ],
        },
        Scenario {
            name: "AutoConfig enabled in /etc/thunderbird/pref with obscure_value 13; the .cfg \
                   in /etc/thunderbird wins over the GRE's",
            autoconfig: Some((Enable::File(Dir::EtcPref), Some(13))),
            cfg_shift: 13,
            cfg_tail: "",
            starts: true,
            rows: vec![
                row(
                    "mail.pwtest.etccfg_lock10_prefsjs30",
                    vec![PrefsJs(I(WANT)), Cfg(At::Etc, "lockPref", Some(I(OTHER)))],
                    (other, true),
                ),
                row(
                    "mail.pwtest.etccfg_lock30",
                    vec![Cfg(At::Etc, "lockPref", Some(I(WANT)))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.grecfg_lock10_ignored_prefsjs30",
                    vec![PrefsJs(I(WANT)), Cfg(At::Gre, "lockPref", Some(I(OTHER)))],
                    (want, false),
                ),
            ],
        },
        Scenario {
            name: "AutoConfig named only in user.js (inert); policies.json in /etc and in \
                   distribution/ (only /etc's is read)",
            autoconfig: Some((Enable::UserJs, Some(0))),
            cfg_shift: 0,
            cfg_tail: "",
            starts: true,
            rows: vec![
                row(
                    "mail.pwtest.userjs_enabled_cfglock10_prefsjs30",
                    vec![PrefsJs(I(WANT)), cfg("lockPref", Some(OTHER))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.etcpolicy_locked30",
                    vec![Policy(At::Etc, Pol::Locked, Some(I(WANT)))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.distpolicy_locked10_ignored_prefsjs30",
                    vec![
                        PrefsJs(I(WANT)),
                        Policy(At::Gre, Pol::Locked, Some(I(OTHER))),
                    ],
                    (want, false),
                ),
                row(
                    "mail.pwtest.etcpolicy_locked30_distpolicy_legacy10",
                    vec![
                        Policy(At::Etc, Pol::Locked, Some(I(WANT))),
                        Policy(At::Gre, Pol::Legacy, Some(I(OTHER))),
                    ],
                    (want, true),
                ),
            ],
        },
        Scenario {
            name: "obscure_value 13 with a plain .cfg (silently ignored); policies.json only in \
                   distribution/ (read)",
            autoconfig: Some((Enable::File(Dir::Gre), Some(13))),
            cfg_shift: 0,
            cfg_tail: "",
            starts: true,
            rows: vec![
                row(
                    "mail.pwtest.garbledcfg_lock10_prefsjs30",
                    vec![PrefsJs(I(WANT)), cfg("lockPref", Some(OTHER))],
                    (want, false),
                ),
                row(
                    "mail.pwtest.distpolicy_locked30",
                    vec![Policy(At::Gre, Pol::Locked, Some(I(WANT)))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.distpolicy_locked10_prefsjs30",
                    vec![
                        PrefsJs(I(WANT)),
                        Policy(At::Gre, Pol::Locked, Some(I(OTHER))),
                    ],
                    (other, true),
                ),
            ],
        },
        Scenario {
            name: "general.config.filename names a mozilla.cfg that does not exist",
            autoconfig: Some((Enable::File(Dir::Gre), Some(0))),
            cfg_shift: 0,
            cfg_tail: "",
            starts: false,
            rows: vec![row(
                "mail.pwtest.missingcfg_prefsjs30",
                vec![PrefsJs(I(WANT))],
                (want, false),
            )],
        },
        Scenario {
            name: "mozilla.cfg with a syntax error after a lockPref",
            autoconfig: Some((Enable::File(Dir::Gre), None)),
            cfg_shift: 0,
            cfg_tail: "lockPref(\"mail.pwtest.after_the_error\", 10;\n",
            starts: false,
            rows: vec![
                row(
                    "mail.pwtest.brokencfg_lock30",
                    vec![cfg("lockPref", Some(WANT))],
                    (want, true),
                ),
                row(
                    "mail.pwtest.brokencfg_prefsjs30",
                    vec![PrefsJs(I(WANT))],
                    (want, false),
                ),
            ],
        },
    ]
}

// ---------------------------------------------------------------------------
// Writing a stack: a home with the profile and a system root
// ---------------------------------------------------------------------------

struct Sandbox {
    _dir: TempDir,
    home: PathBuf,
    root: PathBuf,
    profile: PathBuf,
    profile_toml: PathBuf,
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn profile_text(rows: &[Row]) -> String {
    let control = |id: &str| {
        format!(
            "[controls.{id}]\ntitle = \"{id}\"\nseverity = \"high\"\nrationale = \"layer \
             proof\"\nreference = \"docs/thunderbird-layers-measured.md\"\nremediation = \
             \"none\"\nvalue = true\n\n"
        )
    };
    let mut t = String::from(
        "format = 1\nid = \"layers-proof\"\nversion = 1\ntitle = \"Thunderbird layer \
         proof\"\nmode = \"enforce\"\n\n",
    );
    t.push_str(&control(LOCK));
    if rows.iter().any(|r| r.control == NO_SAVED) {
        t.push_str(&control(NO_SAVED));
    }
    t.push_str("[raw.thunderbird.prefs]\n");
    for r in rows.iter().filter(|r| r.control == RAW) {
        let _ = writeln!(t, "{} = {}", json!(r.pref), r.want.literal());
    }
    t
}

impl Sandbox {
    fn new(sc: &Scenario) -> Self {
        let dir = TempDir::with_prefix("postwarden-e2e-layers-").unwrap();
        let home = dir.path().join("home");
        let root = dir.path().join("root");
        let tb = home.join(".thunderbird");
        let profile = tb.join(PROFILE_DIR_NAME);
        fs::create_dir_all(&profile).unwrap();
        fs::create_dir_all(root.join("etc/thunderbird")).unwrap();
        write(
            &tb.join("profiles.ini"),
            format!(
                "[Profile0]\nName=default-default\nIsRelative=1\nPath={PROFILE_DIR_NAME}\n\
                 Default=1\n\n[General]\nStartWithLastProfile=1\nVersion=2\n\n\
                 [Install{DEBIAN_INSTALL_HASH}]\nDefault={PROFILE_DIR_NAME}\nLocked=1\n\n"
            )
            .as_bytes(),
        );
        write(
            &tb.join("installs.ini"),
            format!("[{DEBIAN_INSTALL_HASH}]\nDefault={PROFILE_DIR_NAME}\nLocked=1\n\n").as_bytes(),
        );

        let mut prefs_js = String::from(PREFS_JS_HEADER);
        let mut user_js = String::new();
        let mut files: std::collections::BTreeMap<PathBuf, String> = Default::default();
        let mut cfgs: std::collections::BTreeMap<String, String> = Default::default();
        let mut policies: std::collections::BTreeMap<&str, serde_json::Map<String, Value>> =
            Default::default();
        for r in &sc.rows {
            let name = json!(r.pref);
            for layer in &r.stack {
                match *layer {
                    File(dir, file, v, locked) => {
                        let _ = writeln!(
                            files
                                .entry(root.join(dir.under_root()).join(file))
                                .or_default(),
                            "pref({name}, {}{});",
                            v.literal(),
                            if locked { ", locked" } else { "" }
                        );
                    }
                    FileText(dir, file, text) => {
                        let _ = writeln!(
                            files
                                .entry(root.join(dir.under_root()).join(file))
                                .or_default(),
                            "{}",
                            text.replace("{pref}", &name.to_string())
                        );
                    }
                    PrefsJs(v) => prefs_js.push_str(&user_pref_line(r.pref, v.pref())),
                    UserJs(v) => user_js.push_str(&user_pref_line(r.pref, v.pref())),
                    Cfg(at, call, v) => {
                        let args = match v {
                            Some(v) => format!("{name}, {}", v.literal()),
                            None => name.to_string(),
                        };
                        let _ = writeln!(cfgs.entry(at.cfg()).or_default(), "{call}({args});");
                    }
                    Policy(at, pol, v) => {
                        let entry = match (pol, v) {
                            (Pol::Legacy, Some(v)) => v.json(),
                            (Pol::Clear, _) => json!({"Status": "clear"}),
                            (p, Some(v)) => {
                                json!({"Value": v.json(), "Status": format!("{p:?}").to_lowercase()})
                            }
                            (p, None) => panic!("policy {p:?} needs a value"),
                        };
                        policies
                            .entry(at.policies())
                            .or_default()
                            .insert(r.pref.to_owned(), entry);
                    }
                }
            }
        }
        if !sc.cfg_tail.is_empty() {
            cfgs.entry(At::Gre.cfg()).or_default().push_str(sc.cfg_tail);
        }
        if let Some((enable, obscure)) = sc.autoconfig {
            let mut lines = vec![format!("pref(\"general.config.filename\", \"{CFG}\");")];
            if let Some(o) = obscure {
                lines.push(format!("pref(\"general.config.obscure_value\", {o});"));
            }
            match enable {
                Enable::File(dir) => {
                    let text = files
                        .entry(root.join(dir.under_root()).join("autoconfig.js"))
                        .or_default();
                    for l in lines {
                        let _ = writeln!(text, "{l}");
                    }
                }
                Enable::UserJs => {
                    for l in lines {
                        let _ = writeln!(user_js, "user_{l}");
                    }
                }
            }
        }
        for (path, text) in files {
            write(&path, text.as_bytes());
        }
        for (rel, body) in cfgs {
            let text = format!("// Postwarden layer proof: this first line is skipped\n{body}");
            let bytes: Vec<u8> = text.bytes().map(|b| b.wrapping_add(sc.cfg_shift)).collect();
            write(&root.join(rel), &bytes);
        }
        for (rel, prefs) in policies {
            let doc = json!({"policies": {"Preferences": prefs}});
            write(
                &root.join(rel),
                serde_json::to_string_pretty(&doc).unwrap().as_bytes(),
            );
        }
        write(&profile.join("prefs.js"), prefs_js.as_bytes());
        if !user_js.is_empty() {
            write(&profile.join("user.js"), user_js.as_bytes());
        }
        let profile_toml = dir.path().join("layers-proof.toml");
        write(&profile_toml, profile_text(&sc.rows).as_bytes());
        Sandbox {
            _dir: dir,
            home,
            root,
            profile,
            profile_toml,
        }
    }

    /// `check --format json`: the report.
    fn check(&self, label: &str) -> Value {
        let bin = postwarden_test_support::bin::agent();
        let args: Vec<OsString> = vec![
            "check".into(),
            "--profile".into(),
            self.profile_toml.clone().into(),
            "--home".into(),
            self.home.clone().into(),
            "--system-root".into(),
            self.root.clone().into(),
            "--format".into(),
            "json".into(),
        ];
        let t0 = Instant::now();
        let out = Command::new(bin)
            .args(&args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap_or_else(|e| panic!("[{label}] running {}: {e}", bin.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "[{label}] agent check -> exit {:?} in {:.2} s",
            out.status.code(),
            t0.elapsed().as_secs_f64()
        );
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "[{label}] `check` must exit 0 or 1, it exited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status.code()
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("[{label}] `check` printed no JSON report ({e}):\n{stdout}\nstderr:\n{stderr}")
        })
    }
}

// ---------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------

/// The one finding of `control` for `setting`, if the agent reported exactly one.
fn finding<'a>(report: &'a Value, control: &str, setting: &str) -> Result<&'a Value, String> {
    let hits: Vec<&Value> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["control"] == control && f["setting"] == setting)
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "{} findings of {control} for {setting} (expected one)",
            hits.len()
        )),
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_owned(),
        Value::String(s) if s.len() > 40 => format!("{:?}…", &s[..40]),
        v => v.to_string(),
    }
}

fn agent_says(f: &Value) -> String {
    let mut s = format!(
        "{} {}",
        f["status"].as_str().unwrap_or("?"),
        short(&f["actual"])
    );
    if let Some(l) = f["locked"].as_bool() {
        s.push_str(if l { " locked" } else { " unlocked" });
    }
    if let Some(o) = f.get("overridden_by").filter(|o| !o.is_null()) {
        let _ = write!(
            s,
            " overridden_by {} @ {}",
            o["layer"].as_str().unwrap_or("?"),
            o["location"].as_str().unwrap_or("?")
        );
    }
    s
}

/// What Thunderbird did: `Ok((value, locked))`, or `Err(why it did not start)`.
type Seen = Result<(Value, bool), String>;

/// Problems of one finding (`lock_row`: the `settings-locked` finding of the pref).
fn judge(r: &Row, f: &Value, lock_row: bool, tb: &Seen) -> Vec<String> {
    let mut bad = Vec::new();
    let status = f["status"].as_str().unwrap_or("?");
    let compliant = status == "compliant";
    let overridden = f.get("overridden_by").filter(|o| !o.is_null());
    if let Some(o) = overridden {
        if status != "failed" {
            bad.push(format!(
                "names overridden_by but reports {status}, not failed"
            ));
        }
        for field in ["layer", "location", "fix"] {
            if o[field].as_str().is_none_or(str::is_empty) {
                bad.push(format!("overridden_by without {field}"));
            }
        }
    }
    match tb {
        Err(_) => {
            if compliant {
                bad.push("compliant, but Thunderbird does not even start".to_owned());
            }
            if !lock_row {
                let names_cfg = overridden
                    .and_then(|o| o["location"].as_str())
                    .is_some_and(|l| l.contains(CFG));
                if status != "failed" || !names_cfg {
                    bad.push(format!(
                        "Thunderbird does not start (AutoConfig): expected failed with \
                         overridden_by naming {CFG}, the agent says {}",
                        agent_says(f)
                    ));
                }
            }
        }
        Ok((value, locked)) if lock_row => {
            if compliant && !locked {
                bad.push("compliant, but Thunderbird has not locked it".to_owned());
            }
            let actual = f["actual"].as_str().unwrap_or("?");
            let tb_lock = if *locked { "locked" } else { "unlocked" };
            if actual != tb_lock {
                bad.push(format!("agent says {actual}, Thunderbird has it {tb_lock}"));
            }
            let _ = value;
        }
        Ok((value, locked)) => {
            let matches = *value == r.want.json();
            if compliant && !matches {
                bad.push(format!(
                    "compliant, but Thunderbird uses {} (the profile wants {})",
                    short(value),
                    r.want.literal()
                ));
            }
            if !compliant && matches {
                bad.push(format!(
                    "Thunderbird uses the profile's value, the agent says {status}"
                ));
            }
            let actual = &f["actual"];
            let unknown = actual.as_str().is_some_and(|a| a.starts_with("<redacted")) && !compliant;
            if actual != value && !unknown {
                bad.push(format!(
                    "agent models {}, Thunderbird uses {}",
                    short(actual),
                    short(value)
                ));
            }
            if let Some(l) = f["locked"].as_bool() {
                if l != *locked && !unknown {
                    bad.push(format!(
                        "agent says locked={l}, Thunderbird has locked={locked}"
                    ));
                }
            }
        }
    }
    bad
}

/// Thunderbird's answer against the measurement document.
fn drifted_from_measurement(sc: &Scenario, r: &Row, tb: &Seen) -> Option<String> {
    match tb {
        Err(e) if sc.starts => Some(format!("measured: Thunderbird starts; now: {e}")),
        Err(_) => None,
        Ok(_) if !sc.starts => {
            Some("measured: Thunderbird blocks at AutoConfig's alert; now it starts".to_owned())
        }
        Ok((value, locked)) => {
            let want = (
                r.measured.0.map(V::json).unwrap_or(Value::Null),
                r.measured.1,
            );
            (want != (value.clone(), *locked)).then(|| {
                format!(
                    "measured {} locked={}; now {} locked={locked}",
                    short(&want.0),
                    want.1,
                    short(value)
                )
            })
        }
    }
}

#[test]
fn agent_models_every_configuration_layer_as_thunderbird_resolves_it() {
    let _tb = thunderbird_lock();
    let t0 = Instant::now();
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut changed = Vec::new();
    for sc in scenarios() {
        let label = sc.name;
        let sb = Sandbox::new(&sc);
        let report = sb.check(label);

        let opts = LaunchOptions {
            startup_timeout: if sc.starts {
                Duration::from_secs(90)
            } else {
                BLOCKED_AFTER
            },
            ..LaunchOptions::default().with_system_root(&sb.root)
        };
        let query = ProbeQuery::new().prefs(sc.rows.iter().map(|r| r.pref));
        let probe: Result<Value, String> = match ThunderbirdRun::start_with(&sb.profile, opts) {
            Ok(run) => {
                eprintln!(
                    "[{label}] Thunderbird ready in {:.2} s; overlays: {:?}",
                    run.startup_duration().as_secs_f64(),
                    run.overlay_mounts()
                        .iter()
                        .map(|m| (&m.point, &m.files))
                        .collect::<Vec<_>>()
                );
                let v = run
                    .probe(&query)
                    .unwrap_or_else(|e| panic!("[{label}] probe: {e:#}"));
                run.quit_logged(label);
                Ok(v)
            }
            Err(e) => {
                let e = format!("{e:#}");
                eprintln!("[{label}] Thunderbird did not start: {e}");
                // Blocked (alive, Marionette silent) is what a broken AutoConfig does; any other
                // failure (a mount, a crash) is the harness's, never evidence.
                assert!(
                    sc.starts || e.contains("Marionette did not answer"),
                    "[{label}] Thunderbird failed to start for another reason than blocking: {e}"
                );
                Err(e.lines().next().unwrap_or("").to_owned())
            }
        };

        let _ = writeln!(table, "\n## {label}");
        for r in &sc.rows {
            let seen: Seen = match &probe {
                Ok(v) => {
                    let p = &v["prefs"][r.pref];
                    Ok((p["value"].clone(), p["locked"] == json!(true)))
                }
                Err(e) => Err(e.clone()),
            };
            let stack: Vec<String> = r.stack.iter().map(|l| l.describe()).collect();
            let tb_text = match &seen {
                Ok((v, l)) => format!("{}{}", short(v), if *l { " locked" } else { "" }),
                Err(_) => "does not start".to_owned(),
            };
            if let Some(c) = drifted_from_measurement(&sc, r, &seen) {
                changed.push(format!("{}: {c}", r.pref));
            }
            for (control, lock_row) in [(r.control, false), (LOCK, true)] {
                let (says, bad) = match finding(&report, control, r.pref) {
                    Ok(f) => (agent_says(f), judge(r, f, lock_row, &seen)),
                    Err(e) => ("-".to_owned(), vec![e]),
                };
                let verdict = if bad.is_empty() {
                    "ok".to_owned()
                } else {
                    format!("FAIL: {}", bad.join("; "))
                };
                let _ = writeln!(
                    table,
                    "{:<50} {:<16} want {:<8} | {} | agent: {} | Thunderbird: {} | {verdict}",
                    r.pref,
                    control,
                    if lock_row {
                        "locked".to_owned()
                    } else {
                        short(&r.want.json())
                    },
                    stack.join(", "),
                    says,
                    tb_text,
                );
                for b in bad {
                    failures.push(format!("{} ({control}): {b}", r.pref));
                }
            }
        }
    }
    eprintln!(
        "\nAgent against Thunderbird, setting by setting ({:.1} s):{table}",
        t0.elapsed().as_secs_f64()
    );
    let mut msg = String::new();
    if !changed.is_empty() {
        let _ = writeln!(
            msg,
            "Thunderbird no longer does what docs/thunderbird-layers-measured.md says (re-measure, \
             then fix the document and the model):\n  {}",
            changed.join("\n  ")
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(
            msg,
            "{} rows where the agent does not say what Thunderbird does:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    assert!(msg.is_empty(), "{msg}\nThe table:{table}");
}
