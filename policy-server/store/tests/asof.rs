//! A scope at a moment (`Store::devices_at`, `Store::reports_at`), on SQLite and on PostgreSQL:
//! the newest report per device and user at or before the moment, only devices enrolled by then
//! and not retired, a group or one device, pages that add up to the whole, and "now".

use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_server_store::{
    Audit, Enrolled, FindingRow, IngestItem, IngestKind, NewDevice, NewEnrollmentToken, NewProfile,
    PutGroup, PutProfile, ScopeFilter, Store, StoreError,
};

const T0: i64 = 1_795_000_000_000;

macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                super::$scenario(&url).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(&postwarden_test_support::pg::database()).await
            }
        }
    )*};
}

on_both!(
    the_newest_report_at_a_moment_of_the_devices_alive_then,
    a_report_that_does_not_parse_is_named,
);

fn audit(action: &'static str, at_ms: i64) -> Audit<'static> {
    Audit {
        actor: "tester",
        source: "127.0.0.1",
        action,
        target: "t",
        detail: serde_json::Value::Null,
        at_ms,
    }
}

fn device_id(n: usize) -> String {
    format!("dev_{n:026}")
}

/// Profile `p` 1, groups `office` and `lab`, and a token for each (`tok-office`, `tok-lab`).
async fn setup(url: &str) -> Store {
    let s = Store::connect(url, 4).await.unwrap();
    s.migrate().await.unwrap();
    let p = NewProfile {
        id: "p",
        version: 1,
        title: "P",
        sha256: "aa",
        toml: "aa",
    };
    assert_eq!(
        s.put_profile(&p, &audit("profile.upload", T0))
            .await
            .unwrap(),
        PutProfile::Created
    );
    for group in ["office", "lab"] {
        assert_eq!(
            s.put_group(group, "p", 1, &audit("group.assign", T0))
                .await
                .unwrap(),
            PutGroup::Created
        );
        let hash = format!("tok-{group}");
        let id = format!("enr_{group}");
        assert!(s
            .create_enrollment_token(
                &NewEnrollmentToken {
                    id: &id,
                    hash: &hash,
                    group,
                    uses: 100,
                    expires_ms: T0 + 1_000_000,
                },
                &audit("enrollment_token.create", T0),
            )
            .await
            .unwrap());
    }
    s
}

async fn enroll(s: &Store, group: &str, n: usize, at_ms: i64) {
    let id = device_id(n);
    let cred = format!("cred-{n}");
    let users = vec!["alice".to_owned(), "bob".to_owned()];
    let done = s
        .enroll(
            &format!("tok-{group}"),
            &NewDevice {
                id: &id,
                credential_hash: &cred,
                hostname: &format!("host-{n}"),
                os: "linux",
                agent_version: "0.1.0",
                users: &users,
            },
            at_ms,
        )
        .await
        .unwrap();
    assert!(matches!(done, Enrolled::Yes { .. }), "{done:?}");
}

/// A report whose `generated_at` carries `label`, so a test can tell which one it read.
fn report(item: &str, at_ms: i64, user: &str, label: &str) -> IngestItem {
    let profile = postwarden_test_support::baseline();
    let findings = vec![Finding {
        control: "require-tls".into(),
        client: Client::Thunderbird,
        scope: format!("/home/{user}/.thunderbird/x.default"),
        target: "server1".into(),
        setting: Some("mail.server.server1.socketType".into()),
        status: Status::Drifted,
        expected: serde_json::json!(3),
        actual: serde_json::json!(0),
        previous: None,
        locked: None,
        reason: None,
        note: None,
        overridden_by: None,
    }];
    let r = Report::new(RunKind::Check, &profile, findings, Some(label.to_owned()));
    IngestItem {
        id: item.into(),
        at_ms,
        kind: IngestKind::Report {
            user: user.into(),
            report_json: serde_json::to_string(&r).unwrap(),
            profile_id: r.profile.id.clone(),
            profile_version: i64::from(r.profile.version),
            compliant: r.compliant,
            findings: r.findings.iter().map(FindingRow::from_finding).collect(),
        },
    }
}

/// `(device number, user, label)` of each report read, in order.
async fn read(
    s: &Store,
    scope: ScopeFilter<'_>,
    at_ms: Option<i64>,
) -> Vec<(String, String, String)> {
    let page = s.reports_at(scope, at_ms, "", 1000).await.unwrap();
    assert_eq!(page.next, None, "one page holds them all");
    page.reports
        .into_iter()
        .map(|r| {
            (
                r.device_id,
                r.user,
                r.report.generated_at.unwrap_or_default(),
            )
        })
        .collect()
}

fn row(n: usize, user: &str, label: &str) -> (String, String, String) {
    (device_id(n), user.to_owned(), label.to_owned())
}

async fn hosts(s: &Store, scope: ScopeFilter<'_>, at_ms: Option<i64>) -> Vec<String> {
    s.devices_at(scope, at_ms)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.hostname)
        .collect()
}

