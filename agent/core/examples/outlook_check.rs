//! Times a full Outlook `check` of the built-in baseline against a user with 10 accounts
//! (5 POP3, 5 IMAP) in one MAPI profile: account discovery, mapping, reading every value,
//! findings. Prints p50/p99/max over the rounds.
//!
//! On Windows (and under Wine: `bash scripts/windows.sh bench-check`) it works on the real
//! registry of the current user, so run it in a throwaway prefix or a test account: it writes
//! the 10 accounts under `HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\PostwardenBench`
//! and removes them afterwards. Elsewhere it uses the in-memory registry, which shows the cost of
//! everything but the registry calls.
//!
//! Usage: outlook_check [ROUNDS]   (default 200)

use std::time::{Duration, Instant};

use std::sync::Arc;

use postwarden_agent_core::{Session, Target};
use postwarden_clients::outlook::mapping::{INTERNET_ACCOUNTS, PROFILES};
use postwarden_profiles::report::{Client, RunKind};
use postwarden_profiles::{builtin, Vars};
use postwarden_registry::{KeyPath, RegValue, Registry, Root, Shared};

const BENCH_PROFILE: &str = "PostwardenBench";

fn seed(reg: &mut dyn Registry) {
    let hkcu = KeyPath::new(Root::CurrentUser, "");
    let profile = hkcu
        .join(PROFILES)
        .join(BENCH_PROFILE)
        .join(INTERNET_ACCOUNTS);
    for i in 1..=10u32 {
        let key = profile.join(&format!("{i:08x}"));
        let (kind, port) = if i <= 5 { ("POP3", 110) } else { ("IMAP", 143) };
        let text = |s: &str| RegValue::binary_text(s);
        let values = [
            ("Account Name", text(&format!("account {i}"))),
            ("Email", text(&format!("user{i}@example.org"))),
            (&format!("{kind} Server")[..], text("mail.example.org")),
            (&format!("{kind} Port")[..], RegValue::Dword(port)),
            (&format!("{kind} Use SSL")[..], RegValue::Dword(0)),
            (
                &format!("{kind} Password")[..],
                RegValue::Binary(vec![2; 64]),
            ),
            ("SMTP Server", text("smtp.example.org")),
            ("SMTP Port", RegValue::Dword(587)),
            ("SMTP Use Auth", RegValue::Dword(0)),
            ("Leave on Server", RegValue::Dword(1)),
            ("Reply E-mail", text("private@example.net")),
        ];
        for (name, value) in values {
            reg.set(&key, name, &value).expect("seeding the registry");
        }
    }
}

fn unseed(reg: &mut dyn Registry) {
    let hkcu = KeyPath::new(Root::CurrentUser, "");
    let bench = hkcu.join(PROFILES).join(BENCH_PROFILE);
    let internet = bench.join(INTERNET_ACCOUNTS);
    for id in reg.subkeys(&internet).unwrap_or_default() {
        let key = internet.join(&id);
        for name in reg.values(&key).unwrap_or_default().into_keys() {
            let _ = reg.delete_value(&key, &name);
        }
        let _ = reg.delete_key_if_empty(&key);
    }
    let _ = reg.delete_key_if_empty(&internet);
    let _ = reg.delete_key_if_empty(&bench);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(200);
    #[cfg(windows)]
    let (reg, which) = (
        Shared::new(postwarden_registry::windows::WinRegistry::new()),
        "the Windows registry API",
    );
    #[cfg(not(windows))]
    let (reg, which) = (
        Shared::new(postwarden_registry::MemRegistry::new()),
        "the in-memory registry",
    );
    seed(&mut reg.clone());
    let profile = builtin::load("bsi-m5.57")
        .expect("built in")
        .expect("parses");
    let mut vars = Vars::new();
    vars.insert("user.email".into(), "alice@example.org".into());
    let home = tempfile::tempdir().expect("a temporary home");
    let target = Target::new(home.path().to_path_buf(), home.path().to_path_buf())
        .expect("the temporary home exists");
    let shared = reg.clone();
    let session = Session::new(target, &[Client::Outlook])
        .expect("valid options")
        .with_registry(Arc::new(move || Box::new(shared.clone())))
        .with_outlook_running(false);
    let mut times = Vec::with_capacity(rounds);
    let mut findings = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let outcome = session
            .prepare(&profile, &vars)
            .expect("the profile's templates resolve")
            .run(RunKind::Check, None);
        times.push(start.elapsed());
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        findings = outcome.report.findings.len();
    }
    unseed(&mut reg.clone());
    times.sort();
    println!(
        "outlook check, baseline x 10 accounts ({findings} findings) via {which}, {rounds} rounds: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().expect("at least one round").as_secs_f64() * 1e3,
    );
}
