//! Times one `check` of the baseline on a generated Thunderbird profile with N accounts
//! (default 2,000), for profiling: `check_n [ACCOUNTS] [ROUNDS] [autoconfig]`. With
//! `autoconfig`, the machine also has an AutoConfig file that locks the default server prefs
//! (every per-server pref then resolves through it).

use std::time::Instant;

use postwarden_agent_core::{load_profile, Session, Target};
use postwarden_profiles::report::{Client, RunKind};
use postwarden_profiles::Vars;

use postwarden_test_support::fixture::large_thunderbird_home;

fn main() {
    let mut args = std::env::args().skip(1);
    let accounts: usize = args.next().map_or(2000, |a| a.parse().expect("ACCOUNTS"));
    let rounds: usize = args.next().map_or(20, |a| a.parse().expect("ROUNDS"));
    let autoconfig = args.next().as_deref() == Some("autoconfig");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let home = tmp.path().join("home");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    large_thunderbird_home(&home, accounts);
    if autoconfig {
        let prefs = root.join("usr/lib/thunderbird/defaults/pref");
        std::fs::create_dir_all(&prefs).expect("pref dir");
        std::fs::write(
            prefs.join("autoconfig.js"),
            "pref(\"general.config.filename\", \"corp.cfg\");\n\
             pref(\"general.config.obscure_value\", 0);\n",
        )
        .expect("autoconfig.js");
        std::fs::write(
            root.join("usr/lib/thunderbird/corp.cfg"),
            "// corporate settings\n\
             var user = getenv(\"USER\");\n\
             lockPref(\"mail.server.default.check_time\", 30);\n\
             lockPref(\"mail.server.default.leave_on_server\", false);\n\
             defaultPref(\"mail.server.default.socketType\", 3);\n\
             pref(\"signon.rememberSignons\", false);\n",
        )
        .expect("corp.cfg");
    }
    let session = Session::new(
        Target::new(home, root).expect("dirs"),
        &[Client::Thunderbird],
    )
    .expect("options");
    let profile = load_profile("builtin:bsi-m5.57").expect("baseline");
    let vars: Vars = [("user.email".to_owned(), "user@example.org".to_owned())].into();
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        let outcome = session
            .prepare(&profile, &vars)
            .expect("prepare")
            .run(RunKind::Check, None);
        best = best.min(start.elapsed().as_secs_f64());
        assert!(outcome.problems.is_empty());
    }
    println!(
        "check, {accounts} accounts{}: best of {rounds}: {:.2} ms",
        if autoconfig { ", AutoConfig" } else { "" },
        best * 1e3
    );
}
