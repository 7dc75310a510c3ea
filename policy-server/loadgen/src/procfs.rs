//! CPU time and memory of the measured processes, from Linux's `/proc` (proc(5)).
//!
//! `/proc/PID/stat` gives user and system CPU time in clock ticks (`utime`, `stime`, fields 14
//! and 15) and the parent's pid (field 4); `/proc/PID/status` gives the resident set size
//! (`VmRSS`) and its peak (`VmHWM`) in KiB. The parsing is pure and tested; reading is a thin
//! layer over it.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state (3), ppid (4), … utime (14), stime (15).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
    })
}

/// What `/proc/PID/status` says about a process's memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// `VmHWM`: the peak resident set size.
    pub peak_rss_kib: u64,
    /// `VmRSS`: the resident set size now.
    pub rss_kib: u64,
}

/// Parses the text of `/proc/PID/status` (lines such as `VmHWM:\t  10240 kB`). A kernel
/// thread has neither line: zero.
pub fn parse_status(text: &str) -> Memory {
    let mut memory = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kib = || {
            value
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match key {
            "VmHWM" => memory.peak_rss_kib = kib(),
            "VmRSS" => memory.rss_kib = kib(),
            _ => {}
        }
    }
    memory
}

/// A process's CPU ticks and memory, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub cpu_ticks: u64,
    pub memory: Memory,
}

/// Reads one process.
pub fn sample(pid: u32) -> Result<Sample> {
    sample_dir(&Path::new("/proc").join(pid.to_string()))
}

/// Reads this process.
pub fn sample_self() -> Result<Sample> {
    sample_dir(Path::new("/proc/self"))
}

fn sample_dir(dir: &Path) -> Result<Sample> {
    let stat_path = dir.join("stat");
    let stat = fs::read_to_string(&stat_path)
        .with_context(|| format!("reading {}", stat_path.display()))?;
    let Some(stat) = parse_stat(&stat) else {
        bail!("{}: not the format proc(5) describes", stat_path.display());
    };
    let status_path = dir.join("status");
    let status = fs::read_to_string(&status_path)
        .with_context(|| format!("reading {}", status_path.display()))?;
    Ok(Sample {
        cpu_ticks: stat.cpu_ticks,
        memory: parse_status(&status),
    })
}

/// A process and all its direct children (PostgreSQL's postmaster and its backends), summed:
/// CPU ticks and resident memory. Processes that end between the directory listing and the
/// read are skipped.
pub fn sample_tree(root: u32) -> Result<Sample> {
    let mut total = sample(root).with_context(|| format!("process {root}"))?;
    total.memory.peak_rss_kib = 0;
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == root {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parse_stat(&text).is_some_and(|s| s.ppid == root) {
            if let Ok(child) = sample(pid) {
                total.cpu_ticks += child.cpu_ticks;
                // Shared memory (PostgreSQL's buffers) is counted once per backend that touched
                // it, so this overstates; it is an upper bound.
                total.memory.rss_kib += child.memory.rss_kib;
            }
        }
    }
    Ok(total)
}

/// The whole machine's CPU time from the first line of `/proc/stat`, in clock ticks: busy
/// (everything but idle and iowait, steal included) and all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
}

/// Parses the `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq softirq
/// steal guest guest_nice` (guest time is already inside user and nice, so it is not added).
pub fn parse_machine(text: &str) -> Option<MachineTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

/// Reads `/proc/stat`.
pub fn sample_machine() -> Result<MachineTicks> {
    let text = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine(&text).context("/proc/stat: no `cpu` line as proc(5) describes")
}

/// Clock ticks per second (`getconf CLK_TCK`; Linux's `USER_HZ`, 100 on every common build).
pub fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (postwarden-serv) S 1 4242 4242 0 -1 4194560 2515 0 0 0 \
                    1234 567 0 0 20 0 3 0 123456 123456789 4321 18446744073709551615\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                ppid: 1,
                cpu_ticks: 1801
            })
        );
        // A name with spaces and parentheses does not shift the fields.
        let odd = "77 (a) b (c)) R 9 77 77 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 6 7\n";
        assert_eq!(
            parse_stat(odd),
            Some(Stat {
                ppid: 9,
                cpu_ticks: 30
            })
        );
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_the_peak_and_current_rss() {
        let text = "Name:\tpostwarden-serv\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\n\
                    VmRSS:\t   40960 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Memory {
                peak_rss_kib: 51200,
                rss_kib: 40960
            }
        );
        assert_eq!(parse_status("Name:\tkthreadd\n"), Memory::default());
    }

    #[test]
    fn the_machine_line_sums_busy_and_idle_time() {
        let text = "cpu  100 5 50 1000 20 3 2 10 7 0\ncpu0 50 2 25 500 10 1 1 5 3 0\n";
        assert_eq!(
            parse_machine(text),
            Some(MachineTicks {
                busy: 170,
                total: 1190
            })
        );
        assert_eq!(parse_machine("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_machine("cpu  1 2 x 4 5\n"), None);
        let now = sample_machine().unwrap();
        assert!(now.total >= now.busy);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = sample_self().unwrap();
        assert!(me.memory.rss_kib > 0);
        assert!(me.memory.peak_rss_kib >= me.memory.rss_kib);
        assert!(ticks_per_second() > 0);
        let tree = sample_tree(std::process::id()).unwrap();
        assert!(tree.cpu_ticks >= me.cpu_ticks);
    }
}
