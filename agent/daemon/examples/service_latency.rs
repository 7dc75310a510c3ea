//! Drift → repaired and re-verified, against the real agent: starts `postwarden-agent.exe run`
//! (standalone, `builtin:bsi-m5.57`, Outlook, on this machine's `HKEY_CURRENT_USER`, seeded with
//! `agent/tests/data/outlook/noncompliant.reg`), waits for its first pass, then TRIALS times
//! writes a wrong value (`REG_DWORD 0xDEADBEEF`, through `RegSetValueExW` as `reg add` does)
//! into one of the policy values the agent wrote, and measures from just before that write:
//!
//! - `value back`: until the value holds the agent's value again, seen through a registry watcher
//!   of our own on the policy keys (`RegNotifyChangeKeyValue`), then read;
//! - `pass logged`: until the agent's `pass` log line of that repair arrives on its standard
//!   error (the agent logs it after it read the value back, so this is "repaired and
//!   re-verified", plus the pipe);
//!
//! and checks that the agent logged `change seen` (its registry watcher) before that pass. After
//! each trial it waits for the pass the agent's own write causes (it repairs nothing), so every
//! trial starts from an idle agent. The trials go round the policy values; the agent runs with
//! `--contest-limit` above the number of trials, as it would otherwise hold a setting repaired
//! more than 10 times within an hour as contested and stop repairing it.
//!
//! Arguments: `--throwaway-registry AGENT_EXE [TRIALS]` (default 1000). The flag is required
//! because the program overwrites Outlook's settings and policies in `HKEY_CURRENT_USER`: run it
//! in a throwaway Wine prefix (`bash scripts/windows.sh bench-service [TRIALS]`) or a throwaway
//! Windows machine. Times are `Instant`s (QueryPerformanceCounter).

#[cfg(not(windows))]
fn main() {
    println!(
        "service_latency measures the Windows agent and needs Windows (or Wine: bash scripts/windows.sh bench-service)"
    );
}

#[cfg(windows)]
fn main() {
    bench::main();
}

#[cfg(windows)]
mod bench {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
    use std::time::{Duration, Instant};

    use postwarden_registry::regfile::{self, Op};
    use postwarden_registry::windows::{Change, Watcher, WinRegistry};
    use postwarden_registry::{KeyPath, RegValue, Registry, Root};
    use serde_json::Value as Json;

    const FIXTURE: &[u8] = include_bytes!("../../tests/data/outlook/noncompliant.reg");
    /// Where the policy values the trials change live (the agent writes them all).
    const POLICY_ROOTS: &[&str] = &[
        r"Software\Policies\Microsoft\Office\16.0\Outlook",
        r"Software\Microsoft\Windows\CurrentVersion\Policies\Attachments",
    ];
    const WRONG: RegValue = RegValue::Dword(0xDEAD_BEEF);
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A line of the agent's JSON log, and when it arrived.
    struct Line {
        at: Instant,
        json: Json,
    }

    impl Line {
        fn message(&self) -> &str {
            self.json["message"].as_str().unwrap_or_default()
        }
    }

    /// One `postwarden-agent.exe run`; killed on drop.
    struct Agent {
        child: Child,
        lines: Receiver<Line>,
    }

