//! The Thunderbird part of `check` that depends on the size of prefs.js, without any I/O:
//! parse prefs.js (and a distribution's default-pref file), build the account graph through
//! pref lookups, and resolve every pref the BSI M 5.57 baseline touches through
//! [`Layers::resolve`].
//!
//! - `thunderbird prefs/N`, N in 20, 100, 500, 2,000 accounts (each with ~2,000 unrelated
//!   filler prefs, like a real prefs.js): the cost must grow linearly with N. The whole agent
//!   `check` of 2,000 accounts must stay under 60 ms, so this part must be well below that.
//! - `thunderbird prefs parse/2000`: parsing alone, the file of 2,000 accounts (1.8 MB).
//! - `thunderbird prefs edits/2000`: `set_user` of an existing and of a new pref, then
//!   `remove_user`, on the 2,000-account file: the edit path keeps the lookup index right.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use postwarden_clients::thunderbird::accounts::{self, Accounts};
use postwarden_clients::thunderbird::effective::{DefaultPrefFile, Layers};
use postwarden_clients::thunderbird::policies::PoliciesDoc;
use postwarden_clients::thunderbird::prefs::{PrefValue, PrefsFile};
use postwarden_clients::thunderbird::{map, Location, ProfileView};
use postwarden_profiles::{builtin, Vars};
use postwarden_test_support::fixture::large_prefs_js as prefs_js;

/// A distribution's default-pref file: a few hundred defaults and a couple of locks.
fn default_prefs() -> String {
    let mut text = String::from("// Distribution defaults\n");
    for i in 0..300 {
        let _ = writeln!(text, "pref(\"distro.default.pref{i}\", {i});");
    }
    text.push_str("pref(\"mail.server.default.check_new_mail\", true);\n");
    text.push_str("pref(\"mail.quota.mainwindow_threshold.warning\", 90, locked);\n");
    text
}

const POLICIES: &str = r#"{"policies":{"Preferences":{
    "mailnews.downloadToTempFile":{"Value":true,"Status":"locked"},
    "signon.rememberSignons":{"Value":false,"Status":"default"}}}}"#;

/// What one `check` of one profile does with prefs, given the file texts.
fn check_prefs(
    prefs_text: &str,
    default_text: &str,
    policy: &PoliciesDoc,
    names: &[String],
) -> usize {
    let prefs_js = PrefsFile::parse(prefs_text).unwrap();
    let default_files = [DefaultPrefFile {
        path: "/etc/thunderbird/pref/distro.js".into(),
        prefs: PrefsFile::parse(default_text).unwrap(),
    }];
    let accounts = read_accounts(&prefs_js);
    let layers = Layers {
        default_files: &default_files,
        autoconfig: None,
        policy: Some(policy),
        user_js: None,
        prefs_js: &prefs_js,
    };
    let mut set = 0;
    for name in names {
        set += usize::from(layers.resolve(name).value.is_some());
    }
    accounts.accounts.len() + set
}

fn read_accounts(prefs_js: &PrefsFile) -> Accounts {
    accounts::read(|name| prefs_js.get_user(name).cloned())
}

/// Every pref name the BSI baseline reads for this profile.
fn baseline_names(prefs_text: &str) -> Vec<String> {
    let profile = builtin::load("bsi-m5.57").unwrap().unwrap();
    let vars: Vars = [("user.email".to_owned(), "user@example.org".to_owned())].into();
    let accounts = read_accounts(&PrefsFile::parse(prefs_text).unwrap());
    let views = [ProfileView {
        scope: "bench",
        accounts: &accounts,
    }];
    let mapped = map(&profile, &vars, &views, "policies.json").unwrap();
    let names: BTreeSet<String> = mapped
        .desired
        .into_iter()
        .filter_map(|d| match d.location {
            Location::Pref { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    names.into_iter().collect()
}

fn bench(c: &mut Criterion) {
    let default_text = default_prefs();
    let policy = PoliciesDoc::parse("policies.json", POLICIES).unwrap();

    let mut group = c.benchmark_group("thunderbird prefs");
    group.sample_size(20);
    for accounts in [20, 100, 500, 2000] {
        let text = prefs_js(accounts);
        let names = baseline_names(&text);
        assert!(names.len() >= accounts * 5, "{} names", names.len());
        group.bench_with_input(BenchmarkId::from_parameter(accounts), &text, |b, text| {
            b.iter(|| check_prefs(text, &default_text, &policy, &names))
        });
    }
    group.finish();

    // Parsing alone: the string and comment scanning is the hot loop.
    let text = prefs_js(2000);
    c.bench_function("thunderbird prefs parse/2000", |b| {
        b.iter(|| PrefsFile::parse(&text).unwrap())
    });

    let mut group = c.benchmark_group("thunderbird prefs edits");
    group.sample_size(20);
    group.bench_function("2000", |b| {
        b.iter_batched(
            // A fresh parse, as `apply` edits one (a clone would have no spare capacity).
            || PrefsFile::parse(&text).unwrap(),
            |mut f| {
                f.set_user("mail.server.server1000.check_time", &PrefValue::Int(30));
                f.set_user("mail.server.server1000.new_pref", &PrefValue::Bool(true));
                f.remove_user("mail.server.server7.leave_on_server");
                f
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
