//! How long the registry watcher takes to report a change: ROUNDS times (default 200), another
//! thread sets a value through `Registry::set` (`RegSetValueExW`) and we wait for the watcher's
//! `Change`. The latency is from just before the `set` call to the `Change` arriving here, so it
//! includes the write itself, the notification, the re-arming, re-reading the subtree and the
//! channel.
//!
//! Arguments: `[ROUNDS] [KEYS] [VALUES]` (default 200 8 8): the watched subtree also holds KEYS
//! other keys with VALUES values each, which every change re-reads.
//!
//! Windows only; under Wine: `bash scripts/windows.sh bench [ROUNDS] [KEYS] [VALUES]`.

#[cfg(not(windows))]
fn main() {
    println!("watch_latency measures the Windows registry watcher and needs Windows (or Wine: bash scripts/windows.sh bench)");
}

#[cfg(windows)]
fn main() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use postwarden_registry::windows::{Watcher, WinRegistry};
    use postwarden_registry::{KeyPath, RegValue, Registry, Root};

    let arg = |i: usize, default: u32| match std::env::args().nth(i) {
        Some(n) => n
            .parse::<u32>()
            .expect("arguments: [ROUNDS] [KEYS] [VALUES]"),
        None => default,
    };
    let rounds = arg(1, 200);
    let other_keys = arg(2, 8);
    let values_per_key = arg(3, 8);
    let root = KeyPath::new(Root::CurrentUser, r"Software\PostwardenTest\watch_latency");
    let key = root.join(r"Profiles\Outlook\0001");
    let _ = windows_registry::CURRENT_USER.remove_tree(&root.path);
    let mut registry = WinRegistry::new();
    registry.set(&key, "round", &RegValue::Dword(0)).unwrap();
    // Every change re-reads the whole subtree: KEYS other keys with VALUES values each (like
    // the other accounts of an Outlook profile).
    for i in 0..other_keys {
        let sibling = root.join(&format!(r"Profiles\Outlook\{i:04X}-other"));
        for v in 0..values_per_key {
            registry
                .set(
                    &sibling,
                    &format!("value {v}"),
                    &RegValue::binary_text("x@example.org"),
                )
                .unwrap();
        }
    }

    let (watcher, changes) = Watcher::spawn(vec![root.clone()]).unwrap();
    let (go_tx, go_rx) = mpsc::channel::<u32>();
    let (sent_tx, sent_rx) = mpsc::channel::<(Instant, Duration)>();
    let writer_key = key.clone();
    let writer = std::thread::spawn(move || {
        let mut registry = WinRegistry::new();
        for round in go_rx {
            let start = Instant::now();
            registry
                .set(&writer_key, "round", &RegValue::Dword(round))
                .unwrap();
            sent_tx.send((start, start.elapsed())).unwrap();
        }
    });

    println!(
        "{rounds} rounds; the watched subtree has {} keys and {} values",
        4 + other_keys,
        1 + other_keys * values_per_key
    );
    let mut latencies = Vec::with_capacity(rounds as usize);
    let mut set_times = Vec::with_capacity(rounds as usize);
    for round in 1..=rounds {
        go_tx.send(round).unwrap();
        let change = changes
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("round {round}: no change within 5 s ({e})"));
        let arrived = Instant::now();
        let (start, set_took) = sent_rx.recv().unwrap();
        assert!(change.keys.contains(&key), "round {round}: {change:?}");
        latencies.push(arrived - start);
        set_times.push(set_took);
        // Anything left over (there should be nothing) would skew the next round.
        while changes.try_recv().is_ok() {}
    }
    drop(go_tx);
    writer.join().unwrap();
    drop(watcher);
    let _ = windows_registry::CURRENT_USER.remove_tree(&root.path);

    let report = |name: &str, samples: &mut Vec<Duration>| {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_micros()
        };
        println!(
            "{name}: n={} min={}us p50={}us p90={}us p99={}us max={}us",
            samples.len(),
            samples[0].as_micros(),
            at(0.50),
            at(0.90),
            at(0.99),
            samples[samples.len() - 1].as_micros()
        );
    };
    report("set -> Change (watcher latency)", &mut latencies);
    report("Registry::set alone", &mut set_times);
}
