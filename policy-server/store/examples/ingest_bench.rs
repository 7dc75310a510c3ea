//! How fast the store ingests report batches, on SQLite and on PostgreSQL (a throwaway
//! cluster): `cargo run --release -p postwarden-server-store --example ingest_bench
//! [-- DEVICES BATCHES_PER_DEVICE FINDINGS_PER_REPORT CONCURRENCY]`.
//!
//! Each batch is what an agent posts after a run: one report with its findings plus a few
//! drift events, for one device; `CONCURRENCY` tasks post batches at once (as HTTP handlers
//! would). Prints findings stored per second and the batch latency. This measures the store
//! alone; the server's benchmark (`postwarden-loadgen`) measures the whole path.

use std::time::{Duration, Instant};

use postwarden_server_store::{
    Audit, EventItem, FindingRow, IngestItem, IngestKind, NewDevice, NewEnrollmentToken,
    NewProfile, Store,
};

const NOW: i64 = 1_764_000_000_000;

fn audit() -> Audit<'static> {
    Audit {
        actor: "bench",
        source: "local",
        action: "bench",
        target: "",
        detail: serde_json::Value::Null,
        at_ms: NOW,
    }
}

fn batch(device: usize, n: usize, findings: usize) -> Vec<IngestItem> {
    let rows = (0..findings)
        .map(|i| FindingRow {
            control: format!("control.{i:03}"),
            client: "thunderbird".into(),
            scope: "/home/alice/.thunderbird/abcd.default-release".into(),
            target: format!("account{}", i % 4),
            setting: Some(format!("mail.server.server{}.check_new_mail", i % 4)),
            status: if i % 10 == 0 { "drifted" } else { "compliant" }.into(),
            expected: "true".into(),
            actual: if i % 10 == 0 { "false" } else { "true" }.into(),
            previous: None,
            locked: Some(true),
            reason: None,
            note: Some("set by policies.json".into()),
            overridden_by: None,
        })
        .collect();
    let at_ms = NOW + n as i64;
    let mut items = vec![IngestItem {
        id: format!("{device:06}-{n:06}-r"),
        at_ms,
        kind: IngestKind::Report {
            user: "alice".into(),
            report_json: format!(
                "{{\"schema\":\"postwarden.report/v1\",\"n\":{n},\"pad\":\"{}\"}}",
                "x".repeat(findings * 200)
            ),
            profile_id: "p".into(),
            profile_version: 1,
            compliant: false,
            findings: rows,
        },
    }];
    items.extend((0..3).map(|e| IngestItem {
        id: format!("{device:06}-{n:06}-e{e}"),
        at_ms,
        kind: IngestKind::Event(EventItem {
            control: "control.000".into(),
            client: "thunderbird".into(),
            user: "alice".into(),
            scope: "s".into(),
            target: "t".into(),
            setting: None,
            old: "false".into(),
            new: "true".into(),
            repaired: true,
            status: "repaired".into(),
            notified: Some(true),
            contested: false,
            changed_by: None,
            note: None,
            merged: 0,
            detected_ms: None,
        }),
    }));
    items
}

async fn run(name: &str, url: &str, devices: usize, batches: usize, findings: usize, tasks: usize) {
    let store = Store::connect(url, tasks as u32 + 2).await.unwrap();
    store.migrate().await.unwrap();
    store
        .put_profile(
            &NewProfile {
                id: "p",
                version: 1,
                title: "P",
                sha256: "aa",
                toml: "",
            },
            &audit(),
        )
        .await
        .unwrap();
    store.put_group("g", "p", 1, &audit()).await.unwrap();
    store
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr",
                hash: "h",
                group: "g",
                uses: devices as i64,
                expires_ms: i64::MAX,
            },
            &audit(),
        )
        .await
        .unwrap();
    for d in 0..devices {
        let (id, cred) = (format!("dev_{d:026}"), format!("cred{d}"));
        store
            .enroll(
                "h",
                &NewDevice {
                    id: &id,
                    credential_hash: &cred,
                    hostname: "h",
                    os: "linux",
                    agent_version: "1",
                    users: &["alice".into()],
                },
                NOW,
            )
            .await
            .unwrap();
    }
    // Batches are built before the clock starts: the HTTP layer's parsing is not measured.
    let work: Vec<Vec<(String, Vec<IngestItem>)>> = (0..tasks)
        .map(|t| {
            (0..batches)
                .flat_map(|n| {
                    (t..devices)
                        .step_by(tasks)
                        .map(move |d| (format!("dev_{d:026}"), batch(d, n, findings)))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let handles: Vec<_> = work
        .into_iter()
        .map(|mine| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine.len());
                for (device, items) in mine {
                    let t = Instant::now();
                    let done = store.ingest(&device, &items, NOW).await.unwrap();
                    assert_eq!(done.accepted as usize, items.len());
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let total_findings = latencies.len() * findings;
    println!(
        "{name:10} {} batches × {findings} findings, {tasks} at once: {:.0} findings/s, \
         {:.0} batches/s, latency p50 {:.1} ms, p99 {:.1} ms; this process's CPU: {:.1} µs \
         per finding",
        latencies.len(),
        total_findings as f64 / elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        cpu * 1e6 / total_findings as f64,
    );
}

/// User + system CPU time of this process so far (Linux), so that numbers measured while the
/// machine is busy can still be compared; PostgreSQL's own CPU is not included.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second).
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("numbers: DEVICES BATCHES FINDINGS CONCURRENCY")
        })
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (devices, batches, findings, tasks) = (arg(0, 200), arg(1, 5), arg(2, 100), arg(3, 8));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    run("sqlite", &sqlite, devices, batches, findings, tasks).await;
    if std::env::var_os("ONLY_SQLITE").is_some() {
        return;
    }
    let pg = postwarden_test_support::pg::Cluster::start();
    run(
        "postgres",
        &pg.database(),
        devices,
        batches,
        findings,
        tasks,
    )
    .await;
}
