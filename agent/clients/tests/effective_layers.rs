//! Property test of Thunderbird's pref resolution: for random stacks of layers (default-pref
//! files, prefs.js, user.js, AutoConfig, policies.json), `Layers::resolve` agrees with a
//! straightforward reference that replays Thunderbird's documented start-up order on a table
//! of every pref, the way libpref does, without sources, indexes or per-name shortcuts.
//!
//! The order (Mozilla's Preferences.cpp, nsReadConfig.cpp, prefcalls.js, the policy engine;
//! measured on Thunderbird 153, docs/thunderbird-layers-measured.md): built-in defaults →
//! default-pref files in load order (a default cannot change once locked, nor change type) →
//! prefs.js → user.js → AutoConfig statements in order → named policy → `Preferences` policy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use postwarden_clients::thunderbird::autoconfig::{
    AutoConfig, CfgEffect, CfgOp, CfgTarget, CfgValue,
};
use postwarden_clients::thunderbird::effective::{
    AutoConfigLayer, AutoConfigOutcome, DefaultPrefFile, Layers,
};
use postwarden_clients::thunderbird::policies::PoliciesDoc;
use postwarden_clients::thunderbird::prefs::{PrefValue, PrefsFile};
use proptest::prelude::*;

/// Two prefs: one with a built-in default, one without; neither has a per-server fallback.
const NAMES: [&str; 2] = ["mail.server.default.check_time", "test.postwarden.pref"];

fn builtin(name: &str) -> Option<PrefValue> {
    (name == NAMES[0]).then_some(PrefValue::Int(10))
}

#[derive(Debug, Clone)]
enum V {
    Int(i32),
    Str(&'static str),
    Bool(bool),
}

impl V {
    fn pref(&self) -> PrefValue {
        match self {
            V::Int(i) => PrefValue::Int(i64::from(*i)),
            V::Str(s) => PrefValue::Str((*s).to_owned()),
            V::Bool(b) => PrefValue::Bool(*b),
        }
    }

    fn js(&self) -> String {
        match self {
            V::Int(i) => i.to_string(),
            V::Str(s) => format!("\"{s}\""),
            V::Bool(b) => b.to_string(),
        }
    }
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        6 => (0..4i32).prop_map(V::Int),
        1 => Just(V::Str("s")),
        1 => any::<bool>().prop_map(V::Bool),
    ]
}

fn name() -> impl Strategy<Value = usize> {
    0..NAMES.len()
}

#[derive(Debug, Clone)]
struct DefaultStmt {
    name: usize,
    value: V,
    sticky: bool,
    locked: bool,
}

#[derive(Debug, Clone)]
enum Op {
    User(Option<V>),
    Default(Option<V>),
    Lock(Option<V>),
    Unlock,
    Clear,
}

#[derive(Debug, Clone)]
enum Policy {
    Legacy(V),
    Locked(V),
    Default(V),
    User(V),
    Clear,
}

#[derive(Debug, Clone)]
struct Stack {
    files: Vec<Vec<DefaultStmt>>,
    prefs_js: Vec<(usize, V)>,
    user_js: Option<Vec<(usize, V)>>,
    autoconfig: Option<Vec<(usize, Op)>>,
    policies: Vec<(usize, Policy)>,
    password_manager_off: bool,
}

