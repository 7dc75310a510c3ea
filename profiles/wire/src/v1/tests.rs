//! The v1 bodies are contracts: their JSON is pinned here, they round-trip, and they refuse
//! unknown fields and other schemas.
//! Update deliberately with `UPDATE_EXPECT=1 cargo test -p postwarden-wire`.

use expect_test::{expect, Expect};
use postwarden_profiles::report::{Finding, RunKind};
use postwarden_profiles::ControlId;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::jws::SigningKey;

/// Pins the pretty JSON of `value`, then reads it back and checks it writes the same again.
fn check<T: Serialize + DeserializeOwned>(value: &T, expected: Expect) {
    let json = serde_json::to_string_pretty(value).unwrap();
    expected.assert_eq(&json);
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
}

/// The error reading `json` as `T`.
fn refused<T: DeserializeOwned + fmt::Debug>(json: &serde_json::Value) -> String {
    serde_json::from_value::<T>(json.clone())
        .expect_err("must be refused")
        .to_string()
}

fn with_member(mut json: serde_json::Value, pointer: &str, name: &str) -> serde_json::Value {
    json.pointer_mut(pointer)
        .and_then(|v| v.as_object_mut())
        .expect("an object")
        .insert(name.to_owned(), json!("surprise"));
    json
}

fn time(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

fn enroll_request() -> EnrollRequest {
    EnrollRequest {
        token: Secret::new("enroll-8f2c1e"),
        hostname: "ws-0042".into(),
        os: "linux".into(),
        agent_version: "0.1.0".into(),
        users: vec!["alice".into(), "bob".into()],
    }
}

fn enroll_response() -> EnrollResponse {
    EnrollResponse {
        device_id: DeviceId("dev-3f9a".into()),
        credential: Secret::new("cred-b71d0c"),
        signing_key: SigningKey::from_seed(&[7; 32]).public_jwk(),
    }
}

pub(crate) fn bundle_payload() -> BundlePayload {
    BundlePayload {
        schema: BundleSchema,
        device: DeviceId("dev-3f9a".into()),
        serial: 7,
        issued_at: time("2026-05-04T09:30:00Z"),
        profile: BundleProfile {
            id: "acme-mail".into(),
            version: 3,
            toml: "id = \"acme-mail\"\nversion = 3\ntitle = \"ACME mail\"\n".into(),
        },
        variables: BTreeMap::from([(
            "alice".to_owned(),
            BTreeMap::from([("user.email".to_owned(), "alice@example.org".to_owned())]),
        )]),
        preview: None,
    }
}

fn drift_event() -> DriftEvent {
    DriftEvent {
        control: "require-tls".into(),
        client: Client::Thunderbird,
        user: "alice".into(),
        scope: "/home/alice/.thunderbird/x.default".into(),
        target: "server1".into(),
        setting: Some("mail.server.server1.socketType".into()),
        old: json!(3),
        new: json!(0),
        repaired: true,
        status: Status::Repaired,
        notified: None,
        contested: false,
        changed_by: None,
        note: None,
        merged: None,
        detected_at: None,
    }
}

fn report() -> Report {
    let profile = Profile::parse(
        "test.toml",
        "id = \"acme-mail\"\nversion = 3\ntitle = \"ACME mail\"\n",
    )
    .unwrap();
    let finding = Finding {
        control: ControlId::ALL[0].as_str().to_owned(),
        client: Client::Thunderbird,
        scope: "/home/alice/.thunderbird/x.default".into(),
        target: "profile".into(),
        setting: None,
        status: Status::Compliant,
        expected: json!(true),
        actual: json!(true),
        previous: None,
        locked: Some(true),
        reason: None,
        note: None,
        overridden_by: None,
    };
    Report::new(
        RunKind::Check,
        &profile,
        vec![finding],
        Some("2026-05-04T09:31:00Z".into()),
    )
}

fn report_batch() -> ReportBatch {
    ReportBatch {
        schema: ReportBatchSchema,
        items: vec![
            BatchItem {
                id: Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_0001),
                at: time("2026-05-04T09:31:00Z"),
                kind: BatchItemKind::Report {
                    report: report(),
                    user: "alice".into(),
                },
            },
            BatchItem {
                id: Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_0002),
                at: time("2026-05-04T11:02:17.25+02:00"),
                kind: BatchItemKind::Event {
                    event: drift_event(),
                },
            },
        ],
    }
}

