//! The audit report (issue 12, section 2) end to end against the real binary, on SQLite and on
//! PostgreSQL: devices enroll and report through the agent API, `GET /reports/audit` answers
//! HTML and PDF, the PDF is read back by an independent extractor (poppler's `pdftotext`) and
//! both carry the same sections, marks, figures, conclusion and evidence; a past moment
//! (`as_of`) shows the reports of that moment; bad requests are refused naming the field; and
//! `postwarden-server report audit` writes the same report offline from the same database.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{baseline_toml, expect, Db, Server};
use postwarden_profiles::report::{Client, Finding, Override, Report, RunKind, Status};
use postwarden_wire::v1::{BatchItem, BatchItemKind, ReportBatch, ReportBatchSchema};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

on_both!(the_audit_report_shows_the_fleet_as_html_and_pdf);

const ORG: &str = "Mustermann GmbH";
const BLOCK_REASON: &str =
    "Thunderbird has no setting or policy that blocks attachments by file type";

/// A report on the baseline for `user`: every control compliant, attachment blocking not
/// applicable (as on Thunderbird), and the given controls drifted or failed.
fn report(user: &str, drifted: &[&str], failed: &[&str]) -> Report {
    let profile = postwarden_test_support::baseline();
    let findings = profile
        .controls
        .iter()
        .map(|c| {
            let id = c.id.as_str();
            let status = if id == "blocked-attachment-types" {
                Status::NotApplicable
            } else if drifted.contains(&id) {
                Status::Drifted
            } else if failed.contains(&id) {
                Status::Failed
            } else {
                Status::Compliant
            };
            let bad = matches!(status, Status::Drifted | Status::Failed);
            let setting = match id {
                "no-saved-passwords" => "signon.rememberSignons".to_owned(),
                "mail-check-interval" => "mail.server.server1.check_time".to_owned(),
                "require-tls" => "mail.server.server2.socketType".to_owned(),
                other => format!("setting.{other}"),
            };
            Finding {
                control: id.to_owned(),
                client: Client::Thunderbird,
                scope: format!("/home/{user}/.thunderbird/k3x9qv2p.default"),
                target: "profile".into(),
                setting: Some(setting),
                status,
                expected: json!(false),
                actual: json!(bad),
                previous: None,
                locked: None,
                reason: match status {
                    Status::NotApplicable => Some(BLOCK_REASON.to_owned()),
                    Status::Drifted => Some("the user changed it".to_owned()),
                    _ => None,
                },
                note: None,
                overridden_by: (status == Status::Failed).then(|| Override {
                    layer: "AutoConfig".into(),
                    location: "/usr/lib/thunderbird/mozilla.cfg:3".into(),
                    evidence: "lockPref(\"mail.server.server1.check_time\", 5)".into(),
                    fix: "remove the lockPref from mozilla.cfg".into(),
                }),
            }
        })
        .collect();
    Report::new(RunKind::Check, &profile, findings, None)
}

async fn post(s: &Server, credential: &str, user: &str, report: Report, at: OffsetDateTime) {
    let batch = ReportBatch {
        schema: ReportBatchSchema,
        items: vec![BatchItem {
            id: uuid::Uuid::new_v4(),
            at,
            kind: BatchItemKind::Report {
                report,
                user: user.into(),
            },
        }],
    };
    let r = s
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(credential)
        .json(&batch)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::OK).await;
}

/// Enrolls `hostname` with `token`; returns (device id, credential).
async fn enroll(s: &Server, token: &str, hostname: &str) -> (String, String) {
    let r = s
        .request(Method::POST, "/api/v1/enroll")
        .json(&json!({
            "token": token, "hostname": hostname, "os": "linux",
            "agent_version": "0.1.0", "users": ["alice"]
        }))
        .send()
        .await
        .unwrap();
    let v = expect(r, StatusCode::CREATED).await;
    (
        v["device_id"].as_str().unwrap().to_owned(),
        v["credential"].as_str().unwrap().to_owned(),
    )
}

/// `GET /reports/audit?query` with the admin token and `accept`: (content type, body).
async fn get(s: &Server, query: &[(&str, &str)], accept: Option<&str>) -> (String, Vec<u8>) {
    let mut req = s.admin(Method::GET, "/reports/audit").query(query);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "a report is never cached"
    );
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    (ct, body)
}

