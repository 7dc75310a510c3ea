//! The dashboard in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol, against the real server binary (SQLite) with a small fleet. It logs in, visits
//! every page, filters the device list, downloads a CSV, watches a page update live, logs out,
//! and fails on any console error. Screenshots of every page land in
//! `target/tmp/dashboard-screenshots/`.
//!
//! The session rules are tested without the browser too: cookie attributes, CSRF, wrong
//! tokens, idle expiry, and that a session cookie never authorises an API change.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{baseline_toml, baseline_v2_toml, csv_records, expect, Db, Server};
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Browser as Cdp, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const FAILING_HOST: &str = "ws-failing.example.org";
const GOOD_HOST: &str = "ws-good.example.org";

/// A report batch item for `user` from the baseline's controls: all compliant but `failing`.
fn report_item(user: &str, failing: &[&str], at: &str) -> Value {
    let profile = postwarden_test_support::baseline();
    let findings: Vec<Value> = profile
        .controls
        .iter()
        .map(|c| {
            let bad = failing.contains(&c.id.as_str());
            json!({
                "control": c.id.as_str(), "client": "thunderbird",
                "scope": format!("/home/{user}/.thunderbird/abc.default"), "target": "server1",
                "setting": format!("setting.{}", c.id.as_str()),
                "status": if bad { "drifted" } else { "compliant" },
                "expected": 30, "actual": if bad { 5 } else { 30 },
                "reason": if bad { Some("the user changed it") } else { None },
            })
        })
        .collect();
    let controls: Vec<Value> = profile
        .controls
        .iter()
        .map(|c| {
            json!({"id": c.id.as_str(), "title": c.title, "severity": c.severity.as_str(),
                   "reference": c.reference, "remediation": c.remediation})
        })
        .collect();
    json!({
        "id": uuid::Uuid::new_v4(), "at": at, "kind": "report", "user": user,
        "report": {
            "schema": "postwarden.report/v1", "run": "apply", "compliant": failing.is_empty(),
            "profile": {"id": profile.id.0, "version": profile.version.0, "title": profile.title},
            "generated_at": at, "controls": controls, "findings": findings,
        }
    })
}

fn event_item(user: &str, control: &str, at: &str, repaired: bool) -> Value {
    json!({
        "id": uuid::Uuid::new_v4(), "at": at, "kind": "event",
        "event": {
            "control": control, "client": "thunderbird", "user": user,
            "scope": format!("/home/{user}/.thunderbird/abc.default"), "target": "server1",
            "setting": "mail.server.server1.check_time", "old": 30, "new": 5,
            "repaired": repaired, "status": if repaired { "repaired" } else { "pending_restart" },
            "notified": true,
        }
    })
}