// --- pinned JSON and round trips ---

#[test]
fn enroll_request_json() {
    check(
        &enroll_request(),
        expect![[r#"
            {
              "token": "enroll-8f2c1e",
              "hostname": "ws-0042",
              "os": "linux",
              "agent_version": "0.1.0",
              "users": [
                "alice",
                "bob"
              ]
            }"#]],
    );
}

#[test]
fn enroll_response_json() {
    check(
        &enroll_response(),
        expect![[r#"
            {
              "device_id": "dev-3f9a",
              "credential": "cred-b71d0c",
              "signing_key": {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw",
                "kid": "--6IM5l0OosLj9yWskISYhUA3n_3CURQkmrYMSha_ck",
                "alg": "EdDSA",
                "use": "sig"
              }
            }"#]],
    );
}

#[test]
fn users_update_json() {
    check(
        &UsersUpdate {
            users: vec!["alice".into(), "carol".into()],
        },
        expect![[r#"
            {
              "users": [
                "alice",
                "carol"
              ]
            }"#]],
    );
}

#[test]
fn bundle_payload_json() {
    check(
        &bundle_payload(),
        expect![[r#"
            {
              "schema": "postwarden.bundle/v1",
              "device": "dev-3f9a",
              "serial": 7,
              "issued_at": "2026-05-04T09:30:00Z",
              "profile": {
                "id": "acme-mail",
                "version": 3,
                "toml": "id = \"acme-mail\"\nversion = 3\ntitle = \"ACME mail\"\n"
              },
              "variables": {
                "alice": {
                  "user.email": "alice@example.org"
                }
              }
            }"#]],
    );
}

#[test]
fn report_batch_json() {
    check(
        &report_batch(),
        expect![[r#"
        {
          "schema": "postwarden.report-batch/v1",
          "items": [
            {
              "id": "01969a1c-2f00-7000-8000-000000000001",
              "at": "2026-05-04T09:31:00Z",
              "kind": "report",
              "report": {
                "schema": "postwarden.report/v1",
                "run": "check",
                "compliant": true,
                "profile": {
                  "id": "acme-mail",
                  "version": 3,
                  "title": "ACME mail"
                },
                "generated_at": "2026-05-04T09:31:00Z",
                "controls": [],
                "findings": [
                  {
                    "control": "reply-address",
                    "client": "thunderbird",
                    "scope": "/home/alice/.thunderbird/x.default",
                    "target": "profile",
                    "status": "compliant",
                    "expected": true,
                    "actual": true,
                    "locked": true
                  }
                ]
              },
              "user": "alice"
            },
            {
              "id": "01969a1c-2f00-7000-8000-000000000002",
              "at": "2026-05-04T11:02:17.25+02:00",
              "kind": "event",
              "event": {
                "control": "require-tls",
                "client": "thunderbird",
                "user": "alice",
                "scope": "/home/alice/.thunderbird/x.default",
                "target": "server1",
                "setting": "mail.server.server1.socketType",
                "old": 3,
                "new": 0,
                "repaired": true,
                "status": "repaired"
              }
            }
          ]
        }"#]],
    );
    let back: ReportBatch =
        serde_json::from_str(&serde_json::to_string(&report_batch()).unwrap()).unwrap();
    assert_eq!(back, report_batch());
}

#[test]
fn drift_event_notified_is_written_only_when_known() {
    let event = DriftEvent {
        notified: Some(true),
        setting: None,
        ..drift_event()
    };
    check(
        &event,
        expect![[r#"
        {
          "control": "require-tls",
          "client": "thunderbird",
          "user": "alice",
          "scope": "/home/alice/.thunderbird/x.default",
          "target": "server1",
          "old": 3,
          "new": 0,
          "repaired": true,
          "status": "repaired",
          "notified": true
        }"#]],
    );
}

#[test]
fn notice_item_json() {
    let item = BatchItem {
        id: Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_0003),
        at: time("2026-05-04T11:05:00+02:00"),
        kind: BatchItemKind::Notice {
            notice: Notice {
                kind: NoticeKind::BundleRefused,
                detail: "bundle 8: the signature does not verify with the pinned key".into(),
                serial: Some(8),
            },
        },
    };
    check(
        &item,
        expect![[r#"
        {
          "id": "01969a1c-2f00-7000-8000-000000000003",
          "at": "2026-05-04T11:05:00+02:00",
          "kind": "notice",
          "notice": {
            "kind": "bundle_refused",
            "detail": "bundle 8: the signature does not verify with the pinned key",
            "serial": 8
          }
        }"#]],
    );
    let back: BatchItem = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
    assert_eq!(back, item);

    // Without a serial the member is absent; every kind is written as its `as_str`.
    for (kind, name) in [
        (NoticeKind::BundleRefused, "bundle_refused"),
        (NoticeKind::ProfileRefused, "profile_refused"),
        (NoticeKind::QueueShed, "queue_shed"),
    ] {
        let notice = Notice {
            kind,
            detail: "d".into(),
            serial: None,
        };
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(json, json!({"kind": name, "detail": "d"}));
        assert_eq!(kind.as_str(), name);
        assert_eq!(serde_json::from_value::<Notice>(json).unwrap(), notice);
    }
}

#[test]
fn drift_event_with_issue_10_members_json() {
    let event = DriftEvent {
        repaired: false,
        status: Status::Drifted,
        contested: true,
        changed_by: Some("Thunderbird (pid 42), which rewrites prefs.js when it exits".into()),
        note: Some("repaired 5 times within an hour; left alone until the next bundle".into()),
        merged: Some(3),
        ..drift_event()
    };
    check(
        &event,
        expect![[r#"
        {
          "control": "require-tls",
          "client": "thunderbird",
          "user": "alice",
          "scope": "/home/alice/.thunderbird/x.default",
          "target": "server1",
          "setting": "mail.server.server1.socketType",
          "old": 3,
          "new": 0,
          "repaired": false,
          "status": "drifted",
          "contested": true,
          "changed_by": "Thunderbird (pid 42), which rewrites prefs.js when it exits",
          "note": "repaired 5 times within an hour; left alone until the next bundle",
          "merged": 3
        }"#]],
    );
    let item = BatchItem {
        id: Uuid::from_u128(0x0196_9a1c_2f00_7000_8000_0000_0000_0004),
        at: time("2026-05-04T09:31:00Z"),
        kind: BatchItemKind::Event {
            event: event.clone(),
        },
    };
    let back: BatchItem = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
    assert_eq!(back, item);
    // An older agent's event (none of the four members) still reads, with their defaults.
    let old = json!({
        "control": "require-tls", "client": "thunderbird", "user": "alice",
        "scope": "/home/alice/.thunderbird/x.default", "target": "server1",
        "setting": "mail.server.server1.socketType", "old": 3, "new": 0, "repaired": true,
        "status": "repaired"
    });
    assert_eq!(
        serde_json::from_value::<DriftEvent>(old).unwrap(),
        drift_event()
    );
}

#[test]
fn drift_event_detected_at_is_rfc3339_and_optional() {
    // Issue 12: when the agent noticed the change, for the server's time to repair.
    let event = DriftEvent {
        detected_at: Some(time("2026-05-04T09:30:59.988Z")),
        ..drift_event()
    };
    check(
        &event,
        expect![[r#"
        {
          "control": "require-tls",
          "client": "thunderbird",
          "user": "alice",
          "scope": "/home/alice/.thunderbird/x.default",
          "target": "server1",
          "setting": "mail.server.server1.socketType",
          "old": 3,
          "new": 0,
          "repaired": true,
          "status": "repaired",
          "detected_at": "2026-05-04T09:30:59.988Z"
        }"#]],
    );
    // Any offset reads, as for `at`.
    let mut json = serde_json::to_value(&event).unwrap();
    json["detected_at"] = json!("2026-05-04T11:30:59.988+02:00");
    assert_eq!(
        serde_json::from_value::<DriftEvent>(json.clone()).unwrap(),
        event
    );
    // Not an RFC 3339 time: refused (the server's body parser names the path).
    json["detected_at"] = json!("yesterday");
    refused::<DriftEvent>(&json);
    json["detected_at"] = json!(1_746_351_059);
    refused::<DriftEvent>(&json);
    // `null` is the same as absent.
    json["detected_at"] = serde_json::Value::Null;
    assert_eq!(
        serde_json::from_value::<DriftEvent>(json).unwrap(),
        drift_event()
    );
}

#[test]
fn batch_response_json() {
    check(
        &BatchResponse {
            accepted: 2,
            duplicates: 1,
        },
        expect![[r#"
            {
              "accepted": 2,
              "duplicates": 1
            }"#]],
    );
}

#[test]
fn problem_json() {
    let profile_error = Profile::parse("upload.toml", "id = 1\n").unwrap_err();
    let problem = Problem {
        problem_type: "https://postwarden.example/problems/invalid-profile".into(),
        errors: Some(vec![FieldError::from(&profile_error)]),
        ..Problem::new(422, "Invalid profile", "the profile has 1 error")
    };
    check(
        &problem,
        expect![[r#"
        {
          "type": "https://postwarden.example/problems/invalid-profile",
          "title": "Invalid profile",
          "status": 422,
          "detail": "the profile has 1 error",
          "errors": [
            {
              "line": 1,
              "column": 6,
              "field": "id",
              "message": "invalid type: integer `1`, expected a string"
            }
          ]
        }"#]],
    );
    expect!["Invalid profile (422): the profile has 1 error; 1:6: field `id`: invalid type: integer `1`, expected a string"].assert_eq(&problem.to_string());
    check(
        &Problem::new(401, "Unauthorized", "the device credential is not valid"),
        expect![[r#"
            {
              "type": "about:blank",
              "title": "Unauthorized",
              "status": 401,
              "detail": "the device credential is not valid"
            }"#]],
    );
}

#[test]
fn problem_type_defaults_to_about_blank_and_extensions_are_ignored() {
    let problem: Problem = serde_json::from_value(json!({
        "title": "Not Found",
        "status": 404,
        "detail": "no such device",
        "instance": "/api/v1/devices/x",
        "trace_id": "abc"
    }))
    .unwrap();
    assert_eq!(problem, Problem::new(404, "Not Found", "no such device"));
    assert_eq!(problem.problem_type, ABOUT_BLANK);
}

// --- secrets ---

#[test]
fn debug_never_shows_secrets() {
    let request = format!("{:?}", enroll_request());
    let response = format!("{:?}", enroll_response());
    assert!(!request.contains("enroll-8f2c1e"), "{request}");
    assert!(!response.contains("cred-b71d0c"), "{response}");
    expect![[r#"EnrollRequest { token: <redacted>, hostname: "ws-0042", os: "linux", agent_version: "0.1.0", users: ["alice", "bob"] }"#]].assert_eq(&request);
    assert!(response.contains("credential: <redacted>"), "{response}");
}

// --- refusals ---

#[test]
fn unknown_fields_are_refused() {
    let batch = serde_json::to_value(report_batch()).unwrap();
    let errors = [
        refused::<EnrollRequest>(&with_member(
            serde_json::to_value(enroll_request()).unwrap(),
            "",
            "admin",
        )),
        refused::<EnrollResponse>(&with_member(
            serde_json::to_value(enroll_response()).unwrap(),
            "",
            "expires",
        )),
        refused::<UsersUpdate>(&json!({"users": [], "groups": []})),
        refused::<BundlePayload>(&with_member(
            serde_json::to_value(bundle_payload()).unwrap(),
            "",
            "extra",
        )),
        refused::<BundlePayload>(&with_member(
            serde_json::to_value(bundle_payload()).unwrap(),
            "/profile",
            "sha256",
        )),
        refused::<ReportBatch>(&with_member(batch.clone(), "", "agent")),
        refused::<ReportBatch>(&with_member(batch.clone(), "/items/0", "seq")),
        refused::<ReportBatch>(&with_member(batch.clone(), "/items/1", "report")),
        refused::<ReportBatch>(&with_member(batch, "/items/1/event", "severity")),
        refused::<BatchResponse>(&json!({"accepted": 1, "duplicates": 0, "rejected": 0})),
        refused::<FieldError>(&json!({"line": 1, "column": 1, "message": "m", "hint": "h"})),
    ];
    expect![[r#"
        unknown field `admin`, expected one of `token`, `hostname`, `os`, `agent_version`, `users`
        unknown field `expires`, expected one of `device_id`, `credential`, `signing_key`
        unknown field `groups`, expected `users`
        unknown field `extra`, expected one of `schema`, `device`, `serial`, `issued_at`, `profile`, `variables`, `preview`
        unknown field `sha256`, expected one of `id`, `version`, `toml`
        unknown field `agent`, expected `schema` or `items`
        unknown field `seq`, expected one of `id`, `at`, `report`, `user`
        unknown field `report`, expected one of `id`, `at`, `event`
        unknown field `severity`, expected one of `control`, `client`, `user`, `scope`, `target`, `setting`, `old`, `new`, `repaired`, `status`, `notified`, `contested`, `changed_by`, `note`, `merged`, `detected_at`
        unknown field `rejected`, expected `accepted` or `duplicates`
        unknown field `hint`, expected one of `line`, `column`, `field`, `message`"#]].assert_eq(&errors.join("\n"));
}

#[test]
fn other_schemas_are_refused() {
    let mut bundle = serde_json::to_value(bundle_payload()).unwrap();
    bundle["schema"] = json!("postwarden.bundle/v2");
    let mut batch = serde_json::to_value(report_batch()).unwrap();
    batch["schema"] = json!("postwarden.report/v1");
    let errors = [
        refused::<BundlePayload>(&bundle),
        refused::<ReportBatch>(&batch),
    ];
    expect![[r#"
        unsupported schema "postwarden.bundle/v2", expected "postwarden.bundle/v1"
        unsupported schema "postwarden.report/v1", expected "postwarden.report-batch/v1""#]]
    .assert_eq(&errors.join("\n"));
}

#[test]
fn wrong_shapes_are_refused() {
    let batch = serde_json::to_value(report_batch()).unwrap();
    let mut unknown_kind = batch.clone();
    unknown_kind["items"][1]["kind"] = json!("heartbeat");
    let mut bad_time = batch.clone();
    bad_time["items"][0]["at"] = json!("2026-05-04 09:31:00");
    let mut bad_id = batch.clone();
    bad_id["items"][0]["id"] = json!("item-1");
    let mut no_old = batch;
    no_old["items"][1]["event"]
        .as_object_mut()
        .unwrap()
        .remove("old");
    let mut negative_serial = serde_json::to_value(bundle_payload()).unwrap();
    negative_serial["serial"] = json!(-1);
    let errors = [
        refused::<ReportBatch>(&unknown_kind),
        refused::<ReportBatch>(&bad_time),
        refused::<ReportBatch>(&bad_id),
        refused::<ReportBatch>(&no_old),
        refused::<BundlePayload>(&negative_serial),
    ];
    expect![[r#"
        unknown variant `heartbeat`, expected one of `report`, `event`, `notice`, `preview`
        the 'offset hour' component could not be parsed
        UUID parsing failed: invalid character: found `i` at 0
        missing field `old`
        invalid value: integer `-1`, expected u64"#]]
    .assert_eq(&errors.join("\n"));
}

// --- the bundle's profile ---

#[test]
fn bundle_profile_parses_with_the_profile_language() {
    let profile = bundle_payload().profile().unwrap();
    assert_eq!(profile.id.0, "acme-mail");
    assert_eq!(profile.version.0, 3);
}

#[test]
fn bundle_profile_errors_name_the_bundle() {
    let mut payload = bundle_payload();
    payload.profile.toml.push_str("colour = \"red\"\n");
    expect!["bundle 7 (profile acme-mail v3):4:1: field `colour`: unknown field `colour`, expected one of `format`, `id`, `version`, `title`, `description`, `mode`, `controls`, `raw`, `account`, `agent`"].assert_eq(&payload.profile().unwrap_err().to_string());
}