/// The text of an HTML page: tags dropped, entities decoded, white space collapsed.
fn html_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut in_style = false;
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        if in_style {
            match rest.find("</style>") {
                Some(i) => {
                    rest = &rest[i + "</style>".len()..];
                    in_style = false;
                    continue;
                }
                None => break,
            }
        }
        if c == '<' {
            in_tag = true;
            if rest.starts_with("<style") {
                in_style = true;
            }
            out.push(' ');
        } else if c == '>' && in_tag {
            in_tag = false;
        } else if !in_tag {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    squash(&decoded)
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text `pdftotext` (poppler, independent of the writer) reads from a PDF, white space
/// collapsed.
fn pdf_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    pdf_file_text(&path)
}

fn pdf_file_text(path: &Path) -> String {
    // -layout: each printed line as one line (a label and its value stay together).
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!("pdftotext (poppler-utils) is needed: run scripts/install-test-deps.sh ({e})")
        });
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    squash(&String::from_utf8(out.stdout).unwrap())
}

/// Asserts that `text` has each of `parts`, in this order.
fn in_order(what: &str, text: &str, parts: &[&str]) {
    let mut from = 0;
    for part in parts {
        match text[from..].find(part) {
            Some(i) => from += i + part.len(),
            None => panic!(
                "{what}: {part:?} is missing (or out of order) after byte {from} of:\n{text}"
            ),
        }
    }
}

/// The class and symbol of the mark cell of the first table row that names `title`.
fn mark_of<'a>(html: &'a str, title: &str) -> (&'a str, &'a str) {
    let at = html
        .find(&format!("<td><strong>{title}"))
        .unwrap_or_else(|| panic!("no row {title:?}"));
    let cell = &html[..at];
    let start = cell.rfind("<td class=\"mark ").expect("a mark cell") + "<td class=\"mark ".len();
    let class = &html[start..start + html[start..].find('"').unwrap()];
    let symbol_start = start + html[start..].find('>').unwrap() + 1;
    let symbol = &html[symbol_start..symbol_start + html[symbol_start..].find("</td>").unwrap()];
    (class, symbol)
}

