//! The measured part: C closed-loop workers, each with its own keep-alive connection, cycling
//! through the simulated agents until the deadline.
//!
//! A worker sends its next request as soon as the last one is answered, so the server is
//! always offered exactly C requests at a time: the run measures capacity (the most the server
//! answers), not latency at a given arrival rate. Answers that complete during the warm-up or
//! after the deadline are not counted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Client, StatusCode, Url};
use tokio::time::Instant;

use crate::setup::{Agent, Target};
use crate::stats::{Kind, Tally};
use crate::synth;
use postwarden_wire::v1::{BatchResponse, REPORTS_PATH};

/// What the simulated agents do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Conditional bundle fetches that must answer `304 Not Modified`.
    Fetch,
    /// Report batches of fresh items.
    Reports,
    /// 95 % fetches, 5 % report batches (the mix of Fleet's osquery-perf agents).
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fetch => "fetch",
            Scenario::Reports => "reports",
            Scenario::Mixed => "mixed",
        }
    }

    /// The `n`-th operation of the run. The mix is exact: every twentieth is a report.
    pub fn op(self, n: u64) -> Op {
        match self {
            Scenario::Fetch => Op::Fetch,
            Scenario::Reports => Op::Report,
            Scenario::Mixed if n % 20 == 19 => Op::Report,
            Scenario::Mixed => Op::Fetch,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Fetch,
    Report,
}

/// The HTTP version the workers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Http {
    /// HTTP/2 by ALPN, as the agent's client negotiates it: one connection per worker.
    H2,
    /// HTTP/1.1 keep-alive: one connection per worker.
    #[value(name = "http1.1")]
    Http11,
}

impl Http {
    pub fn name(self) -> &'static str {
        match self {
            Http::H2 => "h2",
            Http::Http11 => "http/1.1",
        }
    }
}

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client with its own connection pool, so each worker holds its own connection. HTTP/2 uses
/// the agent's own client (`postwarden_transport::client`); HTTP/1.1 the same TLS setup with
/// only `http/1.1` offered.
pub fn client(target: &Target, http: Http) -> Result<Client> {
    match http {
        Http::H2 => postwarden_transport::client(&target.trust(), REQUEST_TIMEOUT)
            .context("building the HTTPS client"),
        Http::Http11 => {
            let mut tls = postwarden_transport::tls_config(&target.trust())
                .context("building the TLS configuration")?;
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            Client::builder()
                .use_preconfigured_tls(tls)
                .http1_only()
                .connect_timeout(Duration::from_secs(10))
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("building the HTTPS client")
        }
    }
}

/// What every worker shares.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub agents: Vec<Agent>,
    pub bundle_url: Url,
    pub reports_url: Url,
    /// One report, serialized once; every batch item carries it.
    pub report_json: String,
    pub findings_per_report: usize,
    /// The users of every agent: one report per user and batch.
    pub users: Vec<String>,
    /// Answers completing before this are warm-up.
    pub measure_from: Instant,
    /// No request starts after this; answers after it are not counted.
    pub end: Instant,
    next_agent: AtomicU64,
    next_op: AtomicU64,
    last_at_ms: AtomicI64,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: &Target,
        scenario: Scenario,
        agents: Vec<Agent>,
        report_json: String,
        findings_per_report: usize,
        users: Vec<String>,
        measure_from: Instant,
        end: Instant,
    ) -> Result<Plan> {
        let base = Url::parse(&target.url).with_context(|| format!("{:?}", target.url))?;
        Ok(Plan {
            scenario,
            agents,
            bundle_url: base.join("/api/v1/bundle")?,
            reports_url: base.join(REPORTS_PATH)?,
            report_json,
            findings_per_report,
            users,
            measure_from,
            end,
            next_agent: AtomicU64::new(0),
            next_op: AtomicU64::new(0),
            last_at_ms: AtomicI64::new(0),
        })
    }

    fn next_agent(&self) -> &Agent {
        let n = self.next_agent.fetch_add(1, Ordering::Relaxed);
        &self.agents[(n % self.agents.len() as u64) as usize]
    }

    /// A fresh item time, strictly after every earlier one of the run.
    fn next_at_ms(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let previous = self
            .last_at_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(synth::next_at(last, now))
            })
            .expect("the closure always returns Some");
        synth::next_at(previous, now)
    }

    /// A batch with one fresh report per user, and its item count.
    fn batch(&self) -> (String, usize) {
        let items: Vec<synth::Item<'_>> = self
            .users
            .iter()
            .map(|user| synth::Item {
                id: uuid::Uuid::new_v4(),
                at: synth::rfc3339_ms(self.next_at_ms()),
                user,
            })
            .collect();
        (synth::batch_body(&self.report_json, &items), items.len())
    }
}

