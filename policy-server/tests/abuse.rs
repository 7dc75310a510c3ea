//! Bad input and abuse: each gets a clear 4xx in problem+json naming what was wrong, and
//! nothing is stored. Each scenario runs on SQLite and on PostgreSQL.

mod common;

use common::{baseline_toml, expect, Db, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn enrolled(s: &Server) -> (String, String) {
    s.upload(&baseline_toml(), StatusCode::CREATED).await;
    s.put_group("office", "bsi-m5.57", 1).await;
    let token = s.enrollment_token("office", 5).await;
    s.enroll(&token, &["alice"]).await
}

async fn row_counts(s: &Server) -> (usize, usize, usize) {
    let devices = s.get_json("/api/v1/devices").await["devices"]
        .as_array()
        .unwrap()
        .len();
    let events = s.get_json("/api/v1/events?limit=1000").await["events"]
        .as_array()
        .unwrap()
        .len();
    let audit = s.get_json("/api/v1/audit-log?limit=1000").await["entries"]
        .as_array()
        .unwrap()
        .len();
    (devices, events, audit)
}

async fn malformed_bodies_are_named_and_store_nothing(db: Db) {
    let s = Server::start(db);
    let (_, credential) = enrolled(&s).await;
    let before = row_counts(&s).await;
    let post = |path: &str, body: &str| {
        s.request(Method::POST, path)
            .bearer_auth(&credential)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };

    // Truncated JSON: the line and column of the end.
    let r = post(
        "/api/v1/reports",
        r#"{"schema": "postwarden.report-batch/v1", "items": ["#,
    )
    .await
    .unwrap();
    let p = expect(r, StatusCode::BAD_REQUEST).await;
    assert!(p["errors"][0]["line"].as_u64().unwrap() >= 1, "{p}");

    // An unknown field deep inside: named by its path.
    let event = json!({
        "control": "mail-check-interval", "client": "thunderbird", "user": "alice",
        "scope": "p", "target": "t", "old": 1, "new": 2, "repaired": true,
        "status": "repaired", "colour": "red"
    });
    let body = json!({"schema": "postwarden.report-batch/v1", "items": [
        {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:00Z", "kind": "event", "event": event}
    ]});
    let r = post("/api/v1/reports", &body.to_string()).await.unwrap();
    let p = expect(r, StatusCode::BAD_REQUEST).await;
    let field = p["errors"][0]["field"].as_str().unwrap_or_default();
    assert!(
        field.starts_with("items[0]"),
        "the path names the item: {p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");

    // A wrong schema string, a wrong type.
    let r = post(
        "/api/v1/reports",
        r#"{"schema": "postwarden.report-batch/v9", "items": []}"#,
    )
    .await
    .unwrap();
    expect(r, StatusCode::BAD_REQUEST).await;
    let r = post("/api/v1/users", r#"{"users": "alice"}"#)
        .await
        .unwrap();
    let p = expect(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(p["errors"][0]["field"], "users", "{p}");

    // User names with path tricks, quotes, NUL, and huge ones.
    for bad in [
        "../etc",
        "al\"ice",
        "al'ice",
        "a\u{0}b",
        &"x".repeat(10_000),
    ] {
        let r = s
            .request(Method::POST, "/api/v1/users")
            .bearer_auth(&credential)
            .json(&json!({"users": [bad]}))
            .send()
            .await
            .unwrap();
        let p = expect(r, StatusCode::BAD_REQUEST).await;
        assert_eq!(p["errors"][0]["field"], "users[0]", "{p}");
    }
    // Not JSON at all, and the wrong content type.
    let r = post("/api/v1/reports", "\u{1}\u{2}").await.unwrap();
    expect(r, StatusCode::BAD_REQUEST).await;
    let r = s
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(&credential)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // A body over the limit: 413, nothing read into the database.
    let huge = format!(
        r#"{{"schema": "postwarden.report-batch/v1", "items": [], "pad": "{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let r = post("/api/v1/reports", &huge).await.unwrap();
    expect(r, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Admin path parameters: ids with ../, quotes, NUL.
    for (path, field) in [
        ("/api/v1/groups/..%2Fetc", "group"),
        ("/api/v1/groups/a%22b", "group"),
        ("/api/v1/groups/a%00b", "group"),
        ("/api/v1/users/..%2Froot/variables", "user"),
    ] {
        let r = s
            .admin(Method::PUT, path)
            .json(&json!({"profile": "bsi-m5.57", "version": 1}))
            .send()
            .await
            .unwrap();
        let p = expect(r, StatusCode::BAD_REQUEST).await;
        assert_eq!(p["errors"][0]["field"], field, "{path}: {p}");
    }
    // A huge variable value, a bad variable name.
    let r = s
        .admin(Method::PUT, "/api/v1/users/alice/variables")
        .json(&json!({"user.email": "a".repeat(5000)}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST).await;
    let r = s
        .admin(Method::PUT, "/api/v1/users/alice/variables")
        .json(&json!({"User Email!": "x"}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST).await;
    // Malformed TOML: 422 with the line.
    let r = s
        .admin(Method::POST, "/api/v1/profiles")
        .header("content-type", "application/toml")
        .body("id = \"x\"\nversion = [\n")
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["errors"][0]["line"].as_u64().unwrap() >= 2, "{p}");

    assert_eq!(row_counts(&s).await.0, before.0);
    assert_eq!(row_counts(&s).await.1, before.1);
    assert_eq!(
        row_counts(&s).await.2,
        before.2,
        "no audit entry for a refused request"
    );
}
on_both!(malformed_bodies_are_named_and_store_nothing);

/// (reports, events, notices) of `device`, as the admin API shows them.
async fn stored(s: &Server, device: &str) -> (usize, usize, usize) {
    let detail = s.get_json(&format!("/api/v1/devices/{device}")).await;
    let events = s.get_json("/api/v1/events?limit=1000").await;
    (
        detail["reports"].as_array().unwrap().len(),
        events["events"].as_array().unwrap().len(),
        detail["notices"].as_array().unwrap().len(),
    )
}

/// The free texts of issue 10's wire are bounded: an oversized or control-character
/// `notice.detail`, `event.note` or `event.changed_by`, or a number beyond the database's
/// range, refuses the whole batch naming the field, and nothing of it is stored.
async fn oversized_event_and_notice_texts_are_named_and_store_nothing(db: Db) {
    let s = Server::start(db);
    let (device, credential) = enrolled(&s).await;
    let before = stored(&s, &device).await;
    assert_eq!(before, (0, 0, 0));
    let report = {
        let profile = postwarden_test_support::baseline();
        postwarden_profiles::report::Report::new(
            postwarden_profiles::report::RunKind::Check,
            &profile,
            Vec::new(),
            None,
        )
    };
    let event = json!({
        "control": "mail-check-interval", "client": "thunderbird", "user": "alice",
        "scope": "p", "target": "t", "old": 1, "new": 2, "repaired": false,
        "status": "drifted", "contested": true, "changed_by": "Thunderbird", "note": "why",
        "merged": 2
    });
    let notice = json!({"kind": "bundle_refused", "detail": "bad signature", "serial": 3});
    let batch = |event: &Value, notice: &Value| {
        json!({"schema": "postwarden.report-batch/v1", "items": [
            {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:00Z", "kind": "report",
             "report": report, "user": "alice"},
            {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:01Z", "kind": "event",
             "event": event},
            {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:02Z", "kind": "notice",
             "notice": {"kind": "queue_shed", "detail": "fine"}},
            {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:03Z", "kind": "notice",
             "notice": notice},
        ]})
    };
    let with = |base: &Value, member: &str, value: Value| {
        let mut v = base.clone();
        v[member] = value;
        v
    };
    let huge = "x".repeat(4097);
    for (body, field) in [
        (
            batch(&event, &with(&notice, "detail", huge.clone().into())),
            "items[3].notice.detail",
        ),
        (
            batch(&event, &with(&notice, "detail", "a\u{0}b".into())),
            "items[3].notice.detail",
        ),
        (
            batch(&event, &with(&notice, "detail", "".into())),
            "items[3].notice.detail",
        ),
        (
            batch(&event, &with(&notice, "serial", json!(u64::MAX))),
            "items[3].notice.serial",
        ),
        (
            batch(&with(&event, "note", huge.clone().into()), &notice),
            "items[1].event.note",
        ),
        (
            batch(&with(&event, "note", "bell\u{7}".into()), &notice),
            "items[1].event.note",
        ),
        (
            batch(
                &with(&event, "changed_by", "x".repeat(1025).into()),
                &notice,
            ),
            "items[1].event.changed_by",
        ),
        (
            batch(&with(&event, "changed_by", "two\nlines".into()), &notice),
            "items[1].event.changed_by",
        ),
        (
            batch(&with(&event, "merged", json!(u64::MAX)), &notice),
            "items[1].event.merged",
        ),
        // PostgreSQL cannot store a NUL in text: refused by name in every field, not a 500
        // that would stall the agent's queue.
        (
            batch(&with(&event, "scope", "/home/a\u{0}b".into()), &notice),
            "items[1].event.scope",
        ),
        (
            batch(
                &with(&event, "target", "server1 (pop3 \u{0})".into()),
                &notice,
            ),
            "items[1].event.target",
        ),
        (
            batch(&with(&event, "new", "x\u{0}".into()), &notice),
            "items[1].event.new",
        ),
    ] {
        let r = s
            .request(Method::POST, "/api/v1/reports")
            .bearer_auth(&credential)
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = expect(r, StatusCode::BAD_REQUEST).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "the detail names the field: {p}"
        );
        assert!(
            !p.to_string().contains(&huge),
            "the value is not echoed back"
        );
        assert_eq!(
            stored(&s, &device).await,
            before,
            "nothing of a refused batch: {field}"
        );
    }
    // At the limits, with line breaks in the messages: stored.
    let ok = batch(
        &with(&event, "note", format!("{}\n\t.", "n".repeat(4093)).into()),
        &with(&notice, "detail", "d".repeat(4096).into()),
    );
    let ok = {
        let mut ok = ok;
        ok["items"][1]["event"]["changed_by"] = "c".repeat(1024).into();
        ok
    };
    let r = s
        .request(Method::POST, "/api/v1/reports")
        .bearer_auth(&credential)
        .json(&ok)
        .send()
        .await
        .unwrap();
    let v = expect(r, StatusCode::OK).await;
    assert_eq!(v["accepted"], 4, "{v}");
    assert_eq!(stored(&s, &device).await, (1, 1, 2));
}
on_both!(oversized_event_and_notice_texts_are_named_and_store_nothing);

async fn bad_credentials_and_tokens(db: Db) {
    let s = Server::start(db);
    let (device, credential) = enrolled(&s).await;
    // No token, a wrong one, one of the wrong kind.
    let r = s
        .request(Method::GET, "/api/v1/devices")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    expect(r, StatusCode::UNAUTHORIZED).await;
    let r = s
        .request(Method::GET, "/api/v1/devices")
        .bearer_auth(&credential)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    let r = s
        .request(Method::GET, "/api/v1/bundle")
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
    let r = s
        .request(Method::GET, "/api/v1/bundle")
        .bearer_auth("pwd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;

    // A revoked enrollment token says so.
    let r = s
        .admin(Method::POST, "/api/v1/enrollment-tokens")
        .json(&json!({"group": "office"}))
        .send()
        .await
        .unwrap();
    let t = expect(r, StatusCode::CREATED).await;
    let r = s
        .admin(
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{}", t["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::NO_CONTENT).await;
    let r = s
        .request(Method::POST, "/api/v1/enroll")
        .json(&json!({"token": t["token"], "hostname": "h", "os": "linux", "agent_version": "1", "users": []}))
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    // An enrollment token for a group that does not exist.
    let r = s
        .admin(Method::POST, "/api/v1/enrollment-tokens")
        .json(&json!({"group": "nowhere"}))
        .send()
        .await
        .unwrap();
    let p = expect(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["field"], "group");

    // A retired device's credential.
    let r = s
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::NO_CONTENT).await;
    let r = s
        .request(Method::POST, "/api/v1/users")
        .bearer_auth(&credential)
        .json(&json!({"users": []}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;

    let log = s.log();
    assert!(!log.contains(t["token"].as_str().unwrap()));
    assert!(!log.contains(&credential));
    assert!(!log.contains(&s.admin));
}
on_both!(bad_credentials_and_tokens);

async fn failed_admin_logins_and_enrollments_are_rate_limited(db: Db) {
    let s = Server::start_with(db, &["--admin-failure-rate", "3", "--enroll-rate", "4"]);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = s
            .request(Method::GET, "/api/v1/groups")
            .bearer_auth("pwa_wrongwrongwrongwrongwrongwrongwrongwrongwr")
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            expect(r, StatusCode::TOO_MANY_REQUESTS).await;
        }
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(*statuses.last().unwrap(), StatusCode::TOO_MANY_REQUESTS);
    // While blocked, even the right token waits: guessing gains nothing.
    let r = s.admin(Method::GET, "/api/v1/groups").send().await.unwrap();
    expect(r, StatusCode::TOO_MANY_REQUESTS).await;

    let mut last = StatusCode::OK;
    for _ in 0..8 {
        let r = s
            .request(Method::POST, "/api/v1/enroll")
            .json(&json!({"token": "pwe_nonenonenonenonenonenonenonenonenonenonenon", "hostname": "h", "os": "linux", "agent_version": "1", "users": []}))
            .send()
            .await
            .unwrap();
        last = r.status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
        expect(r, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}
on_both!(failed_admin_logins_and_enrollments_are_rate_limited);

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let s = Server::start(Db::Sqlite);
    let r = s
        .admin(Method::GET, "/api/v1/nothing-here")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::NOT_FOUND).await;
    let r = s
        .admin(Method::PATCH, "/api/v1/groups")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let r = s
        .admin(Method::GET, "/api/v1/devices?colour=red")
        .send()
        .await
        .unwrap();
    let p: Value = expect(r, StatusCode::BAD_REQUEST).await;
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");
}
