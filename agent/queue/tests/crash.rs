//! Crash safety under `kill -9`.
//!
//! This test binary runs itself again as the child to kill (`POSTWARDEN_QUEUE_CRASH_CHILD`
//! selects the child's work), so it has its own `main` instead of libtest's. Each scenario keeps
//! one queue file over all its rounds; in each round a child opens it (recovering whatever the
//! previous kill left), then loops: push a batch, print what committed; and is killed with
//! SIGKILL at a moment drawn from a fixed seed (some rounds while it is still opening the
//! file). The parent then opens a copy of the files exactly as the kill left them and checks:
//!
//! - `push`: the queue holds exactly what it held before the round, then every batch the child
//!   reported, then the batch it was pushing in full or not at all; in order, no id twice;
//! - `ack`: the same while the child also peeks and acknowledges: every acknowledged item is
//!   gone, every other reported item is there;
//! - `shed`: a queue that starts nearly full, so it folds and drops: the items are in push
//!   order with no id twice, within the limit, and every item committed is queued, merged or
//!   dropped
//!   (`items + merged_total + dropped_total` is exact, so the counters commit with the items).
//!
//! Every copy must also pass `PRAGMA integrity_check`. `POSTWARDEN_QUEUE_KILL_ROUNDS` sets the
//! rounds per scenario (default 24). A scenario name as an argument runs that one only.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use std::{env, fs, thread};

use postwarden_queue::{Entry, Limits, Queue, Queued};
use postwarden_wire::v1::BatchItemKind;
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

const CHILD: &str = "POSTWARDEN_QUEUE_CRASH_CHILD";
const CHILD_PATH: &str = "POSTWARDEN_QUEUE_CRASH_PATH";
const CHILD_ROUND: &str = "POSTWARDEN_QUEUE_CRASH_ROUND";
const NOW: OffsetDateTime = datetime!(2026-05-05 12:00:00 UTC);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Push,
    Ack,
    Shed,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Push, Scenario::Ack, Scenario::Shed];

    fn name(self) -> &'static str {
        match self {
            Scenario::Push => "push",
            Scenario::Ack => "ack",
            Scenario::Shed => "shed",
        }
    }

    fn limits(self) -> Limits {
        match self {
            Scenario::Shed => Limits {
                max_items: 1024,
                max_bytes: 4 * 1024 * 1024,
            },
            _ => Limits::default(),
        }
    }
}

/// The id of item `index` of round `round`: generation order is id order. (Ids below
/// `1 << 64` are the `shed` scenario's prefill.)
fn item_id(round: u64, index: u64) -> Uuid {
    Uuid::from_u128((u128::from(round + 1) << 64) | u128::from(index))
}

/// Items the `shed` scenario's queue starts with: it sheds from the first round on, however
/// slow the disk is.
const PREFILL: u64 = 1016;

/// How many items the push starting at `start` carries (1 to 5).
fn batch_len(round: u64, start: u64) -> u64 {
    1 + (start * 7 + round) % 5
}

fn entry(scenario: Scenario, round: u64, index: u64) -> Entry {
    // `shed`: every other item is one of eight settings (folds), the rest are settings of
    // their own (must be dropped when the queue is full). The others never shed.
    let setting = match scenario {
        Scenario::Shed if index.is_multiple_of(2) => format!("setting.{}", index / 2 % 8),
        _ => format!("setting.{round}.{index}"),
    };
    let mut e = support::event(0, &setting, json!(index), json!(index + 1));
    e.item.id = item_id(round, index);
    e
}

// --- the child ---

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("child: {what}: {e}");
    std::process::exit(3)
}

fn child(scenario: Scenario) {
    let path = PathBuf::from(env::var_os(CHILD_PATH).expect("queue path"));
    let round: u64 = env::var(CHILD_ROUND)
        .expect("round")
        .parse()
        .expect("round");
    let mut out = std::io::stdout().lock();
    // One write per line, flushed: a line the parent reads is complete, and was written after
    // the call it reports returned.
    let mut say = |line: String| {
        out.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| out.flush())
            .unwrap_or_else(|e| fail("write", &e));
    };
    let mut queue = Queue::open(&path, scenario.limits()).unwrap_or_else(|e| fail("open", &e));
    say("ready".into());
    let mut next = 0u64;
    loop {
        let n = batch_len(round, next);
        let entries: Vec<Entry> = (next..next + n)
            .map(|i| entry(scenario, round, i))
            .collect();
        let pushed = queue
            .push(&entries, NOW)
            .unwrap_or_else(|e| fail("push", &e));
        next += n;
        say(format!(
            "pushed {next} {} {}",
            pushed.merged, pushed.dropped
        ));
        if scenario == Scenario::Ack && next.is_multiple_of(2) {
            let batch = queue
                .peek(1 + (next % 5) as usize, usize::MAX)
                .unwrap_or_else(|e| fail("peek", &e));
            let last = batch.last().expect("a queue just pushed to is not empty");
            say(format!("acking {}", last.item.id));
            queue.ack(last.seq).unwrap_or_else(|e| fail("ack", &e));
            say(format!("acked {}", last.item.id));
        }
    }
}