/// What one request achieved.
enum Done {
    Fetch,
    Batch { items: u64 },
}

/// Runs one worker until the plan's end; its tally covers the measured window only.
pub async fn worker(plan: Arc<Plan>, client: Client) -> Tally {
    let mut tally = Tally::default();
    let content_type = HeaderValue::from_static("application/json");
    loop {
        let started = Instant::now();
        if started >= plan.end {
            break;
        }
        let agent = plan.next_agent();
        let op = plan
            .scenario
            .op(plan.next_op.fetch_add(1, Ordering::Relaxed));
        let outcome = match op {
            Op::Fetch => fetch(&plan, &client, agent).await,
            Op::Report => report(&plan, &client, agent, &content_type).await,
        };
        let done = Instant::now();
        if done < plan.measure_from || done > plan.end {
            continue;
        }
        let kind = match op {
            Op::Fetch => Kind::Fetch,
            Op::Report => Kind::Report,
        };
        tally.latency(kind, done - started);
        match outcome {
            Ok(Done::Fetch) => tally.fetches += 1,
            Ok(Done::Batch { items }) => {
                tally.batches += 1;
                tally.reports += items;
                tally.findings += items * plan.findings_per_report as u64;
            }
            Err(what) => tally.error(what),
        }
    }
    tally
}

async fn fetch(plan: &Plan, client: &Client, agent: &Agent) -> Result<Done, String> {
    let response = client
        .get(plan.bundle_url.clone())
        .header(AUTHORIZATION, agent.authorization.clone())
        .header(IF_NONE_MATCH, agent.etag.clone())
        .send()
        .await
        .map_err(|e| format!("fetch: {}", describe(&e)))?;
    if response.status() == StatusCode::NOT_MODIFIED {
        return Ok(Done::Fetch);
    }
    Err(unexpected("fetch", response).await)
}

async fn report(
    plan: &Plan,
    client: &Client,
    agent: &Agent,
    content_type: &HeaderValue,
) -> Result<Done, String> {
    let (body, items) = plan.batch();
    let response = client
        .post(plan.reports_url.clone())
        .header(AUTHORIZATION, agent.authorization.clone())
        .header(CONTENT_TYPE, content_type.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("report: {}", describe(&e)))?;
    if response.status() != StatusCode::OK {
        return Err(unexpected("report", response).await);
    }
    let answer: BatchResponse = response
        .json()
        .await
        .map_err(|e| format!("report: unreadable answer: {}", describe(&e)))?;
    let items = items as u64;
    if answer.accepted != items || answer.duplicates != 0 {
        return Err(format!(
            "report: {} of {items} accepted, {} duplicates",
            answer.accepted, answer.duplicates
        ));
    }
    Ok(Done::Batch { items })
}

/// `what: STATUS: the start of the body`.
async fn unexpected(what: &str, response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let mut end = body.len().min(160);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{what}: {status}: {}", &body[..end])
}

/// A reqwest error with its causes (reqwest's own message is often just "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixed_scenario_is_exactly_five_percent_reports() {
        let reports = (0..10_000u64)
            .filter(|&n| Scenario::Mixed.op(n) == Op::Report)
            .count();
        assert_eq!(reports, 500);
        assert!((0..100).all(|n| Scenario::Fetch.op(n) == Op::Fetch));
        assert!((0..100).all(|n| Scenario::Reports.op(n) == Op::Report));
    }

    #[test]
    fn batches_have_fresh_ids_and_increasing_times() {
        let target = Target {
            url: "https://127.0.0.1:1".into(),
            pin_sha256: String::new(),
        };
        let now = Instant::now();
        let plan = Plan::new(
            &target,
            Scenario::Reports,
            crate::setup::fake_agents(1).unwrap(),
            "{}".into(),
            0,
            synth::users(2),
            now,
            now,
        )
        .unwrap();
        assert_eq!(
            plan.bundle_url.as_str(),
            "https://127.0.0.1:1/api/v1/bundle"
        );
        assert_eq!(
            plan.reports_url.as_str(),
            "https://127.0.0.1:1/api/v1/reports"
        );
        let (a, n) = plan.batch();
        let (b, _) = plan.batch();
        assert_eq!(n, 2);
        let parse = |body: &str| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap().to_owned(),
                        i["at"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let all: Vec<(String, String)> = parse(&a).into_iter().chain(parse(&b)).collect();
        let ids: std::collections::BTreeSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids.len(), 4);
        let rfc3339 = time::format_description::well_known::Rfc3339;
        let times: Vec<time::OffsetDateTime> = all
            .iter()
            .map(|(_, at)| time::OffsetDateTime::parse(at, &rfc3339).unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
}
