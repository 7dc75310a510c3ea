//! What a run counted, and the rates and latencies derived from it.
//!
//! Latencies are the time from sending a request to having its whole answer, per request, in
//! microseconds. The workers run a closed loop (each sends its next request when the last one
//! is answered), so a slow answer delays the requests behind it instead of queueing them: the
//! percentiles describe the server at the throughput it reached, not at a fixed offered rate
//! (coordinated omission). Throughput is the figure to read; see `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency the histogram holds (longer ones are clamped to it): one minute.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How many distinct error descriptions a worker keeps (their counts are always exact).
const MAX_ERROR_KINDS: usize = 16;

/// What a request was, for its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fetch,
    Report,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// One worker's counts; workers' tallies are merged at the end.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies of bundle fetches, in microseconds, errors included.
    pub fetch_us: Histogram<u64>,
    /// Latencies of report batches, in microseconds, errors included.
    pub report_us: Histogram<u64>,
    /// Conditional bundle fetches answered `304`.
    pub fetches: u64,
    /// Report batches answered `200` with every item accepted.
    pub batches: u64,
    /// Report items the server accepted.
    pub reports: u64,
    /// Findings inside the accepted reports.
    pub findings: u64,
    /// Requests that failed: an unexpected status, a wrong answer, or no answer.
    pub errors: u64,
    /// A description of each kind of error, with its count.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            fetch_us: histogram(),
            report_us: histogram(),
            fetches: 0,
            batches: 0,
            reports: 0,
            findings: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
        }
    }
}