fn stack() -> impl Strategy<Value = Stack> {
    let stmt = (name(), value(), any::<bool>(), any::<bool>()).prop_map(
        |(name, value, sticky, locked)| DefaultStmt {
            name,
            value,
            sticky,
            locked,
        },
    );
    let maybe = || prop::option::weighted(0.8, value());
    let op = prop_oneof![
        maybe().prop_map(Op::User),
        maybe().prop_map(Op::Default),
        maybe().prop_map(Op::Lock),
        Just(Op::Unlock),
        Just(Op::Clear),
    ];
    let policy = prop_oneof![
        value().prop_map(Policy::Legacy),
        value().prop_map(Policy::Locked),
        value().prop_map(Policy::Default),
        value().prop_map(Policy::User),
        Just(Policy::Clear),
    ];
    (
        prop::collection::vec(prop::collection::vec(stmt, 0..4), 0..4),
        prop::collection::vec((name(), value()), 0..3),
        prop::option::of(prop::collection::vec((name(), value()), 0..3)),
        prop::option::of(prop::collection::vec((name(), op), 0..5)),
        prop::collection::btree_map(name(), policy, 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(files, prefs_js, user_js, autoconfig, policies, password_manager_off)| Stack {
                files,
                prefs_js,
                user_js,
                autoconfig,
                policies: policies.into_iter().collect(),
                password_manager_off,
            },
        )
}

// --- the reference: libpref's table, replayed --------------------------------------------

/// A value in the reference table: known, or set by something the agent cannot know.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Known(PrefValue),
    Unknown,
}

#[derive(Debug, Clone, Default)]
struct Pref {
    default: Option<R>,
    user: Option<R>,
    locked: bool,
}