// --- the parent ---

/// What the child reported before it died.
#[derive(Debug, Default)]
struct Report {
    ready: bool,
    /// Items of this round committed: `0..committed`.
    committed: u64,
    merged: u64,
    dropped: u64,
    /// The last item acknowledged, and one being acknowledged when it died.
    acked: Option<Uuid>,
    acking: Option<Uuid>,
    acks: u64,
}

fn parse(lines: &[String]) -> Report {
    let mut r = Report::default();
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["ready"] => r.ready = true,
            ["pushed", next, merged, dropped] => {
                r.committed = next.parse().unwrap();
                r.merged += merged.parse::<u64>().unwrap();
                r.dropped += dropped.parse::<u64>().unwrap();
            }
            ["acking", id] => r.acking = Some(id.parse().unwrap()),
            ["acked", id] => {
                let id: Uuid = id.parse().unwrap();
                assert_eq!(r.acking, Some(id), "acked without acking");
                r.acked = Some(id);
                r.acking = None;
                r.acks += 1;
            }
            _ => panic!("unexpected line from the child: {line:?}"),
        }
    }
    r
}

/// A small deterministic generator, so a failing round replays from its number.
fn random(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Runs the child for one round and kills it. Every fourth round is killed at a moment from
/// its start (often while it opens the file); the others at a moment after it is ready.
fn run_killed(scenario: Scenario, path: &Path, round: u64) -> Report {
    let mut child = Command::new(env::current_exe().unwrap())
        .env(CHILD, scenario.name())
        .env(CHILD_PATH, path)
        .env(CHILD_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            // A line cut by the kill has no newline; `lines` still yields it: the child writes
            // each line in one call, so a partial line cannot happen before the final one.
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let seed = random(round ^ (scenario as u64) << 32);
    let mut lines = Vec::new();
    if round.is_multiple_of(4) {
        thread::sleep(Duration::from_micros(seed % 30_000));
    } else {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("round {round}: the child never got ready: {e}"));
        assert_eq!(line, "ready");
        lines.push(line);
        thread::sleep(Duration::from_micros(seed % 150_000));
    }
    child.kill().unwrap(); // SIGKILL on Unix, TerminateProcess on Windows
    let status = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child ended by itself ({status}): {stderr}"
        );
    }
    #[cfg(not(unix))]
    assert!(!status.success(), "round {round}: {status}: {stderr}");
    parse(&lines)
}

/// Copies the queue's files as the kill left them, so the next child recovers the real crash
/// state while the parent checks an identical one.
fn snapshot(path: &Path, scratch: &Path) -> PathBuf {
    let copy = scratch.join("snapshot.db");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let to = PathBuf::from(format!("{}{suffix}", copy.display()));
        let _ = fs::remove_file(&to);
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            fs::copy(&from, &to).unwrap();
        }
    }
    copy
}

/// Opens the copy as the daemon would, reads everything, closes, and checks the whole file.
fn read_back(copy: &Path, limits: Limits) -> (Vec<Queued>, postwarden_queue::Stats) {
    let mut queue = Queue::open(copy, limits).unwrap();
    let items = queue.peek(usize::MAX, usize::MAX).unwrap();
    let stats = queue.stats().unwrap();
    drop(queue);
    let conn = rusqlite::Connection::open(copy).unwrap();
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(check, vec!["ok".to_owned()], "integrity_check");
    (items, stats)
}

fn assert_unique(ids: &[Uuid]) {
    let set: HashSet<&Uuid> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "an id twice");
}

#[derive(Debug, Default)]
struct Totals {
    committed: u64,
    acks: u64,
    merged: u64,
    dropped: u64,
    killed_before_ready: u64,
}