impl Tally {
    pub fn latency(&mut self, kind: Kind, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let histogram = match kind {
            Kind::Fetch => &mut self.fetch_us,
            Kind::Report => &mut self.report_us,
        };
        histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    pub fn error(&mut self, what: String) {
        self.errors += 1;
        if let Some(n) = self.error_kinds.get_mut(&what) {
            *n += 1;
        } else if self.error_kinds.len() < MAX_ERROR_KINDS {
            self.error_kinds.insert(what, 1);
        } else {
            *self
                .error_kinds
                .entry("(other errors)".to_owned())
                .or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.fetch_us
            .add(&other.fetch_us)
            .expect("histograms of equal bounds add");
        self.report_us
            .add(&other.report_us)
            .expect("histograms of equal bounds add");
        self.fetches += other.fetches;
        self.batches += other.batches;
        self.reports += other.reports;
        self.findings += other.findings;
        self.errors += other.errors;
        for (what, n) in &other.error_kinds {
            *self.error_kinds.entry(what.clone()).or_default() += n;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// Rates over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Every request answered in the window, errors included.
    pub requests: u64,
    pub requests_per_s: f64,
    pub fetches: u64,
    pub fetches_per_s: f64,
    pub batches: u64,
    pub reports: u64,
    pub findings: u64,
    pub findings_per_s: f64,
    pub errors: u64,
    /// Every request.
    pub latency: Latency,
    /// Bundle fetches only (absent when there were none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_latency: Option<Latency>,
    /// Report batches only (absent when there were none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_latency: Option<Latency>,
}

impl Rates {
    pub fn of(t: &Tally, window: Duration) -> Rates {
        let secs = window.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut all = t.fetch_us.clone();
        all.add(&t.report_us)
            .expect("histograms of equal bounds add");
        let requests = all.len();
        let of = |h: &Histogram<u64>| (!h.is_empty()).then(|| Latency::of(h));
        Rates {
            requests,
            requests_per_s: per_s(requests),
            fetches: t.fetches,
            fetches_per_s: per_s(t.fetches),
            batches: t.batches,
            reports: t.reports,
            findings: t.findings,
            findings_per_s: per_s(t.findings),
            errors: t.errors,
            latency: Latency::of(&all),
            fetch_latency: of(&t.fetch_us),
            report_latency: of(&t.report_us),
        }
    }
}

/// CPU and memory of a process (or a process tree) over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU seconds (user + system) spent in the window.
    pub cpu_s: f64,
    /// `cpu_s` divided by the window: 1.0 is one core busy all the time.
    pub cores: f64,
    /// Peak resident set size (`VmHWM`) at the end, in MiB; absent for a process tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Resident set size (`VmRSS`, summed over a tree) at the end, in MiB.
    pub rss_mib: f64,
}

impl Usage {
    pub fn between(
        before_ticks: u64,
        after_ticks: u64,
        ticks_per_s: u64,
        window: Duration,
        peak_rss_kib: Option<u64>,
        rss_kib: u64,
    ) -> Usage {
        let cpu_s = after_ticks.saturating_sub(before_ticks) as f64 / ticks_per_s.max(1) as f64;
        let secs = window.as_secs_f64();
        Usage {
            cpu_s,
            cores: if secs > 0.0 { cpu_s / secs } else { 0.0 },
            peak_rss_mib: peak_rss_kib.map(|k| k as f64 / 1024.0),
            rss_mib: rss_kib as f64 / 1024.0,
        }
    }
}

/// Everything a run measured, as printed and written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// A free label for tables (`sqlite`, `postgres`, `ceiling`).
    pub label: String,
    pub scenario: String,
    pub url: String,
    pub http: String,
    pub agents: usize,
    pub connections: usize,
    pub threads: usize,
    pub findings_per_report: usize,
    pub reports_per_batch: usize,
    pub warmup_s: f64,
    pub window_s: f64,
    #[serde(flatten)]
    pub rates: Rates,
    /// Errors by kind (`fetch: 401 Unauthorized`, …).
    pub error_kinds: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Usage>,
    pub loadgen: Usage,
    /// CPU the rest of the machine used in the window (all busy CPU minus the server, the
    /// database and the generator), in cores: neighbours that disturbed the run.
    #[serde(default)]
    pub others_cores: f64,
    /// Cores of the machine.
    #[serde(default)]
    pub cores: usize,
}

impl Summary {
    /// The human-readable lines `run` prints.
    pub fn render(&self) -> String {
        let r = &self.rates;
        let l = &r.latency;
        let mut out = format!(
            "{label} {scenario}: {agents} agents, {conns} connections ({http}), {threads} \
             generator thread(s), {window:.1} s measured after {warmup:.1} s warm-up\n\
             requests   {req} ({rps:.0}/s), errors {errors}\n\
             fetches    {fetches} ({fps:.0}/s, 304)\n\
             reports    {reports} in {batches} batches, {findings} findings ({fips:.0} findings/s)\n\
             latency    p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, mean {mean:.2} ms (all)\n",
            label = self.label,
            scenario = self.scenario,
            agents = self.agents,
            conns = self.connections,
            http = self.http,
            threads = self.threads,
            window = self.window_s,
            warmup = self.warmup_s,
            req = r.requests,
            rps = r.requests_per_s,
            errors = r.errors,
            fetches = r.fetches,
            fps = r.fetches_per_s,
            reports = r.reports,
            batches = r.batches,
            findings = r.findings,
            fips = r.findings_per_s,
            p50 = l.p50_ms,
            p90 = l.p90_ms,
            p99 = l.p99_ms,
            max = l.max_ms,
            mean = l.mean_ms,
        );
        for (what, latency) in [("fetch", &r.fetch_latency), ("report", &r.report_latency)] {
            if let (Some(l), true) = (
                latency,
                r.fetch_latency.is_some() && r.report_latency.is_some(),
            ) {
                out.push_str(&format!(
                    "           p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({what})\n",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                ));
            }
        }
        for (who, usage) in [
            ("server", self.server.as_ref()),
            ("database", self.database.as_ref()),
            ("loadgen", Some(&self.loadgen)),
        ] {
            if let Some(u) = usage {
                out.push_str(&format!(
                    "{who:<10} CPU {:.1} s ({:.2} cores), RSS {:.0} MiB",
                    u.cpu_s, u.cores, u.rss_mib
                ));
                if let Some(peak) = u.peak_rss_mib {
                    out.push_str(&format!(", peak RSS {peak:.0} MiB"));
                }
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "others     {:.2} of {} cores busy with other processes\n",
            self.others_cores, self.cores
        ));
        for (what, n) in &self.error_kinds {
            out.push_str(&format!("error      {n} × {what}\n"));
        }
        out
    }
}

/// `p50 / p99` of a table cell.
fn percentiles(latency: Option<&Latency>) -> String {
    latency.map_or("–".to_owned(), |l| {
        format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms)
    })
}

/// The ceiling run to compare `run` with: the fetch run of the ceiling with the same
/// connections and HTTP version, else the ceiling's best fetch run.
fn ceiling_for<'a>(run: &Summary, ceilings: &'a [Summary]) -> Option<&'a Summary> {
    let fetches = ceilings.iter().filter(|c| c.scenario == "fetch");
    fetches
        .clone()
        .find(|c| c.connections == run.connections && c.http == run.http)
        .or_else(|| fetches.max_by(|a, b| a.rates.fetches_per_s.total_cmp(&b.rates.fetches_per_s)))
}