    impl Agent {
        fn start(exe: &Path, trials: usize) -> Agent {
            let base = std::env::temp_dir().join("postwarden-service-latency");
            let state = base.join("state");
            let home = base.join("alice");
            let _ = std::fs::remove_dir_all(&state);
            std::fs::create_dir_all(&home).expect("creating the home folder");
            let mut child = Command::new(exe)
                .args(["run", "--profile", "builtin:bsi-m5.57"])
                .args([
                    "--var",
                    "user.email=alice@example.org",
                    "--client",
                    "outlook",
                ])
                .arg("--state-dir")
                .arg(&state)
                .args(["--user", "alice", "--home"])
                .arg(&home)
                .args(["--log-format", "json", "--contest-limit"])
                .arg((trials + 1).to_string())
                .env("RUST_LOG", "info,postwarden_daemon=debug")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
            let stderr = child.stderr.take().expect("piped");
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let at = Instant::now();
                    let json = serde_json::from_str(&line).unwrap_or(Json::String(line));
                    if tx.send(Line { at, json }).is_err() {
                        break;
                    }
                }
            });
            Agent { child, lines }
        }

        /// The next line `wanted` accepts; the lines before it are returned too.
        fn wait_for(
            &self,
            what: &str,
            wanted: impl Fn(&Line) -> bool,
            timeout: Duration,
        ) -> (Vec<Line>, Line) {
            let deadline = Instant::now() + timeout;
            let mut before = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) if wanted(&line) => return (before, line),
                    Ok(line) => before.push(line),
                    Err(e) => panic!(
                        "no {what} from the agent within {timeout:?} ({e}); the lines before: {}",
                        before
                            .iter()
                            .map(|l| l.json.to_string())
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                }
            }
        }

        /// The next pass that repaired something.
        fn repair(&self) -> (Vec<Line>, Line) {
            self.wait_for(
                "pass with a repair",
                |l| l.message() == "pass" && l.json["repaired"].as_u64() >= Some(1),
                TIMEOUT,
            )
        }

        /// The next pass that repaired nothing (`pass: nothing to do`, or `pass` with events
        /// only).
        fn idle_pass(&self) {
            let (_, line) = self.wait_for(
                "pass",
                |l| matches!(l.message(), "pass" | "pass: nothing to do"),
                TIMEOUT,
            );
            assert_eq!(
                line.json["repaired"].as_u64().unwrap_or(0),
                0,
                "a pass that should have found nothing to repair: {}",
                line.json
            );
        }

        /// Waits until the agent has logged nothing for `quiet`.
        fn settle(&self, quiet: Duration) {
            loop {
                match self.lines.recv_timeout(quiet) {
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => return,
                    Err(RecvTimeoutError::Disconnected) => panic!("the agent exited"),
                }
            }
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn hkcu(path: &str) -> KeyPath {
        KeyPath::new(Root::CurrentUser, path)
    }

    fn seed(reg: &mut WinRegistry) {
        let file = regfile::parse(FIXTURE).expect("the fixture parses");
        for section in &file.sections {
            for entry in &section.entries {
                match &entry.op {
                    Op::Set(v) => reg.set(&section.key, &entry.name, v).expect("seeding"),
                    Op::Delete => reg
                        .delete_value(&section.key, &entry.name)
                        .expect("seeding"),
                }
            }
        }
    }

    /// Every REG_DWORD below `root`: (key, name) → value.
    fn dwords(reg: &WinRegistry, root: &KeyPath, out: &mut BTreeMap<(KeyPath, String), RegValue>) {
        for (name, value) in reg.values(root).expect("reading the policies") {
            if matches!(value, RegValue::Dword(_)) {
                out.insert((root.clone(), name), value);
            }
        }
        for sub in reg.subkeys(root).expect("reading the policies") {
            dwords(reg, &root.join(&sub), out);
        }
    }

    fn percentiles(name: &str, samples: &mut [Duration]) {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1e3
        };
        println!(
            "{name:<34} n={} min={:.1}ms p50={:.1}ms p95={:.1}ms p99={:.1}ms max={:.1}ms",
            samples.len(),
            samples[0].as_secs_f64() * 1e3,
            at(0.50),
            at(0.95),
            at(0.99),
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let usage = "arguments: --throwaway-registry AGENT_EXE [TRIALS]";
        if args.first().map(String::as_str) != Some("--throwaway-registry") {
            eprintln!(
                "{usage}\nThis overwrites Outlook's settings and policies in HKEY_CURRENT_USER; \
                 run it in a throwaway Wine prefix (bash scripts/windows.sh bench-service)."
            );
            std::process::exit(2);
        }
        let exe = PathBuf::from(args.get(1).expect(usage));
        let trials: usize = args.get(2).map_or(1000, |n| n.parse().expect(usage));

        let mut reg = WinRegistry::new();
        seed(&mut reg);
        let roots: Vec<KeyPath> = POLICY_ROOTS.iter().map(|r| hkcu(r)).collect();

        let agent = Agent::start(&exe, trials);
        let (_, first) = agent.repair();
        println!(
            "first pass: {} repaired in {:.1} ms",
            first.json["repaired"], first.json["elapsed_ms"]
        );
        agent.settle(Duration::from_millis(500));

        // The policy values the agent wrote: what the trials change.
        let mut expected = BTreeMap::new();
        for root in &roots {
            dwords(&reg, root, &mut expected);
        }
        let settings: Vec<((KeyPath, String), RegValue)> = expected.into_iter().collect();
        assert!(
            !settings.is_empty(),
            "the agent wrote no policy value: is Outlook set up?"
        );
        println!(
            "{trials} trials over {} policy values (REG_DWORD)",
            settings.len()
        );

        let (watcher, changes) = Watcher::spawn(roots).expect("watching the policies");
        let mut back = Vec::with_capacity(trials);
        let mut logged = Vec::with_capacity(trials);
        let mut pass_ms = Vec::with_capacity(trials);
        let mut set_times = Vec::with_capacity(trials);
        let run_started = Instant::now();
        for trial in 0..trials {
            let ((key, name), right) = &settings[trial % settings.len()];
            while changes.try_recv().is_ok() {}

            let start = Instant::now();
            reg.set(key, name, &WRONG).expect("writing the drift");
            set_times.push(start.elapsed());
            let came_back = wait_for_value(&reg, &changes, key, name, right).unwrap_or_else(|| {
                panic!("trial {trial}: {key} {name:?} did not come back within {TIMEOUT:?}")
            });
            back.push(came_back - start);

            let (before, pass) = agent.repair();
            assert!(
                before.iter().any(|l| l.message() == "change seen"),
                "trial {trial}: the pass was not caused by the registry watcher"
            );
            logged.push(pass.at - start);
            if let Some(ms) = pass.json["elapsed_ms"].as_f64() {
                pass_ms.push(Duration::from_secs_f64(ms / 1e3));
            }
            // The pass the agent's own write causes.
            agent.idle_pass();
        }
        let took = run_started.elapsed();
        drop(watcher);
        drop(agent);

        println!("{trials} trials in {:.1} s", took.as_secs_f64());
        percentiles("write -> value back", &mut back);
        percentiles("write -> pass logged (re-verified)", &mut logged);
        percentiles("the pass itself (agent's elapsed_ms)", &mut pass_ms);
        percentiles("RegSetValueExW of the drift", &mut set_times);
    }

    /// When `name` of `key` holds `right` again: read after each change `changes` reports, and
    /// every 5 ms besides (a write and its repair that both land before our watcher re-reads
    /// the keys cancel out in its diff).
    fn wait_for_value(
        reg: &WinRegistry,
        changes: &Receiver<Change>,
        key: &KeyPath,
        name: &str,
        right: &RegValue,
    ) -> Option<Instant> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match changes.recv_timeout(left.min(Duration::from_millis(5))) {
                Ok(change) if !change.keys.contains(key) => continue,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            // The watcher re-armed before it read, so a write after this read is reported.
            if reg.get(key, name).ok().flatten().as_ref() == Some(right) {
                return Some(Instant::now());
            }
        }
    }
}