async fn the_newest_report_at_a_moment_of_the_devices_alive_then(url: &str) {
    let s = setup(url).await;
    enroll(&s, "office", 0, T0).await;
    enroll(&s, "office", 1, T0).await;
    enroll(&s, "lab", 2, T0).await;
    enroll(&s, "office", 3, T0 + 50).await;
    let ingest = |n: usize, items: Vec<IngestItem>| {
        let s = s.clone();
        async move { s.ingest(&device_id(n), &items, T0 + 100).await.unwrap() }
    };
    ingest(0, vec![report("i-a10", T0 + 10, "alice", "a10")]).await;
    ingest(
        0,
        vec![
            report("i-a20", T0 + 20, "alice", "a20"),
            report("i-b15", T0 + 15, "bob", "b15"),
        ],
    )
    .await;
    // Two reports at the same time: the larger item id is the newer, as in the ingest.
    ingest(
        1,
        vec![
            report("i-x", T0 + 30, "alice", "x30"),
            report("i-y", T0 + 30, "alice", "y30"),
        ],
    )
    .await;
    ingest(2, vec![report("i-lab", T0 + 12, "alice", "lab12")]).await;
    ingest(3, vec![report("i-late", T0 + 60, "alice", "late60")]).await;
    assert!(s
        .retire_device(&device_id(1), &audit("device.retire", T0 + 40))
        .await
        .unwrap());

    // Devices: enrolled by then, not retired at or before it.
    assert_eq!(
        hosts(&s, ScopeFilter::Fleet, Some(T0 + 5)).await,
        ["host-0", "host-1", "host-2"]
    );
    assert_eq!(
        hosts(&s, ScopeFilter::Fleet, Some(T0 + 40)).await,
        ["host-0", "host-2"],
        "retired at that very moment"
    );
    assert_eq!(
        hosts(&s, ScopeFilter::Fleet, None).await,
        ["host-0", "host-2", "host-3"]
    );
    assert_eq!(hosts(&s, ScopeFilter::Group("lab"), None).await, ["host-2"]);
    assert!(hosts(&s, ScopeFilter::Device(&device_id(3)), Some(T0 + 49))
        .await
        .is_empty());
    assert_eq!(
        hosts(&s, ScopeFilter::Device(&device_id(3)), Some(T0 + 50)).await,
        ["host-3"]
    );
    assert!(hosts(&s, ScopeFilter::Fleet, Some(T0 - 1)).await.is_empty());

    // Before any report: devices, but nothing read.
    assert!(read(&s, ScopeFilter::Fleet, Some(T0 + 1)).await.is_empty());
    // Each user's newest report at or before the moment.
    assert_eq!(
        read(&s, ScopeFilter::Fleet, Some(T0 + 15)).await,
        [
            row(0, "alice", "a10"),
            row(0, "bob", "b15"),
            row(2, "alice", "lab12")
        ]
    );
    assert_eq!(
        read(&s, ScopeFilter::Fleet, Some(T0 + 35)).await,
        [
            row(0, "alice", "a20"),
            row(0, "bob", "b15"),
            row(1, "alice", "y30"),
            row(2, "alice", "lab12"),
        ]
    );
    // Later: the retired device is gone, the late one has joined.
    assert_eq!(
        read(&s, ScopeFilter::Fleet, Some(T0 + 60)).await,
        [
            row(0, "alice", "a20"),
            row(0, "bob", "b15"),
            row(2, "alice", "lab12"),
            row(3, "alice", "late60"),
        ]
    );
    // Now: the current reports, the same as the live views use.
    assert_eq!(
        read(&s, ScopeFilter::Fleet, None).await,
        read(&s, ScopeFilter::Fleet, Some(T0 + 1_000)).await
    );
    let current: Vec<String> = s
        .current_findings(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| format!("{}/{}", f.device_id, f.user))
        .collect();
    let read_now: Vec<String> = read(&s, ScopeFilter::Fleet, None)
        .await
        .into_iter()
        .map(|(d, u, _)| format!("{d}/{u}"))
        .collect();
    assert_eq!(read_now, current);
    // A group, one device.
    assert_eq!(
        read(&s, ScopeFilter::Group("office"), Some(T0 + 35)).await,
        [
            row(0, "alice", "a20"),
            row(0, "bob", "b15"),
            row(1, "alice", "y30")
        ]
    );
    assert_eq!(
        read(&s, ScopeFilter::Device(&device_id(1)), Some(T0 + 35)).await,
        [row(1, "alice", "y30")]
    );
    assert!(read(&s, ScopeFilter::Device(&device_id(1)), None)
        .await
        .is_empty());
    // The report itself comes back whole.
    let page = s
        .reports_at(ScopeFilter::Device(&device_id(2)), None, "", 10)
        .await
        .unwrap();
    let r = &page.reports[0];
    assert_eq!((r.item_id.as_str(), r.at_ms), ("i-lab", T0 + 12));
    assert_eq!(
        r.report.findings[0].setting.as_deref(),
        Some("mail.server.server1.socketType")
    );
    assert_eq!(r.report.controls.len(), 11);

    // Pages of one device add up to the whole, in order.
    for at in [Some(T0 + 35), None] {
        let mut after = String::new();
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let page = s
                .reports_at(ScopeFilter::Fleet, at, &after, 1)
                .await
                .unwrap();
            pages += 1;
            all.extend(page.reports.into_iter().map(|r| {
                (
                    r.device_id,
                    r.user,
                    r.report.generated_at.unwrap_or_default(),
                )
            }));
            match page.next {
                Some(next) => after = next,
                None => break,
            }
            assert!(pages < 10, "paging ends");
        }
        assert_eq!(all, read(&s, ScopeFilter::Fleet, at).await, "{at:?}");
        assert_eq!(pages, 4, "3 devices, then an empty page: {at:?}");
    }
}

async fn a_report_that_does_not_parse_is_named(url: &str) {
    let s = setup(url).await;
    enroll(&s, "office", 0, T0).await;
    let mut item = report("i-bad", T0 + 1, "alice", "bad");
    if let IngestKind::Report { report_json, .. } = &mut item.kind {
        *report_json = "{\"schema\": \"something else\"}".into();
    }
    s.ingest(&device_id(0), &[item], T0 + 2).await.unwrap();
    for at in [Some(T0 + 5), None] {
        match s.reports_at(ScopeFilter::Fleet, at, "", 10).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("i-bad"), "{message}");
                assert!(message.contains(&device_id(0)), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
