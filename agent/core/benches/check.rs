//! `check` of the BSI M 5.57 baseline through the session API, end to end: discovery, parsing
//! prefs.js, policies.json and logins.json, mapping, effective-value resolution and the report.
//!
//! - `check/20 accounts`: the everyday case (10 POP3, 10 IMAP, 2,000 unrelated prefs). Target:
//!   under 20 ms.
//! - `check/N accounts` for N in 20, 100, 500, 2,000: the cost must grow with the work, not
//!   faster (target: 2,000 accounts under 60 ms).
//! - `apply/one drifted value`: a repair of one drifted pref (prefs.js and policies.json written
//!   through the journal), then put back by hand; shows the cost of the write path.

use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use postwarden_agent_core::{load_profile, Session, Target};
use postwarden_profiles::report::{Client, RunKind};
use postwarden_profiles::Vars;

use postwarden_test_support::fixture::large_thunderbird_home as thunderbird_home;

fn session(root: &Path, accounts: usize) -> Session {
    let home = root.join(format!("home{accounts}"));
    let system = root.join(format!("root{accounts}"));
    fs::create_dir_all(&system).unwrap();
    thunderbird_home(&home, accounts);
    Session::new(Target::new(home, system).unwrap(), &[Client::Thunderbird]).unwrap()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let profile = load_profile("builtin:bsi-m5.57").unwrap();
    let vars: Vars = [("user.email".to_owned(), "user@example.org".to_owned())].into();
    let check = |s: &Session| {
        s.prepare(&profile, &vars)
            .unwrap()
            .run(RunKind::Check, None)
    };

    let everyday = session(tmp.path(), 20);
    let report = check(&everyday).report;
    assert!(report.findings.len() > 200, "{}", report.findings.len());
    c.bench_function("check baseline, 20 accounts", |b| {
        b.iter(|| check(&everyday))
    });

    let mut group = c.benchmark_group("check by account count");
    group.sample_size(20);
    for accounts in [20, 100, 500, 2000] {
        let s = session(tmp.path(), accounts);
        assert!(check(&s).problems.is_empty());
        group.bench_with_input(BenchmarkId::from_parameter(accounts), &s, |b, s| {
            b.iter(|| check(s))
        });
    }
    group.finish();

    // One drifted value repaired: the write path (journal, atomic replace, fsyncs).
    let s = session(tmp.path(), 1);
    s.prepare(&profile, &vars)
        .unwrap()
        .run(RunKind::Apply, None);
    let prefs = s.target().home.join(".thunderbird/bench.default/prefs.js");
    let compliant = fs::read_to_string(&prefs).unwrap();
    let drifted = compliant.replace(
        "user_pref(\"mail.server.server1.check_time\", 30);",
        "user_pref(\"mail.server.server1.check_time\", 5);",
    );
    assert_ne!(compliant, drifted, "the apply wrote check_time 30");
    c.bench_function("apply, one drifted value", |b| {
        b.iter_batched(
            || fs::write(&prefs, &drifted).unwrap(),
            |()| {
                let outcome = s
                    .prepare(&profile, &vars)
                    .unwrap()
                    .run(RunKind::Apply, None);
                assert!(outcome.problems.is_empty());
            },
            criterion::BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
