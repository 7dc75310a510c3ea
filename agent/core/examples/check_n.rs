//! Times one `check` of the baseline on a generated Thunderbird profile with N accounts
//! (default 2,000), for profiling: `check_n [ACCOUNTS] [ROUNDS]`.

use std::time::Instant;

use postwarden_agent_core::{load_profile, Session, Target};
use postwarden_profiles::report::{Client, RunKind};
use postwarden_profiles::Vars;

use postwarden_test_support::fixture::large_thunderbird_home;

fn main() {
    let mut args = std::env::args().skip(1);
    let accounts: usize = args.next().map_or(2000, |a| a.parse().expect("ACCOUNTS"));
    let rounds: usize = args.next().map_or(20, |a| a.parse().expect("ROUNDS"));
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let home = tmp.path().join("home");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    large_thunderbird_home(&home, accounts);
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
        "check, {accounts} accounts: best of {rounds}: {:.2} ms",
        best * 1e3
    );
}
