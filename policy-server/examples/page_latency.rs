//! How long the dashboard's pages and the audit report take on a running server (issue 12,
//! section 5): `cargo run --release -p postwarden-server --example page_latency -- URL PIN
//! ADMIN_TOKEN [REQUESTS] [PATH…]`.
//!
//! It logs in through the login form like a browser (nonce cookie, form, session cookie), then
//! requests each path REQUESTS times one after another (after two warm-up requests) and prints
//! p50, p95 and the maximum of the whole request (TLS connection kept alive, body read to the
//! end). With no PATH it measures the fleet overview, a control page, the first and a later
//! page of the device list, a device search, and the audit report as HTML and as PDF.
//! docs/benchmarks.md has the seeded database it was run against and the numbers.

use std::time::{Duration, Instant};

use postwarden_transport::Trust;

const DEFAULT_PATHS: &[&str] = &[
    "/",
    "/controls/mail-check-interval",
    "/devices",
    "/devices?page=100",
    "/devices?q=dev_00000000000000000000000777",
    "/events",
    "/reports/audit",
    "/reports/audit?format=pdf",
];

fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let rest = &html[html.find(&marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(pin), Some(token)) = (args.first(), args.get(1), args.get(2)) else {
        anyhow::bail!("usage: page_latency URL PIN ADMIN_TOKEN [REQUESTS] [PATH…]");
    };
    let requests: usize = args.get(3).map_or(Ok(30), |n| n.parse())?;
    let paths: Vec<String> = if args.len() > 4 {
        args[4..].to_vec()
    } else {
        DEFAULT_PATHS.iter().map(|p| (*p).to_owned()).collect()
    };
    // Redirects are not followed: the session cookie comes with the login's 303.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(postwarden_transport::tls_config(&Trust::Pins(vec![
            pin.clone()
        ]))?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()?;

    let form = client.get(format!("{url}/login")).send().await?;
    let nonce_cookie = cookie(&form, "__Host-postwarden-login")
        .ok_or_else(|| anyhow::anyhow!("the login page set no nonce cookie"))?;
    let nonce = hidden(&form.text().await?, "csrf")
        .ok_or_else(|| anyhow::anyhow!("the login page has no csrf field"))?;
    let login = client
        .post(format!("{url}/login"))
        .header("cookie", nonce_cookie)
        .form(&[
            ("token", token.as_str()),
            ("csrf", nonce.as_str()),
            ("next", "/"),
        ])
        .send()
        .await?;
    let session = cookie(&login, "__Host-postwarden")
        .ok_or_else(|| anyhow::anyhow!("login refused: {}", login.status()))?;

    println!("| page | p50 ms | p95 ms | max ms | bytes |");
    println!("| --- | --- | --- | --- | --- |");
    for path in &paths {
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for i in 0..requests + 2 {
            let started = Instant::now();
            let r = client
                .get(format!("{url}{path}"))
                .header("cookie", &session)
                .send()
                .await?;
            let status = r.status();
            let body = r.bytes().await?;
            let took = started.elapsed();
            anyhow::ensure!(status.is_success(), "{path}: {status}");
            bytes = body.len();
            if i >= 2 {
                times.push(took);
            }
        }
        times.sort();
        println!(
            "| `{path}` | {} | {} | {} | {bytes} |",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 95.0)),
            ms(*times.last().expect("at least one request"))
        );
    }
    Ok(())
}