/// `text` with every `YYYY-MM-DD hh:mm:ss UTC` replaced by `<time>`.
fn without_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" UTC") {
        let start = i.saturating_sub(19);
        let stamp = &rest[start..i];
        let is_time = stamp.len() == 19
            && stamp.bytes().enumerate().all(|(n, b)| match n {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        if is_time {
            out.push_str(&rest[..start]);
            out.push_str("<time>");
        } else {
            out.push_str(&rest[..i + 4]);
        }
        rest = &rest[i + 4..];
    }
    out.push_str(rest);
    out
}

/// With `POSTWARDEN_KEEP_REPORTS=DIR`, the reports a test made are kept there to look at.
fn keep(name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("POSTWARDEN_KEEP_REPORTS") {
        std::fs::write(Path::new(&dir).join(name), bytes).unwrap();
    }
}

/// What comes after the last `Appendix: …` heading.
fn appendix(text: &str) -> &str {
    let i = text
        .rfind("Appendix: failing devices and their evidence")
        .expect("an appendix");
    &text[i..]
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

async fn the_audit_report_shows_the_fleet_as_html_and_pdf(db: Db) {
    let s = Server::start_with(db, &["--organisation", ORG]);
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    s.put_group("lab", "bsi-m5.57", 1).await;
    let office = s.enrollment_token("office", 3).await;
    let lab = s.enrollment_token("lab", 1).await;
    let (_ok, ok_cred) = enroll(&s, &office, "ws-ok.example.org").await;
    let (bad, bad_cred) = enroll(&s, &office, "ws-bad.example.org").await;
    let (_quiet, _) = enroll(&s, &office, "ws-quiet.example.org").await;
    let (_lab1, lab_cred) = enroll(&s, &lab, "lab-01.example.org").await;

    // Enrolled, nothing reported yet.
    let before_reports = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let t0 = OffsetDateTime::now_utc();
    post(&s, &ok_cred, "alice", report("alice", &[], &[]), t0).await;
    post(&s, &bad_cred, "alice", report("alice", &[], &[]), t0).await;
    post(
        &s,
        &lab_cred,
        "alice",
        report("alice", &["require-tls"], &[]),
        t0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mid = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(30)).await;
    // ws-bad drifts: a saved password (high) and a check interval an AutoConfig locks (low).
    let t1 = OffsetDateTime::now_utc();
    let drifted = report("alice", &["no-saved-passwords"], &["mail-check-interval"]);
    post(&s, &bad_cred, "alice", drifted, t1).await;

    // --- now, the fleet, as HTML --------------------------------------------------------------
    let (ct, body) = get(&s, &[], None).await;
    assert_eq!(ct, "text/html; charset=utf-8");
    keep(&format!("fleet-{db:?}.html"), &body);
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("@page {") && html.contains("size: A4;"),
        "A4 print CSS"
    );
    assert!(!html.contains("<script"), "self-contained, nothing runs");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing loaded"
    );
    // Each item's mark is the cell before its title.
    assert_eq!(mark_of(&html, "Replies go to the user"), ("pass", "✓"));
    assert_eq!(
        mark_of(&html, "Automatic mail check every 30"),
        ("fail", "✗")
    );
    assert_eq!(mark_of(&html, "No saved passwords"), ("fail", "✗"));
    assert_eq!(mark_of(&html, "Dangerous attachment types"), ("none", "–"));
    let text = html_text(&html);

    // The same content is checked in the HTML and in the PDF's text.
    let fleet_now = |text: &str, what: &str| {
        in_order(
            what,
            text,
            &[
                "Audit report",
                "Organisation",
                ORG,
                "Scope",
                "the whole fleet (all groups)",
                "State at",
                "Profile",
                "bsi-m5.57 version 1: BSI IT-Grundschutz M 5.57: secure configuration of mail \
                 clients (3 devices)",
                "Devices",
                "4 enrolled: 3 reporting, 1 without a report",
                "1. Findings by area",
                "Addresses and mail retrieval",
                "✓",
                "Replies go to the user's official address",
                "3 of 3 devices compliant (100.0 %)",
                "✗",
                "Automatic mail check every 30 minutes",
                "2 of 3 devices compliant (66.7 %); 1 in error",
                "Attachments and virus protection",
                "–",
                "Dangerous attachment types are blocked",
                "not applicable on 3 devices",
                "Connection security and authentication",
                "✗",
                "No saved passwords",
                "2 of 3 devices compliant (66.7 %); 1 non-compliant",
                "✗",
                "Mail connections are encrypted (SSL/TLS or STARTTLS)",
                "2 of 3 devices compliant (66.7 %); 1 non-compliant",
                "2. Conclusion",
                "The configuration has serious deviations from the profile: 2 high-severity \
                 controls fail: No saved passwords (no-saved-passwords) fails on 1 of 3 \
                 devices; Mail connections are encrypted (SSL/TLS or STARTTLS) (require-tls) \
                 fails on 1 of 3 devices.",
                "1 control of medium or low priority deviates as well.",
                "1 device had not reported yet and is not assessed.",
                "3. Recommendations",
                "High priority",
                "No saved passwords (no-saved-passwords)",
                "fails on 1 of 3 devices: 1 non-compliant",
                "Switch off the client's offer to save passwords and lock it.",
                "Delete the mail passwords the client already stores.",
                "Mail connections are encrypted (SSL/TLS or STARTTLS) (require-tls)",
                "Medium priority",
                "No recommendation",
                "Low priority",
                "Automatic mail check every 30 minutes (mail-check-interval)",
                "fails on 1 of 3 devices: 1 in error",
                "Where another configuration layer decides the setting:",
                "Thunderbird on 1 device (AutoConfig at /usr/lib/thunderbird/mozilla.cfg:3): \
                 remove the lockPref from mozilla.cfg",
                "4. What the mail clients cannot enforce",
                "Dangerous attachment types are blocked (blocked-attachment-types)",
                "Not applicable in the client:",
                &format!("Thunderbird on 3 devices: {BLOCK_REASON}"),
                "Instead, on the mail gateway or mail server (content filter):",
                "Mail connections are encrypted",
                "Instead, on the mail server:",
                "The outgoing server requires authentication (require-smtp-auth)",
                "require the login to match the sender's account",
                "5. Note",
                "The results reflect the configuration of the mail clients at",
                "Not verified",
                "1 device in the scope had not reported by then; it is not assessed.",
                "Appendix: failing devices and their evidence",
                "2 failing devices, worst first",
                "ws-bad.example.org",
                &bad,
                "group office · error",
                "✗",
                "Automatic mail check every 30 minutes (mail-check-interval)",
                "user alice · Thunderbird",
                "profile: mail.server.server1.check_time = true, expected false (failed)",
                "decided by AutoConfig at /usr/lib/thunderbird/mozilla.cfg:3",
                "✗",
                "No saved passwords (no-saved-passwords)",
                "profile: signon.rememberSignons = true, expected false (drifted)",
                "the user changed it",
                "lab-01.example.org",
                "group lab · non compliant",
                "Mail connections are encrypted (SSL/TLS or STARTTLS) (require-tls)",
                "profile: mail.server.server2.socketType = true, expected false (drifted)",
            ],
        );
        let app = appendix(text);
        assert!(
            !app.contains("ws-ok.example.org"),
            "{what}: compliant is not failing"
        );
        assert!(
            !app.contains("ws-quiet.example.org"),
            "{what}: unreported is not failing"
        );
    };
    fleet_now(&text, "HTML");

    // --- the same as a PDF, read back by pdftotext -----------------------------------------
    let (ct, pdf) = get(&s, &[], Some("application/pdf")).await;
    assert_eq!(ct, "application/pdf");
    keep(&format!("fleet-{db:?}.pdf"), &pdf);
    let text = pdf_text(&pdf);
    fleet_now(&text, "PDF");
    assert!(
        text.contains("Page 1 of"),
        "a footer with page numbers: {text}"
    );
    let (ct, again) = get(&s, &[("format", "pdf")], None).await;
    assert_eq!(ct, "application/pdf");
    assert_eq!(
        without_times(&pdf_text(&again)),
        without_times(&text),
        "?format=pdf is the same report"
    );
    let (ct, _) = get(&s, &[("format", "html")], Some("application/pdf")).await;
    assert!(ct.starts_with("text/html"), "format wins over Accept");

    // --- a group and a device -----------------------------------------------------------------
    let (_, pdf) = get(&s, &[("group", "lab"), ("format", "pdf")], None).await;
    let text = pdf_text(&pdf);
    in_order(
        "group lab",
        &text,
        &[
            "group lab",
            "1 enrolled: 1 reporting",
            "No saved passwords",
            "1 of 1 device compliant (100.0 %)",
            "Mail connections are encrypted (SSL/TLS or STARTTLS)",
            "0 of 1 device compliant (0.0 %); 1 non-compliant",
            "1 high-severity control fails: Mail connections are encrypted (SSL/TLS or \
             STARTTLS) (require-tls) fails on 1 of 1 device.",
            "lab-01.example.org",
        ],
    );
    assert!(!text.contains("ws-bad"), "{text}");
    let (_, html) = get(&s, &[("device", &bad)], None).await;
    let text = html_text(&String::from_utf8(html).unwrap());
    in_order(
        "one device",
        &text,
        &[
            &format!("device ws-bad.example.org ({bad})"),
            "1 enrolled: 1 reporting",
            "1 of 1 device compliant (100.0 %)",
            "No saved passwords",
            "0 of 1 device compliant (0.0 %); 1 non-compliant",
        ],
    );

    // --- as of a moment -------------------------------------------------------------------------
    // Between the two reports of ws-bad: its first, compliant one counts.
    let (_, pdf) = get(&s, &[("as_of", &rfc3339(mid)), ("format", "pdf")], None).await;
    let text = pdf_text(&pdf);
    in_order(
        "as of mid",
        &text,
        &[
            "State as of",
            "No saved passwords",
            "3 of 3 devices compliant (100.0 %)",
            "1 high-severity control fails: Mail connections are encrypted (SSL/TLS or \
             STARTTLS) (require-tls) fails on 1 of 3 devices.",
            "heartbeats are not kept as history",
            "1 failing device,",
            "lab-01.example.org",
        ],
    );
    assert!(!appendix(&text).contains("ws-bad"), "{text}");
    // Enrolled, but before any report.
    let (_, html) = get(&s, &[("as_of", &rfc3339(before_reports))], None).await;
    let text = html_text(&String::from_utf8(html).unwrap());
    in_order(
        "before any report",
        &text,
        &[
            "State as of",
            "4 enrolled: 0 reporting, 4 without a report",
            "No device reported any finding.",
            "None of the 4 devices had reported by",
            "so compliance cannot be established",
            "No device fails a control.",
        ],
    );
    // Before anything was enrolled.
    let (_, html) = get(&s, &[("as_of", "2020-01-01")], None).await;
    let text = html_text(&String::from_utf8(html).unwrap());
    assert!(
        text.contains(
            "No device of the whole fleet (all groups) was enrolled as of 2020-01-01 23:59:59 \
             UTC, so there is nothing to assess."
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "No control in the reports needs the mail server, a gateway or another \
             configuration layer."
        ),
        "{text}"
    );

    // --- refused -----------------------------------------------------------------------------------
    let r = s
        .request(Method::GET, "/reports/audit")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    let wrong = format!("pwa_{}", "a".repeat(43));
    let r = s
        .request(Method::GET, "/reports/audit?format=pdf")
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    let refused =
        |query: Vec<(&'static str, String)>, status: StatusCode, field: Option<&'static str>| {
            let s = &s;
            async move {
                let r = s
                    .admin(Method::GET, "/reports/audit")
                    .query(&query)
                    .send()
                    .await
                    .unwrap();
                let p = expect(r, status).await;
                if let Some(field) = field {
                    assert_eq!(p["errors"][0]["field"], field, "{query:?}: {p}");
                }
                p["detail"].as_str().unwrap_or_default().to_owned()
            }
        };
    let d = refused(
        vec![("group", "office".into()), ("device", bad.clone())],
        StatusCode::BAD_REQUEST,
        Some("device"),
    )
    .await;
    assert!(d.contains("not both"), "{d}");
    let d = refused(
        vec![("as_of", "yesterday".into())],
        StatusCode::BAD_REQUEST,
        Some("as_of"),
    )
    .await;
    assert!(d.contains("YYYY-MM-DD"), "{d}");
    let d = refused(
        vec![("as_of", "2999-01-01".into())],
        StatusCode::BAD_REQUEST,
        Some("as_of"),
    )
    .await;
    assert!(d.contains("in the future"), "{d}");
    let future = rfc3339(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    refused(
        vec![("as_of", future)],
        StatusCode::BAD_REQUEST,
        Some("as_of"),
    )
    .await;
    refused(
        vec![("format", "docx".into())],
        StatusCode::BAD_REQUEST,
        Some("format"),
    )
    .await;
    refused(
        vec![("group", "../etc".into())],
        StatusCode::BAD_REQUEST,
        Some("group"),
    )
    .await;
    refused(
        vec![("device", "ws-bad".into())],
        StatusCode::BAD_REQUEST,
        Some("device"),
    )
    .await;
    let d = refused(
        vec![("group", "nosuch".into())],
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    assert!(d.contains("nosuch"), "{d}");
    let unknown = format!("dev_{}", "a".repeat(26));
    refused(vec![("device", unknown)], StatusCode::NOT_FOUND, None).await;
    let d = refused(
        vec![("colour", "red".into())],
        StatusCode::BAD_REQUEST,
        None,
    )
    .await;
    assert!(d.contains("colour"), "{d}");

    // --- offline, from the same database -------------------------------------------------------
    let out = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(postwarden_test_support::bin::server());
        cmd.args(["report", "audit", "--data-dir"])
            .arg(&s.dir)
            .args(args)
            .env_remove("POSTWARDEN_DATABASE_URL");
        if let Some(url) = &s.database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.output().unwrap()
    };
    let pdf_path = out.path().join("office.pdf");
    let run = cli(&[
        "--group",
        "office",
        "--organisation",
        "Offline AG",
        "-o",
        pdf_path.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("the audit report of group office, state at")
            && said.contains(": 3 devices, 1 failing"),
        "{said}"
    );
    let text = pdf_file_text(&pdf_path);
    in_order(
        "offline PDF",
        &text,
        &[
            "Offline AG",
            "group office",
            "3 enrolled: 2 reporting, 1 without a report",
            "No saved passwords",
            "1 of 2 devices compliant (50.0 %); 1 non-compliant",
            "Appendix: failing devices and their evidence",
            "ws-bad.example.org",
            "signon.rememberSignons",
        ],
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pdf_path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "owner only: it names users and settings"
        );
    }
    let html_path = out.path().join("fleet.html");
    let run = cli(&["--as-of", &rfc3339(mid), "-o", html_path.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = html_text(&std::fs::read_to_string(&html_path).unwrap());
    in_order(
        "offline HTML as of",
        &text,
        &[
            "State as of",
            "No saved passwords",
            "3 of 3 devices compliant (100.0 %)",
        ],
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
    // Refused before anything is written.
    for (args, says) in [
        (
            vec!["-o", "report.txt"],
            "-o report.txt: the file name must end in .html or .pdf",
        ),
        (vec!["--as-of", "yesterday", "-o", "x.pdf"], "--as-of:"),
        (
            vec!["--as-of", "2999-01-01", "-o", "x.pdf"],
            "is in the future",
        ),
        (
            vec!["--group", "a", "--device", "b", "-o", "x.pdf"],
            "cannot be used with",
        ),
        (
            vec!["--group", "nosuch", "-o", "x.pdf"],
            "there is no group \"nosuch\"",
        ),
        (vec!["--group", "../x", "-o", "x.pdf"], "--group"),
    ] {
        let run = cli(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(!Path::new("report.txt").exists() && !Path::new("x.pdf").exists());
}