#[derive(Default)]
struct Table(BTreeMap<&'static str, Pref>);

impl Table {
    fn pref(&mut self, name: &'static str) -> &mut Pref {
        self.0.entry(name).or_default()
    }

    /// libpref's SetDefaultValue.
    fn set_default(&mut self, name: &'static str, v: R) {
        let p = self.pref(name);
        if p.locked {
            return;
        }
        if let (R::Known(new), Some(R::Known(old))) = (&v, &p.default) {
            if std::mem::discriminant(new) != std::mem::discriminant(old) {
                return;
            }
        }
        p.default = Some(v);
    }

    fn force(&mut self, name: &'static str, v: R) {
        self.pref(name).locked = false;
        self.set_default(name, v);
        self.pref(name).locked = true;
    }

    fn get(&self, name: &str) -> (Option<R>, bool) {
        let Some(p) = self.0.get(name) else {
            return (None, false);
        };
        let v = if p.locked {
            p.default.clone()
        } else {
            p.user.clone().or(p.default.clone())
        };
        (v, p.locked)
    }
}

fn reference(s: &Stack) -> Table {
    let mut t = Table::default();
    for name in NAMES {
        if let Some(v) = builtin(name) {
            t.pref(name).default = Some(R::Known(v));
        }
    }
    for file in &s.files {
        for st in file {
            let name = NAMES[st.name];
            let was_locked = t.pref(name).locked;
            t.set_default(name, R::Known(st.value.pref()));
            if st.locked && !was_locked {
                t.pref(name).locked = true;
            }
        }
    }
    for (n, v) in &s.prefs_js {
        t.pref(NAMES[*n]).user = Some(R::Known(v.pref()));
    }
    for (n, v) in s.user_js.iter().flatten() {
        t.pref(NAMES[*n]).user = Some(R::Known(v.pref()));
    }
    let r = |v: &Option<V>| v.as_ref().map_or(R::Unknown, |v| R::Known(v.pref()));
    for (n, op) in s.autoconfig.iter().flatten() {
        let name = NAMES[*n];
        match op {
            Op::User(v) => t.pref(name).user = Some(r(v)),
            Op::Default(v) => t.set_default(name, r(v)),
            Op::Lock(v) => t.force(name, r(v)),
            Op::Unlock => t.pref(name).locked = false,
            Op::Clear => t.pref(name).user = None,
        }
    }
    for (n, p) in &s.policies {
        let name = NAMES[*n];
        match p {
            Policy::Legacy(v) => t.force(name, R::Known(v.pref())),
            Policy::Locked(v) => {
                t.set_default(name, R::Known(v.pref()));
                t.pref(name).locked = true;
            }
            Policy::Default(v) => t.set_default(name, R::Known(v.pref())),
            Policy::User(v) => t.pref(name).user = Some(R::Known(v.pref())),
            Policy::Clear => t.pref(name).user = None,
        }
    }
    t
}

// --- the same stack as the agent reads it ------------------------------------------------

fn prefs_text(stmts: &[(usize, V)]) -> String {
    stmts
        .iter()
        .map(|(n, v)| format!("user_pref(\"{}\", {});\n", NAMES[*n], v.js()))
        .collect()
}

fn policies_json(s: &Stack) -> String {
    let mut prefs = serde_json::Map::new();
    for (n, p) in &s.policies {
        let json = |v: &V| match v {
            V::Int(i) => serde_json::json!(i),
            V::Str(t) => serde_json::json!(t),
            V::Bool(b) => serde_json::json!(b),
        };
        let entry = match p {
            Policy::Legacy(v) => json(v),
            Policy::Locked(v) => serde_json::json!({"Value": json(v), "Status": "locked"}),
            Policy::Default(v) => serde_json::json!({"Value": json(v), "Status": "default"}),
            Policy::User(v) => serde_json::json!({"Value": json(v), "Status": "user"}),
            Policy::Clear => serde_json::json!({"Status": "clear"}),
        };
        prefs.insert(NAMES[*n].to_owned(), entry);
    }
    let mut policies = serde_json::Map::new();
    policies.insert("Preferences".into(), prefs.into());
    if s.password_manager_off {
        policies.insert("PasswordManagerEnabled".into(), false.into());
    }
    serde_json::json!({ "policies": policies }).to_string()
}

fn autoconfig(ops: &[(usize, Op)]) -> AutoConfigLayer {
    let value = |v: &Option<V>| match v {
        Some(v) => CfgValue::Known(v.pref()),
        None => CfgValue::Unknown("getenv(\"DEPT\") is not known to the agent".into()),
    };
    let effects = ops
        .iter()
        .enumerate()
        .map(|(i, (n, op))| CfgEffect {
            line: i + 2,
            target: CfgTarget::Pref(NAMES[*n].to_owned()),
            op: match op {
                Op::User(v) => CfgOp::User(value(v)),
                Op::Default(v) => CfgOp::Default(value(v)),
                Op::Lock(v) => CfgOp::Lock(value(v)),
                Op::Unlock => CfgOp::Unlock,
                Op::Clear => CfgOp::Clear,
            },
            text: format!("statement {i}"),
        })
        .collect();
    AutoConfigLayer {
        path: PathBuf::from("/usr/lib/thunderbird/mozilla.cfg"),
        outcome: AutoConfigOutcome::Evaluated(AutoConfig { effects }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resolution_equals_the_reference(s in stack()) {
        let files: Vec<DefaultPrefFile> = s
            .files
            .iter()
            .enumerate()
            .map(|(i, stmts)| {
                let text: String = stmts
                    .iter()
                    .map(|st| {
                        format!(
                            "{}(\"{}\", {}{});\n",
                            if st.sticky { "sticky_pref" } else { "pref" },
                            NAMES[st.name],
                            st.value.js(),
                            if st.locked { ", locked" } else { "" }
                        )
                    })
                    .collect();
                DefaultPrefFile {
                    path: PathBuf::from(format!("/etc/thunderbird/pref/{i}.js")),
                    prefs: PrefsFile::parse(&text).expect("generated default file parses"),
                }
            })
            .collect();
        let prefs_js = PrefsFile::parse(&prefs_text(&s.prefs_js)).unwrap();
        let user_js = s.user_js.as_ref().map(|u| PrefsFile::parse(&prefs_text(u)).unwrap());
        let ac = s.autoconfig.as_ref().map(|ops| autoconfig(ops));
        let policy = PoliciesDoc::parse("policies.json", &policies_json(&s)).unwrap();
        let layers = Layers {
            default_files: &files,
            autoconfig: ac.as_ref(),
            policy: Some(&policy),
            user_js: user_js.as_ref(),
            prefs_js: &prefs_js,
        };
        let mut table = reference(&s);
        table.pref("signon.rememberSignons").default = Some(R::Known(PrefValue::Bool(true)));
        if s.password_manager_off {
            table.force("signon.rememberSignons", R::Known(PrefValue::Bool(false)));
        }
        for name in NAMES.into_iter().chain(["signon.rememberSignons"]) {
            let got = layers.resolve(name);
            let (want, locked) = table.get(name);
            match want {
                Some(R::Unknown) => prop_assert!(got.is_unknown(), "{name}: {got:?}"),
                Some(R::Known(v)) => {
                    prop_assert!(!got.is_unknown(), "{name}: {got:?}");
                    prop_assert_eq!(got.value.as_ref(), Some(&v), "{}: {:?}", name, got);
                    prop_assert_eq!(got.locked, locked, "{}: {:?}", name, got);
                }
                None => {
                    prop_assert_eq!(got.value, None, "{}", name);
                }
            }
        }
    }
}

#[test]
fn a_remote_autoconfig_leaves_no_value_known() {
    let empty = PrefsFile::parse("").unwrap();
    let ac = AutoConfigLayer {
        path: PathBuf::from("/usr/lib/thunderbird/mozilla.cfg"),
        outcome: AutoConfigOutcome::Evaluated(AutoConfig {
            effects: vec![
                CfgEffect {
                    line: 2,
                    target: CfgTarget::Pref("autoadmin.global_config_url".into()),
                    op: CfgOp::Lock(CfgValue::Known(PrefValue::Str(
                        "https://config.example.org/tb.js".into(),
                    ))),
                    text: "lockPref(\"autoadmin.global_config_url\", ...)".into(),
                },
                CfgEffect {
                    line: 3,
                    target: CfgTarget::Pref(NAMES[0].into()),
                    op: CfgOp::Lock(CfgValue::Known(PrefValue::Int(30))),
                    text: "lockPref(...)".into(),
                },
            ],
        }),
    };
    let policy = PoliciesDoc::parse(
        "p.json",
        r#"{"policies":{"Preferences":{"test.postwarden.pref":1}}}"#,
    )
    .unwrap();
    let layers = Layers {
        default_files: &[],
        autoconfig: Some(&ac),
        policy: Some(&policy),
        user_js: None,
        prefs_js: &empty,
    };
    for name in NAMES {
        let r = layers.resolve(name);
        assert!(
            r.is_unknown() && r.source.is_beyond_reach(),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn code_the_agent_cannot_model_is_beyond_reach_but_unknown_values_are_not() {
    let empty = PrefsFile::parse("").unwrap();
    let layer = |effects| AutoConfigLayer {
        path: PathBuf::from("/usr/lib/thunderbird/mozilla.cfg"),
        outcome: AutoConfigOutcome::Evaluated(AutoConfig { effects }),
    };
    let any = layer(vec![CfgEffect {
        line: 4,
        target: CfgTarget::Any("Services.prefs.lockPref(name) with a computed name".into()),
        op: CfgOp::User(CfgValue::Unknown("computed".into())),
        text: "Services.prefs.lockPref(n)".into(),
    }]);
    let legacy = PoliciesDoc::parse(
        "p.json",
        r#"{"policies":{"Preferences":{"test.postwarden.pref":1}}}"#,
    )
    .unwrap();
    let r = Layers {
        default_files: &[],
        autoconfig: Some(&any),
        policy: Some(&legacy),
        user_js: None,
        prefs_js: &empty,
    }
    .resolve(NAMES[1]);
    assert!(r.source.is_beyond_reach(), "{r:?}");

    // An unknown value locked by AutoConfig is outranked by a legacy policy.
    let unknown = layer(vec![CfgEffect {
        line: 2,
        target: CfgTarget::Pref(NAMES[1].into()),
        op: CfgOp::Lock(CfgValue::Unknown("getenv(\"DEPT\")".into())),
        text: "lockPref(...)".into(),
    }]);
    let layers = Layers {
        default_files: &[],
        autoconfig: Some(&unknown),
        policy: Some(&legacy),
        user_js: None,
        prefs_js: &empty,
    };
    assert!(layers.resolve_before_policies(NAMES[1]).is_unknown());
    let r = layers.resolve(NAMES[1]);
    assert_eq!((r.value, r.locked), (Some(PrefValue::Int(1)), true));
}
