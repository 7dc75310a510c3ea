//! `check` of the BSI M 5.57 baseline against a Thunderbird profile with 20 accounts (10 POP3,
//! 10 IMAP), end to end through the library: discovery, parsing prefs.js, policies.json and
//! logins.json, mapping, effective-value resolution and the report. Target: under 20 ms.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use postwarden_agent::cli::{load_profile, run_profile};
use postwarden_agent::thunderbird::Paths;
use postwarden_engine::Intent;
use postwarden_profiles::Vars;

fn twenty_accounts(home: &Path) {
    let dir = home.join(".thunderbird/bench.default");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        home.join(".thunderbird/profiles.ini"),
        "[Profile0]\nName=bench\nIsRelative=1\nPath=bench.default\n",
    )
    .unwrap();
    let mut p = String::from("// Mozilla User Preferences\n\n");
    let keys: Vec<String> = (1..=20).map(|i| format!("account{i}")).collect();
    let _ = writeln!(
        p,
        "user_pref(\"mail.accountmanager.accounts\", \"{}\");",
        keys.join(",")
    );
    for i in 1..=20 {
        let kind = if i % 2 == 0 { "imap" } else { "pop3" };
        let _ = writeln!(
            p,
            "user_pref(\"mail.account.account{i}.identities\", \"id{i}\");"
        );
        let _ = writeln!(
            p,
            "user_pref(\"mail.account.account{i}.server\", \"server{i}\");"
        );
        let _ = writeln!(
            p,
            "user_pref(\"mail.identity.id{i}.useremail\", \"user{i}@example.org\");"
        );
        let _ = writeln!(
            p,
            "user_pref(\"mail.identity.id{i}.smtpServer\", \"smtp{i}\");"
        );
        let _ = writeln!(p, "user_pref(\"mail.server.server{i}.type\", \"{kind}\");");
        let _ = writeln!(
            p,
            "user_pref(\"mail.server.server{i}.hostname\", \"mail{i}.example.org\");"
        );
        let _ = writeln!(
            p,
            "user_pref(\"mail.server.server{i}.userName\", \"user{i}\");"
        );
        let _ = writeln!(p, "user_pref(\"mail.server.server{i}.check_time\", 5);");
        let _ = writeln!(
            p,
            "user_pref(\"mail.server.server{i}.leave_on_server\", true);"
        );
        let _ = writeln!(
            p,
            "user_pref(\"mail.smtpserver.smtp{i}.hostname\", \"smtp{i}.example.org\");"
        );
        let _ = writeln!(p, "user_pref(\"mail.smtpserver.smtp{i}.authMethod\", 1);");
    }
    // Thunderbird keeps many unrelated prefs too; a realistic file is a few thousand lines.
    for i in 0..2000 {
        let _ = writeln!(
            p,
            "user_pref(\"extensions.bench.filler{i}\", \"value {i} with \\\"quotes\\\"\");"
        );
    }
    fs::write(dir.join("prefs.js"), p).unwrap();
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    twenty_accounts(&home);
    let profile = load_profile("builtin:bsi-m5.57").unwrap();
    let vars: Vars = [("user.email".to_owned(), "user@example.org".to_owned())].into();
    let paths = Paths {
        home,
        system_root: root,
    };
    let report = run_profile(&profile, &vars, &paths, Intent::Check, None).unwrap();
    assert!(report.findings.len() > 200, "{}", report.findings.len());
    c.bench_function("check baseline, 20 accounts", |b| {
        b.iter(|| run_profile(&profile, &vars, &paths, Intent::Check, None).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
