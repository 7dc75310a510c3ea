//! The agent service's speed and footprint (issue 10, "Speed and footprint"), measured end to
//! end with the real binaries (release build) on this machine:
//!
//! 1. an external write to prefs.js (renamed over it, as Thunderbird saves) → the agent's pass
//!    that repaired and re-verified it has finished (its log line), over N trials;
//! 2. a new profile version published on the server → applied by a connected agent (the
//!    long-poll), over M trials;
//! 3. the idle agent over S seconds: CPU time, wake-ups (voluntary context switches), RSS;
//! 4. the binary's size.
//!
//! `cargo run --release -p postwarden-e2e --example agent_bench -- [TRIALS [PUBLISHES [IDLE_S]]]`
//! (`scripts/bench-agent.sh` does it). Linux only (/proc).

use std::io::{BufRead, Seek};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use postwarden_e2e::fleet::{
    pref_value, replace_by_rename, wait_for, with_pref, Agent, PolicyServer,
};
use postwarden_test_support::fixture::Machine;
use postwarden_test_support::{baseline_without_settings_lock, bin};

const CHECK_TIME: &str = "mail.server.server1.check_time";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name}: n={} p50={:.2} ms p95={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 95.0),
        percentile(&v, 99.0),
        v[v.len() - 1]
    );
}

/// Reads the agent's JSON log from `pos`: the wall-clock times of new `pass` lines.
fn new_passes(log: &Path, pos: &mut u64) -> Vec<(SystemTime, f64)> {
    let mut f = std::fs::File::open(log).unwrap();
    f.seek(std::io::SeekFrom::Start(*pos)).unwrap();
    let mut reader = std::io::BufReader::new(f);
    let mut out = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if !line.ends_with('\n') {
            break;
        }
        *pos += line.len() as u64;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["message"] == "pass" {
                let ts = v["timestamp"].as_str().unwrap();
                let t =
                    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                        .unwrap();
                let st =
                    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64);
                out.push((st, v["elapsed_ms"].as_f64().unwrap_or(0.0)));
            }
        }
        line.clear();
    }
    out
}

fn proc_stat(pid: u32) -> (f64, u64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        cpu,
        field("voluntary_ctxt_switches:"),
        field("VmRSS:"),
        field("VmHWM:"),
    )
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let trials = args.first().copied().unwrap_or(1000);
    let publishes = args.get(1).copied().unwrap_or(20);
    let idle_s = args.get(2).copied().unwrap_or(60);

    let agent_bin = bin::agent();
    println!(
        "binary: {} ({:.1} MiB)",
        agent_bin.display(),
        std::fs::metadata(agent_bin).unwrap().len() as f64 / 1048576.0
    );

    let profile = baseline_without_settings_lock();
    let server = PolicyServer::start();
    server.publish(&profile, "office");
    server.set_variables("alice", &[("user.email", "alice@example.org")]);
    let token = server.enrollment_token("office");
    let machine = Machine::empty().with_thunderbird();
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    Agent::enroll(&server, &token, &state, "alice");
    let home = machine.home.to_str().unwrap().to_owned();
    let root = machine.root.to_str().unwrap().to_owned();
    let agent = Agent::start(
        &state,
        &[
            "--user",
            "alice",
            "--home",
            &home,
            "--system-root",
            &root,
            "--long-poll",
            "120s",
            // Every trial repairs the same setting: it must not become contested.
            "--contest-limit",
            "1000000",
        ],
    );
    let prefs = machine.thunderbird_profile().join("prefs.js");
    let check_time = || pref_value(&std::fs::read_to_string(&prefs).ok()?, CHECK_TIME);
    wait_for("the first apply", Duration::from_secs(30), || {
        (check_time().as_deref() == Some("30")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));

    // 1. Drift → repaired and re-verified.
    let mut pos = std::fs::metadata(&agent.log).unwrap().len();
    new_passes(&agent.log, &mut pos);
    let mut to_restored = Vec::with_capacity(trials);
    let mut to_verified = Vec::with_capacity(trials);
    let mut in_pass = Vec::with_capacity(trials);
    for i in 0..trials {
        let text = std::fs::read_to_string(&prefs).unwrap();
        let drifted = with_pref(&text, CHECK_TIME, &format!("{}", 5 + (i % 20)));
        let wall = SystemTime::now();
        let start = Instant::now();
        replace_by_rename(&prefs, drifted.as_bytes());
        loop {
            if check_time().as_deref() == Some("30") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "trial {i}: not repaired"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        to_restored.push(start.elapsed().as_secs_f64() * 1e3);
        // The pass that repaired it logs when it has read the file back and queued the event.
        let (at, elapsed) = loop {
            let passes = new_passes(&agent.log, &mut pos);
            if let Some(p) = passes.into_iter().find(|(at, _)| *at >= wall) {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "trial {i}: no pass logged"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        to_verified.push(at.duration_since(wall).unwrap_or_default().as_secs_f64() * 1e3);
        in_pass.push(elapsed);
        // Let the re-check of the agent's own write pass before the next change.
        std::thread::sleep(Duration::from_millis(40));
        new_passes(&agent.log, &mut pos);
    }
    summary("write → value restored in prefs.js", to_restored);
    summary(
        "write → pass finished (repaired, re-verified, queued)",
        to_verified,
    );
    summary("the pass itself (agent's elapsed_ms)", in_pass);

    // 2. Publish → applied.
    let mut applied = Vec::new();
    for i in 0..publishes {
        let minutes = if i % 2 == 0 { 45 } else { 30 };
        let text = profile
            .replace("version = 1", &format!("version = {}", i + 2))
            .replace(
                "value = { minutes = 30 }",
                &format!("value = {{ minutes = {minutes} }}"),
            );
        let start = Instant::now();
        server.publish(&text, "office");
        let want = minutes.to_string();
        wait_for("the new version applied", Duration::from_secs(30), || {
            (check_time().as_deref() == Some(want.as_str())).then_some(())
        });
        applied.push(start.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(200));
    }
    summary("publish (upload + assign) → applied on the agent", applied);

    // 3. Idle.
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.pid();
    let (cpu0, wake0, _, _) = proc_stat(pid);
    std::thread::sleep(Duration::from_secs(idle_s as u64));
    let (cpu1, wake1, rss, hwm) = proc_stat(pid);
    println!(
        "idle {idle_s} s: CPU {:.3} s, {} voluntary wake-ups, RSS {:.1} MiB (peak {:.1} MiB)",
        cpu1 - cpu0,
        wake1 - wake0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(agent);
    drop(server);
}