async fn post(server: &Server, credential: &str, items: Vec<Value>) {
    let r = server
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(credential)
        .json(&json!({"schema": "postwarden.report-batch/v1", "items": items}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
}

async fn enroll(server: &Server, token: &str, host: &str, os: &str) -> (String, String) {
    let r = server
        .request(Method::POST, "/api/v1/enroll")
        .json(
            &json!({"token": token, "hostname": host, "os": os, "agent_version": "0.1.0",
                      "users": ["alice"]}),
        )
        .send()
        .await
        .unwrap();
    let v = expect(r, StatusCode::CREATED).await;
    (
        v["device_id"].as_str().unwrap().to_owned(),
        v["credential"].as_str().unwrap().to_owned(),
    )
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A fleet of three: one failing mail-check-interval, one compliant, one never reported.
struct Fleet {
    failing: (String, String),
    good: (String, String),
}

async fn fleet(server: &Server) -> Fleet {
    server.upload(&baseline_toml(), StatusCode::CREATED).await;
    server
        .upload(&baseline_v2_toml(), StatusCode::CREATED)
        .await;
    server.put_group("office", "bsi-m5.57", 1).await;
    let token = server.enrollment_token("office", 3).await;
    let failing = enroll(server, &token, FAILING_HOST, "linux (Debian 12)").await;
    let good = enroll(server, &token, GOOD_HOST, "windows 11").await;
    enroll(server, &token, "ws-new.example.org", "macos 15").await;
    let earlier = (time::OffsetDateTime::now_utc() - time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    post(
        server,
        &failing.1,
        vec![
            report_item("alice", &[], &earlier),
            event_item("alice", "mail-check-interval", &now_rfc3339(), false),
            report_item("alice", &["mail-check-interval"], &now_rfc3339()),
        ],
    )
    .await;
    post(
        server,
        &good.1,
        vec![
            event_item("alice", "no-saved-passwords", &now_rfc3339(), true),
            report_item("alice", &[], &now_rfc3339()),
        ],
    )
    .await;
    Fleet { failing, good }
}

/// What the browser reported as errors: console errors, uncaught exceptions, failed loads.
type Errors = Arc<Mutex<Vec<String>>>;

fn watch_errors(tab: &Tab) -> Errors {
    let errors: Errors = Arc::default();
    let sink = errors.clone();
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let message = match event {
            Event::LogEntryAdded(e) => {
                let entry = &e.params.entry;
                (format!("{:?}", entry.level) == "Error")
                    .then(|| format!("log: {} ({:?})", entry.text, entry.url))
            }
            Event::RuntimeExceptionThrown(e) => {
                Some(format!("exception: {}", e.params.exception_details.text))
            }
            Event::RuntimeConsoleAPICalled(e) => (format!("{:?}", e.params.Type) == "Error")
                .then(|| format!("console.error: {:?}", e.params.args)),
            _ => None,
        };
        if let Some(m) = message {
            sink.lock().unwrap().push(m);
        }
    }))
    .unwrap();
    errors
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn shoot(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

fn visit(tab: &Tab, base: &str, path: &str) -> String {
    tab.navigate_to(&format!("{base}{path}"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.get_content().unwrap()
}

fn text_of(tab: &Tab, selector: &str) -> String {
    tab.wait_for_element(selector)
        .unwrap()
        .get_inner_text()
        .unwrap()
}

/// Waits until the tab's URL contains `part` (a click starts a navigation asynchronously).
fn wait_url(tab: &Tab, part: &str) {
    let started = Instant::now();
    while !tab.get_url().contains(part) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the browser did not reach a URL with {part:?}; it is at {}",
            tab.get_url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tab.wait_until_navigated().unwrap();
}

/// Waits up to `limit` for `check` on the page's text of `<main>`.
fn wait_text(tab: &Tab, limit: Duration, what: &str, check: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let text = text_of(tab, "main");
        if check(&text) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not show within {limit:?}; the page says:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn chromium(profile: &Path, pin: &str) -> Browser {
    let spki = format!(
        "--ignore-certificate-errors-spki-list={}",
        pin.trim_start_matches("sha256//")
    );
    let args: Vec<&OsStr> = vec![
        OsStr::new(&spki),
        OsStr::new("--no-first-run"),
        OsStr::new("--disable-dev-shm-usage"),
    ];
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from("/usr/bin/chromium")))
        .sandbox(false)
        .headless(true)
        .window_size(Some((1280, 1000)))
        .user_data_dir(Some(profile.to_owned()))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(args)
        .build()
        .unwrap();
    Browser::new(options).expect("Debian's chromium starts (scripts/install-test-deps.sh)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_headless_chromium() {
    let server = Arc::new(Server::start(Db::Sqlite));
    let fleet = fleet(&server).await;
    let (live_tx, live_rx) = std::sync::mpsc::channel::<()>();
    let (posted_tx, posted_rx) = std::sync::mpsc::channel::<()>();
    let browser_server = server.clone();
    let failing_id = fleet.failing.0.clone();
    let browser = tokio::task::spawn_blocking(move || {
        let server = browser_server;
        let base = server.url.clone();
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let browser = chromium(profile.path(), &server.pin);
        let tab = browser.new_tab().unwrap();
        tab.set_default_timeout(Duration::from_secs(20));
        let errors = watch_errors(&tab);

        // Not logged in: every page sends the browser to the login form, and back after it.
        visit(&tab, &base, "/devices?status=non_compliant");
        assert!(
            tab.get_url()
                .contains("/login?next=%2Fdevices%3Fstatus%3Dnon_compliant"),
            "expected the login page, got {}",
            tab.get_url()
        );
        shoot(&tab, "login");
        tab.wait_for_element("#token").unwrap().click().unwrap();
        tab.type_str("pwa_not-a-real-token").unwrap();
        tab.press_key("Enter").unwrap();
        wait_text(
            &tab,
            Duration::from_secs(20),
            "the refusal of a wrong token",
            |t| t.contains("That is not a live admin token."),
        );
        tab.wait_for_element("#token").unwrap().click().unwrap();
        tab.type_str(&server.admin).unwrap();
        tab.press_key("Enter").unwrap();
        // After login the browser goes where it wanted.
        wait_url(&tab, "/devices?status=non_compliant");
        // The filter already applied through the URL: only the failing device.
        let main = text_of(&tab, "main");
        assert!(main.contains(FAILING_HOST), "{main}");
        assert!(!main.contains(GOOD_HOST), "{main}");

        // Every page.
        let pages = [
            ("overview", "/".to_owned()),
            ("control", "/controls/mail-check-interval".to_owned()),
            ("devices", "/devices".to_owned()),
            ("device", format!("/devices/{failing_id}")),
            ("events", "/events".to_owned()),
            ("profiles", "/profiles".to_owned()),
            ("diff", "/profiles/bsi-m5.57/diff?from=1&to=2".to_owned()),
            ("rollouts", "/rollouts".to_owned()),
        ];
        for (name, path) in &pages {
            visit(&tab, &base, path);
            let title = text_of(&tab, "h1");
            assert!(!title.is_empty(), "{name}: a heading");
            shoot(&tab, name);
        }
        visit(&tab, &base, "/");
        tab.wait_for_element("figure.chart svg circle")
            .expect("today's point of the trend chart");
        let main = text_of(&tab, "main");
        for expected in [
            "Fleet compliance",
            "Devices\n3",
            "Not compliant\n1",
            "Not reported yet\n1",
            "Trend",
        ] {
            assert!(
                main.contains(expected),
                "overview lacks {expected:?}:\n{main}"
            );
        }
        visit(&tab, &base, "/controls/mail-check-interval");
        let main = text_of(&tab, "main");
        tab.wait_for_element("figure.chart svg polyline, figure.chart svg circle")
            .expect("the control's trend chart");
        for expected in [
            FAILING_HOST,
            "expected 30, found 5",
            "Remediation",
            "the user changed it",
            "Time to repair (last 30 days)",
        ] {
            assert!(
                main.contains(expected),
                "control page lacks {expected:?}:\n{main}"
            );
        }
        assert!(!main.contains(GOOD_HOST), "{main}");
        visit(&tab, &base, &format!("/devices/{failing_id}"));
        let main = text_of(&tab, "main");
        for expected in [
            "Drift timeline",
            "30 → 5",
            "✗ not repaired",
            "pending_restart",
        ] {
            assert!(
                main.contains(expected),
                "device page lacks {expected:?}:\n{main}"
            );
        }
        visit(&tab, &base, "/profiles/bsi-m5.57/diff?from=1&to=2");
        let main = text_of(&tab, "main");
        assert!(
            main.contains("mail-check-interval") && main.contains("changed"),
            "{main}"
        );

        // A filter through the form: status = compliant.
        visit(&tab, &base, "/devices");
        tab.wait_for_element("select[name=status]")
            .unwrap()
            .call_js_fn("function() { this.value = 'compliant'; }", vec![], false)
            .unwrap();
        tab.wait_for_element("form.filters button")
            .unwrap()
            .click()
            .unwrap();
        wait_url(&tab, "status=compliant");
        let main = text_of(&tab, "main");
        assert!(
            main.contains(GOOD_HOST) && !main.contains(FAILING_HOST),
            "{main}"
        );
        shoot(&tab, "devices-filtered");

        // Download the view's CSV.
        tab.call_method(Cdp::SetDownloadBehavior {
            behavior: Cdp::SetDownloadBehaviorBehaviorOption::Allow,
            browser_context_id: None,
            download_path: Some(downloads.path().to_string_lossy().into_owned()),
            events_enabled: None,
        })
        .unwrap();
        tab.wait_for_element("p.exports a[download]")
            .unwrap()
            .click()
            .unwrap();
        let file = downloads.path().join("devices.csv");
        let started = Instant::now();
        while !file.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no CSV downloaded: {:?}",
                std::fs::read_dir(downloads.path())
                    .unwrap()
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        let records = csv_records(&std::fs::read_to_string(&file).unwrap());
        assert_eq!(records.len(), 1, "the filtered view's CSV: {records:?}");
        assert_eq!(records[0]["hostname"], GOOD_HOST);
        assert_eq!(records[0]["status"], "compliant");

        // Live: the overview shows a new failure without a reload.
        visit(&tab, &base, "/");
        assert!(text_of(&tab, "main").contains("Not compliant\n1"));
        live_tx.send(()).unwrap();
        posted_rx.recv().unwrap();
        let took = wait_text(&tab, Duration::from_secs(60), "the new failure", |t| {
            t.contains("Not compliant\n2")
        });
        eprintln!("[dashboard] the overview showed the new report after {took:?}");
        assert!(
            tab.get_url().ends_with('/'),
            "no navigation: {}",
            tab.get_url()
        );
        shoot(&tab, "overview-live");

        // Log out: the session is gone.
        tab.wait_for_element("form.logout button")
            .unwrap()
            .click()
            .unwrap();
        wait_url(&tab, "/login");
        visit(&tab, &base, "/devices");
        assert!(
            tab.get_url().contains("/login"),
            "logged out: {}",
            tab.get_url()
        );

        let errors = errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    });
    // The live step: the good device now fails too.
    let (wait_tx, wait_rx) = (live_rx, posted_tx);
    let good = fleet.good.clone();
    let poster = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::task::spawn_blocking(move || wait_tx.recv())
                .await
                .unwrap()
                .unwrap();
            post(
                &server,
                &good.1,
                vec![report_item(
                    "alice",
                    &["no-saved-passwords"],
                    &now_rfc3339(),
                )],
            )
            .await;
            wait_rx.send(()).unwrap();
        })
    };
    let result = browser.await;
    poster.abort();
    if let Err(e) = result {
        panic!(
            "the browser session failed: {e}\nserver log:\n{}",
            server.log()
        );
    }
}

/// Logs in over plain HTTP(S) and returns the session cookie's `name=value`.
async fn login(server: &Server, client: &reqwest::Client) -> (String, reqwest::Response) {
    let form = client
        .get(format!("{}/login", server.url))
        .send()
        .await
        .unwrap();
    let nonce_cookie = set_cookie(&form, "__Host-postwarden-login").expect("a login nonce");
    let html = form.text().await.unwrap();
    let nonce = hidden(&html, "csrf");
    let r = client
        .post(format!("{}/login", server.url))
        .header("cookie", &nonce_cookie)
        .form(&[
            ("token", server.admin.as_str()),
            ("csrf", &nonce),
            ("next", "/devices"),
        ])
        .send()
        .await
        .unwrap();
    let session = set_cookie(&r, "__Host-postwarden").expect("a session cookie");
    (session, r)
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_strict_and_never_authorise_api_changes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start_with(Db::Sqlite, &["--session-idle", "3s"]);
    server.upload(&baseline_toml(), StatusCode::CREATED).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();

    // The cookie's attributes.
    let (session, r) = login(&server, &client).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/devices");
    let attributes = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-postwarden="))
        .unwrap();
    for a in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(a), "{attributes} lacks {a}");
    }
    let page = client
        .get(format!("{}/devices", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    page.text().await.unwrap();

    // A GET export with the session works; an API change with it does not.
    let export = client
        .get(format!("{}/export/csv/api/v1/devices", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("devices.csv"));
    let change = client
        .put(format!("{}/api/v1/groups/office", server.url))
        .header("cookie", &session)
        .json(&json!({"profile": "bsi-m5.57", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        change.status(),
        StatusCode::UNAUTHORIZED,
        "a cookie must not change anything"
    );

    // Logout without the CSRF token, or with another one, is refused; the session lives on.
    for form in [vec![], vec![("csrf", "x".repeat(43))]] {
        let r = client
            .post(format!("{}/logout", server.url))
            .header("cookie", &session)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::BAD_REQUEST,
            "{}",
            r.status()
        );
    }
    // A login form posted without its nonce cookie (cross-site) is refused.
    let r = client
        .post(format!("{}/login", server.url))
        .form(&[("token", server.admin.as_str()), ("csrf", &"n".repeat(43))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "__Host-postwarden").is_none());

    // Idle for longer than --session-idle: the session has ended.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = client
        .get(format!("{}/", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "an idle session ends");

    // Logout with the right token ends a session; the audit log has login and logout.
    let (session, _) = login(&server, &client).await;
    let r = client
        .post(format!("{}/logout", server.url))
        .header("cookie", &session)
        .form(&[("csrf", csrf_of_page(&server, &client, &session).await)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = client
        .get(format!("{}/", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a logged-out session ends"
    );
    let log = server.get_json("/api/v1/audit-log").await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"session.login") && actions.contains(&"session.logout"),
        "{actions:?}"
    );
    assert!(
        !server.log().contains(&server.admin),
        "the token never reaches the log"
    );
    assert!(
        !server.log().contains(session.split('=').nth(1).unwrap()),
        "nor the session id"
    );
}

async fn csrf_of_page(server: &Server, client: &reqwest::Client, session: &str) -> String {
    let html = client
        .get(format!("{}/profiles", server.url))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden(&html, "csrf")
}