fn scenario(scenario: Scenario, rounds: u64) -> Totals {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("queue.db");
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let limits = scenario.limits();
    // `push`, `ack`: what the queue holds, in order. `shed`: how many items were committed.
    let mut held: Vec<Uuid> = Vec::new();
    let mut committed_total = 0u64;
    let mut totals = Totals::default();
    if scenario == Scenario::Shed {
        let mut queue = Queue::open(&path, limits).unwrap();
        let prefill: Vec<Entry> = (0..PREFILL)
            .map(|i| {
                let mut e = support::distinct(u128::from(i));
                e.item.id = Uuid::from_u128(u128::from(i));
                e
            })
            .collect();
        assert_eq!(queue.push(&prefill, NOW).unwrap(), Default::default());
        committed_total = PREFILL;
    }

    for round in 0..rounds {
        let report = run_killed(scenario, &path, round);
        if !report.ready {
            totals.killed_before_ready += 1;
        }
        let c = report.committed;
        let in_progress = c + batch_len(round, c);
        let copy = snapshot(&path, scratch.path());
        let (items, stats) = read_back(&copy, limits);
        let ids: Vec<Uuid> = items.iter().map(|q| q.item.id).collect();
        assert_unique(&ids);
        assert!(items.windows(2).all(|w| w[0].seq < w[1].seq), "seq order");
        let context = format!("{} round {round}: {report:?}", scenario.name());

        match scenario {
            Scenario::Push | Scenario::Ack => {
                // Everything that may be queued, in order: what was held, then this round.
                let all: Vec<Uuid> = held
                    .iter()
                    .copied()
                    .chain((0..in_progress).map(|i| item_id(round, i)))
                    .collect();
                let after = |id: Option<Uuid>| {
                    id.map_or(0, |id| all.iter().position(|x| *x == id).unwrap() + 1)
                };
                let mut starts = vec![after(report.acked)];
                if report.acking.is_some() {
                    starts.push(after(report.acking));
                }
                // A push in progress only when the child was not acknowledging.
                let ends = if report.acking.is_some() {
                    vec![held.len() + c as usize]
                } else {
                    vec![held.len() + c as usize, all.len()]
                };
                let ok = starts
                    .iter()
                    .any(|&a| ends.iter().any(|&b| a <= b && ids == all[a..b]));
                assert!(
                    ok,
                    "{context}: queued {ids:?}, possible {starts:?}..{ends:?} of {all:?}"
                );
                assert_eq!(stats.items, ids.len() as u64, "{context}");
                held = ids;
            }
            Scenario::Shed => {
                // Items (notices aside) in generation order: a subsequence of what was pushed.
                let pushed: Vec<Uuid> = items
                    .iter()
                    .filter(|q| !matches!(q.item.kind, BatchItemKind::Notice { .. }))
                    .map(|q| q.item.id)
                    .collect();
                assert!(
                    pushed.windows(2).all(|w| w[0] < w[1]),
                    "{context}: order {pushed:?}"
                );
                assert!(
                    pushed.iter().all(|id| *id < item_id(round, in_progress)),
                    "{context}: an item never pushed"
                );
                // Over the limit only when nothing but notices is left to drop.
                assert!(
                    stats.items <= limits.max_items || pushed.is_empty(),
                    "{context}: {stats:?}"
                );
                let accounted = pushed.len() as u64 + stats.merged_total + stats.dropped_total;
                assert!(
                    accounted == committed_total + c || accounted == committed_total + in_progress,
                    "{context}: {accounted} accounted for, {committed_total} + {c} (or {in_progress}) \
                     committed; {stats:?}"
                );
                assert!(
                    stats.merged_total + stats.dropped_total
                        >= totals.merged + totals.dropped + report.merged + report.dropped,
                    "{context}: a reported shed is missing from the counters: {stats:?}"
                );
                committed_total = accounted;
                totals.merged = stats.merged_total;
                totals.dropped = stats.dropped_total;
            }
        }
        totals.committed += c;
        totals.acks += report.acks;
    }
    totals
}

fn main() {
    if let Ok(name) = env::var(CHILD) {
        let scenario = Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .expect("a scenario");
        child(scenario);
    }
    let rounds: u64 = env::var("POSTWARDEN_QUEUE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    assert!(
        rounds >= 4,
        "POSTWARDEN_QUEUE_KILL_ROUNDS must be at least 4"
    );
    let only: Vec<String> = env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for s in Scenario::ALL {
        if !only.is_empty() && !only.iter().any(|o| s.name().contains(o.as_str())) {
            continue;
        }
        let totals = scenario(s, rounds);
        // Not vacuous: the children committed work, and the variants did what they test.
        assert!(
            totals.committed > 0,
            "{}: nothing committed: {totals:?}",
            s.name()
        );
        match s {
            Scenario::Push => {}
            Scenario::Ack => assert!(totals.acks > 0, "ack: no ack: {totals:?}"),
            Scenario::Shed => assert!(
                totals.merged > 0 && totals.dropped > 0,
                "shed: nothing shed: {totals:?}"
            ),
        }
        println!(
            "crash {}: {rounds} rounds killed ({} before ready), {} items committed, {} acks, \
             {} merged, {} dropped: ok",
            s.name(),
            totals.killed_before_ready,
            totals.committed,
            totals.acks,
            totals.merged,
            totals.dropped
        );
    }
}