/// A Markdown table of several runs; fetch rows also show their fetches/s as a share of the
/// ceiling's (see [`ceiling_for`]).
pub fn table(runs: &[Summary], ceilings: &[Summary]) -> String {
    let mut out = String::from(
        "| server | scenario | conns | requests/s | fetches/s | findings/s | fetch p50 / p99 ms | \
         report p50 / p99 ms | errors | server CPU | DB CPU | generator CPU | others' CPU | \
         server peak RSS MiB | of ceiling |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for s in runs {
        let r = &s.rates;
        let ratio = match ceiling_for(s, ceilings) {
            Some(c) if s.scenario == "fetch" && c.rates.fetches_per_s > 0.0 => {
                format!("{:.0} %", 100.0 * r.fetches_per_s / c.rates.fetches_per_s)
            }
            _ => "–".to_owned(),
        };
        let cores = |u: Option<&Usage>| u.map_or("–".to_owned(), |u| format!("{:.2}", u.cores));
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
            s.label,
            s.scenario,
            s.connections,
            r.requests_per_s,
            r.fetches_per_s,
            r.findings_per_s,
            percentiles(r.fetch_latency.as_ref()),
            percentiles(r.report_latency.as_ref()),
            r.errors,
            cores(s.server.as_ref()),
            cores(s.database.as_ref()),
            s.loadgen.cores,
            s.others_cores,
            s.server
                .and_then(|u| u.peak_rss_mib)
                .map_or("–".to_owned(), |m| format!("{m:.0}")),
            ratio,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(latencies_us: &[u64]) -> Tally {
        let mut t = Tally::default();
        for &us in latencies_us {
            t.latency(Kind::Fetch, Duration::from_micros(us));
        }
        t
    }

    #[test]
    fn rates_divide_by_the_window() {
        let mut t = tally(&[1000; 500]);
        t.fetches = 400;
        t.batches = 100;
        t.reports = 200;
        t.findings = 20_000;
        let r = Rates::of(&t, Duration::from_secs(4));
        assert_eq!(r.requests, 500);
        assert_eq!(r.requests_per_s, 125.0);
        assert_eq!(r.fetches_per_s, 100.0);
        assert_eq!(r.findings_per_s, 5000.0);
        assert_eq!(Rates::of(&t, Duration::ZERO).requests_per_s, 0.0);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        // 1..=1000 ms, one request each.
        let t = tally(&(1..=1000).map(|ms| ms * 1000).collect::<Vec<_>>());
        let l = Rates::of(&t, Duration::from_secs(1)).latency;
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(near(l.p50_ms, 500.0), "{l:?}");
        assert!(near(l.p90_ms, 900.0), "{l:?}");
        assert!(near(l.p99_ms, 990.0), "{l:?}");
        assert!(near(l.max_ms, 1000.0), "{l:?}");
        assert!(near(l.mean_ms, 500.5), "{l:?}");
        assert_eq!(
            Rates::of(&Tally::default(), Duration::from_secs(1))
                .latency
                .max_ms,
            0.0
        );
    }

    #[test]
    fn latencies_are_kept_per_kind_and_together() {
        let mut t = tally(&[1000, 1000, 1000]);
        t.latency(Kind::Report, Duration::from_millis(100));
        let r = Rates::of(&t, Duration::from_secs(1));
        assert_eq!(r.requests, 4);
        assert!(r.latency.max_ms >= 99.9);
        assert!(r.fetch_latency.unwrap().max_ms < 1.1);
        assert!(r.report_latency.unwrap().p50_ms >= 99.9);
        let only_fetches = Rates::of(&tally(&[1000]), Duration::from_secs(1));
        assert!(only_fetches.report_latency.is_none());
        let text = percentiles(only_fetches.fetch_latency.as_ref());
        assert_eq!(text, "1.00 / 1.00");
        assert_eq!(percentiles(None), "–");
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let t = tally(&[0, 3_600_000_000]);
        assert_eq!(t.fetch_us.len(), 2);
        assert!(t.fetch_us.max() >= MAX_LATENCY_US);
    }

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = tally(&[100, 200]);
        a.fetches = 2;
        a.error("fetch: 500".into());
        let mut b = tally(&[300]);
        b.findings = 100;
        b.error("fetch: 500".into());
        b.error("report: 413".into());
        a.merge(&b);
        assert_eq!(a.fetch_us.len(), 3);
        assert_eq!((a.fetches, a.findings, a.errors), (2, 100, 3));
        assert_eq!(a.error_kinds["fetch: 500"], 2);
        assert_eq!(a.error_kinds["report: 413"], 1);
    }

    #[test]
    fn error_kinds_are_bounded_but_counts_exact() {
        let mut t = Tally::default();
        for i in 0..100 {
            t.error(format!("kind {i}"));
        }
        assert_eq!(t.errors, 100);
        assert_eq!(t.error_kinds.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(t.error_kinds.values().sum::<u64>(), 100);
    }

    #[test]
    fn usage_is_cpu_seconds_over_the_window() {
        let u = Usage::between(1000, 1300, 100, Duration::from_secs(2), Some(2048), 1024);
        assert_eq!(u.cpu_s, 3.0);
        assert_eq!(u.cores, 1.5);
        assert_eq!(u.peak_rss_mib, Some(2.0));
        assert_eq!(u.rss_mib, 1.0);
        // A counter that went backwards (a process of the tree exited) is not negative.
        assert_eq!(
            Usage::between(10, 5, 100, Duration::from_secs(1), None, 0).cpu_s,
            0.0
        );
    }

    #[test]
    fn the_table_shows_the_ratio_to_the_ceiling_for_fetches_only() {
        let summary = |label: &str, scenario: &str, fetches: u64, connections: usize| {
            let mut t = tally(&[1000]);
            t.fetches = fetches;
            Summary {
                label: label.into(),
                scenario: scenario.into(),
                url: "https://127.0.0.1:1".into(),
                http: "h2".into(),
                agents: 10,
                connections,
                threads: 1,
                findings_per_report: 100,
                reports_per_batch: 1,
                warmup_s: 1.0,
                window_s: 1.0,
                rates: Rates::of(&t, Duration::from_secs(1)),
                error_kinds: BTreeMap::new(),
                server: None,
                database: None,
                loadgen: Usage::between(0, 0, 100, Duration::from_secs(1), None, 0),
                others_cores: 0.0,
                cores: 2,
            }
        };
        let ceilings = [
            summary("ceiling", "fetch", 10_000, 16),
            summary("ceiling", "fetch", 20_000, 64),
        ];
        let runs = [
            summary("sqlite", "fetch", 7_500, 16),
            summary("sqlite", "fetch", 5_000, 64),
            summary("sqlite", "fetch", 5_000, 32),
            summary("sqlite", "reports", 0, 16),
        ];
        let text = table(&runs, &ceilings);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[2].ends_with("| 75 % |"), "{}", lines[2]);
        assert!(lines[3].ends_with("| 25 % |"), "{}", lines[3]);
        // No ceiling at 32 connections: the best one.
        assert!(lines[4].ends_with("| 25 % |"), "{}", lines[4]);
        assert!(lines[5].ends_with("| – |"), "{}", lines[5]);
        assert!(table(&runs, &[]).lines().nth(2).unwrap().ends_with("| – |"));
        let json = serde_json::to_string(&runs[0]).unwrap();
        let back: Summary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, runs[0]);
    }
}
