//! The store on both databases. Every scenario runs once on SQLite (a temporary file) and once
//! on PostgreSQL (a fresh database in the throwaway cluster of `postwarden_test_support::pg`):
//! the two schemas agree, migrations are idempotent, every admin change and its audit row are
//! one transaction, and what several replicas race for (a token's last uses, a serial advance,
//! the same batch twice) comes out as if it had run one after another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use postwarden_profiles::report::Status;
use postwarden_server_store::{
    Audit, Backend, Created, Enrolled, EventItem, EventQuery, FindingRow, IngestItem, IngestKind,
    NewDevice, NewEnrollmentToken, NewProfile, NoticeItem, NoticeRow, PutGroup, PutProfile,
    Refusal, Store, StoreError,
};
use sqlx::Row;

const NOW: i64 = 1_764_000_000_000;

/// Runs each `async fn(Db)` scenario once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Db::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Db::postgres()).await
            }
        }
    )*};
}

on_both!(
    migrations_are_idempotent,
    admin_tokens,
    profiles,
    groups,
    enrollment_tokens_count_uses_expire_and_revoke,
    concurrent_enrollments_on_two_stores_spend_each_use_once,
    variables_replace_and_a_bulk_upload_is_all_or_nothing,
    a_retired_device_is_refused_and_hidden,
    heartbeats_and_users,
    bundle_source_and_serial_compare_and_set,
    ingest_stores_each_item_once,
    events_keep_their_context_and_notices_are_stored_once,
    a_batch_of_every_kind_is_one_transaction,
    events_stored_before_migration_2_read_with_defaults,
    the_same_batch_from_two_stores_is_stored_once,
    concurrent_batches_fail_alone,
    current_findings_are_replaced_only_by_a_newer_report,
    events_filter_and_order,
    audit_rows_commit_with_their_change_only,
    notify_changed_moves_the_counter,
);

struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            _dir: Some(dir),
        }
    }

    fn postgres() -> Db {
        Db {
            url: postwarden_test_support::pg::database(),
            _dir: None,
        }
    }
}

/// A store on `db`, migrated. Several calls give several "replicas" on one database.
async fn open(db: &Db) -> Store {
    let s = Store::connect(&db.url, 8).await.unwrap();
    s.migrate().await.unwrap();
    s
}

fn audit(action: &'static str) -> Audit<'static> {
    Audit {
        actor: "tester",
        source: "127.0.0.1",
        action,
        target: "t",
        detail: serde_json::json!({"k": "v"}),
        at_ms: NOW,
    }
}

fn profile<'a>(id: &'a str, version: i64, sha256: &'a str) -> NewProfile<'a> {
    NewProfile {
        id,
        version,
        title: "Title",
        sha256,
        toml: sha256,
    }
}

/// Profile `p` version 1, group `office` assigned to it, and an enrollment token `enr_1` of
/// `uses` uses until `expires_ms`; returns the token's hash.
async fn with_token(s: &Store, uses: i64, expires_ms: i64) -> String {
    assert_eq!(
        s.put_profile(&profile("p", 1, "aa"), &audit("profile.upload"))
            .await
            .unwrap(),
        PutProfile::Created
    );
    assert_eq!(
        s.put_group("office", "p", 1, &audit("group.assign"))
            .await
            .unwrap(),
        PutGroup::Created
    );
    let hash = "token-hash".to_owned();
    assert!(s
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr_1",
                hash: &hash,
                group: "office",
                uses,
                expires_ms,
            },
            &audit("enrollment_token.create"),
        )
        .await
        .unwrap());
    hash
}

fn device_id(n: usize) -> String {
    format!("dev_{n:026}")
}

async fn enroll_as(s: &Store, token_hash: &str, n: usize, users: &[&str], now: i64) -> Enrolled {
    let id = device_id(n);
    let cred = format!("cred-{n}");
    let users: Vec<String> = users.iter().map(|u| (*u).to_owned()).collect();
    s.enroll(
        token_hash,
        &NewDevice {
            id: &id,
            credential_hash: &cred,
            hostname: &format!("host-{n}"),
            os: "linux",
            agent_version: "0.1.0",
            users: &users,
        },
        now,
    )
    .await
    .unwrap()
}

/// A store with `devices` enrolled devices (users alice and bob), ids `device_id(0..)`.
async fn with_devices(s: &Store, devices: usize) {
    let hash = with_token(s, 1000, NOW + 60_000).await;
    for n in 0..devices {
        assert!(matches!(
            enroll_as(s, &hash, n, &["alice", "bob"], NOW).await,
            Enrolled::Yes { .. }
        ));
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

fn finding(control: &str, status: Status) -> FindingRow {
    FindingRow {
        control: control.into(),
        client: "thunderbird".into(),
        scope: "/home/alice/.thunderbird/x.default".into(),
        target: "profile".into(),
        setting: Some(format!("{control}.pref")),
        status: status.as_str().into(),
        expected: "true".into(),
        actual: "false".into(),
        previous: None,
        locked: Some(true),
        reason: Some("because".into()),
        note: None,
        overridden_by: None,
    }
}

fn report(id: &str, at_ms: i64, user: &str, findings: Vec<FindingRow>) -> IngestItem {
    IngestItem {
        id: id.into(),
        at_ms,
        kind: IngestKind::Report {
            user: user.into(),
            report_json: format!("{{\"id\":\"{id}\"}}"),
            profile_id: "p".into(),
            profile_version: 1,
            compliant: false,
            findings,
        },
    }
}

fn event(id: &str, at_ms: i64, control: &str) -> IngestItem {
    IngestItem {
        id: id.into(),
        at_ms,
        kind: IngestKind::Event(EventItem {
            control: control.into(),
            client: "thunderbird".into(),
            user: "alice".into(),
            scope: "s".into(),
            target: "t".into(),
            setting: None,
            old: "1".into(),
            new: "2".into(),
            repaired: true,
            status: "repaired".into(),
            notified: Some(false),
            contested: false,
            changed_by: None,
            note: None,
            merged: 0,
            detected_ms: None,
        }),
    }
}

fn notice(id: &str, at_ms: i64, kind: &str, serial: Option<i64>) -> IngestItem {
    IngestItem {
        id: id.into(),
        at_ms,
        kind: IngestKind::Notice(NoticeItem {
            kind: kind.into(),
            detail: format!("detail of {id}"),
            serial,
        }),
    }
}

async fn count(s: &Store, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(s.pool())
        .await
        .unwrap()
        .get(0)
}

async fn audit_rows(s: &Store) -> usize {
    s.audit_log(1000, None).await.unwrap().len()
}

// --- schema ----------------------------------------------------------------------------------

/// `(table, column, type class, not null)`, explicit index names.
type Schema = (BTreeSet<(String, String, String, bool)>, BTreeSet<String>);

async fn schema(s: &Store) -> Schema {
    let (columns, indexes) = match s.backend() {
        Backend::Sqlite => (
            "SELECT m.name, p.name, LOWER(p.type), \
             CASE WHEN p.\"notnull\" = 1 OR (p.pk > 0 AND p.type = 'INTEGER') THEN 1 ELSE 0 END \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '_sqlx_migrations'",
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND name NOT LIKE 'sqlite_autoindex_%'",
        ),
        Backend::Postgres => (
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT), \
             CAST(data_type AS TEXT), CAST(CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END AS BIGINT) \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
            // Constraint indexes (primary keys, UNIQUE columns) are named by each database in
            // its own way; the explicit ones must agree.
            "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE schemaname = 'public' \
             AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'",
        ),
    };
    let class = |t: String| match t.as_str() {
        "bigint" | "integer" => "integer".to_owned(),
        "text" => "text".to_owned(),
        other => panic!("a column of type {other}: only BIGINT and TEXT are portable"),
    };
    let columns = sqlx::query(columns)
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), class(r.get(2)), r.get::<i64, _>(3) == 1))
        .collect();
    let indexes = sqlx::query(indexes)
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (columns, indexes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schemas_define_the_same_tables_columns_and_indexes() {
    let (a, b) = (Db::sqlite(), Db::postgres());
    let (sa, sb) = (open(&a).await, open(&b).await);
    let (ca, ia) = schema(&sa).await;
    let (cb, ib) = schema(&sb).await;
    let tables: BTreeSet<&str> = ca.iter().map(|c| c.0.as_str()).collect();
    // 19 + the rollouts of issue 12 (rollouts, preview_reports, preview_findings).
    assert_eq!(tables.len(), 22, "{tables:?}");
    assert!(ia.len() >= 10, "{ia:?}");
    let only = |x: &BTreeSet<_>, y: &BTreeSet<_>| x.difference(y).cloned().collect::<Vec<_>>();
    assert_eq!(
        (only(&ca, &cb), only(&cb, &ca)),
        (vec![], vec![]),
        "columns only on SQLite, only on PostgreSQL"
    );
    assert_eq!(ia, ib, "the explicit indexes differ");
}

async fn migrations_are_idempotent(db: Db) {
    let one = open(&db).await;
    one.migrate().await.unwrap();
    let before = schema(&one).await;
    // Another replica starting up migrates too (on PostgreSQL concurrently, under sqlx's
    // advisory lock).
    let two = Store::connect(&db.url, 2).await.unwrap();
    if one.backend() == Backend::Postgres {
        let (a, b) = tokio::join!(one.migrate(), two.migrate());
        a.unwrap();
        b.unwrap();
    } else {
        two.migrate().await.unwrap();
    }
    assert_eq!(schema(&two).await, before);
    assert_eq!(count(&one, "_sqlx_migrations").await, 6);
}

#[tokio::test]
async fn a_sqlite_file_is_created_private_and_bad_urls_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    Store::connect(&format!("sqlite://{}", path.display()), 1)
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let err = Store::connect("mysql://x", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Url(_)), "{err}");
    assert!(err.to_string().contains("mysql://x"), "{err}");
    let err = Store::connect("sqlite://:memory:", 1).await.unwrap_err();
    assert!(err.to_string().contains("in-memory"), "{err}");
    let missing = dir.path().join("no/such/dir/x.db");
    let err = Store::connect(&format!("sqlite://{}", missing.display()), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::File { .. }), "{err}");
}

// --- admin tokens, profiles, groups ----------------------------------------------------------

async fn admin_tokens(db: Db) {
    let s = open(&db).await;
    let a = audit("admin_token.create");
    assert_eq!(
        s.create_admin_token("ops", "h1", &a).await.unwrap(),
        Created::Yes
    );
    assert_eq!(
        s.create_admin_token("ops", "h2", &a).await.unwrap(),
        Created::Conflict,
        "a live token has that name"
    );
    assert_eq!(s.admin_by_hash("h1").await.unwrap().as_deref(), Some("ops"));
    assert_eq!(s.admin_by_hash("h2").await.unwrap(), None);
    assert_eq!(s.admin_by_hash("nope").await.unwrap(), None);
    let r = audit("admin_token.revoke");
    assert!(s.revoke_admin_token("ops", &r).await.unwrap());
    assert!(
        !s.revoke_admin_token("ops", &r).await.unwrap(),
        "already revoked"
    );
    assert!(!s.revoke_admin_token("nobody", &r).await.unwrap());
    assert_eq!(s.admin_by_hash("h1").await.unwrap(), None, "revoked");
    assert_eq!(
        s.create_admin_token("ops", "h3", &a).await.unwrap(),
        Created::Yes,
        "a revoked name may be used again"
    );
    assert_eq!(s.admin_by_hash("h3").await.unwrap().as_deref(), Some("ops"));
    let actions: Vec<String> = s
        .audit_log(100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "admin_token.create",
            "admin_token.revoke",
            "admin_token.create"
        ],
        "newest first; refused changes wrote none"
    );
}

async fn profiles(db: Db) {
    let s = open(&db).await;
    let up = audit("profile.upload");
    assert_eq!(
        s.put_profile(&profile("p", 2, "bb"), &up).await.unwrap(),
        PutProfile::Created
    );
    assert_eq!(
        s.put_profile(&profile("p", 2, "bb"), &up).await.unwrap(),
        PutProfile::Identical
    );
    assert_eq!(
        s.put_profile(&profile("p", 2, "cc"), &up).await.unwrap(),
        PutProfile::Conflict {
            existing_sha256: "bb".into()
        }
    );
    s.put_profile(&profile("p", 1, "aa"), &up).await.unwrap();
    s.put_profile(&profile("a", 7, "dd"), &up).await.unwrap();
    let listed: Vec<(String, i64)> = s
        .list_profiles()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.id, p.version))
        .collect();
    assert_eq!(
        listed,
        [("a".into(), 7), ("p".into(), 1), ("p".into(), 2)],
        "ordered by id and version"
    );
    let got = s.get_profile("p", 2).await.unwrap().unwrap();
    assert_eq!(got.toml, "bb", "the stored text is the first upload's");
    assert_eq!(
        (got.info.sha256.as_str(), got.info.uploaded_by.as_str()),
        ("bb", "tester")
    );
    assert_eq!(got.info.uploaded_ms, NOW);
    assert!(s.get_profile("p", 3).await.unwrap().is_none());
    assert_eq!(audit_rows(&s).await, 3, "only the three created versions");
}

async fn groups(db: Db) {
    let s = open(&db).await;
    let g = audit("group.assign");
    assert_eq!(
        s.put_group("office", "p", 1, &g).await.unwrap(),
        PutGroup::UnknownProfile
    );
    assert!(!s.group_exists("office").await.unwrap());
    let hash = with_token(&s, 10, NOW + 60_000).await; // p/1, office created
    s.put_profile(&profile("p", 2, "bb"), &audit("profile.upload"))
        .await
        .unwrap();
    assert_eq!(
        s.put_group("office", "p", 2, &g).await.unwrap(),
        PutGroup::Updated
    );
    let later = Audit {
        at_ms: NOW + 5,
        ..audit("group.assign")
    };
    // Rollback: an older version assigned again.
    assert_eq!(
        s.put_group("office", "p", 1, &later).await.unwrap(),
        PutGroup::Updated
    );
    assert_eq!(
        s.put_group("lab", "p", 2, &g).await.unwrap(),
        PutGroup::Created
    );
    for n in 0..3 {
        enroll_as(&s, &hash, n, &[], NOW).await;
    }
    s.retire_device(&device_id(0), &audit("device.retire"))
        .await
        .unwrap();
    let groups: Vec<(String, String, i64, i64, i64)> = s
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| {
            (
                g.name,
                g.profile_id,
                g.profile_version,
                g.updated_ms,
                g.devices,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("lab".into(), "p".into(), 2, NOW, 0),
            ("office".into(), "p".into(), 1, NOW + 5, 2),
        ],
        "by name, with the live devices only"
    );
    assert!(s.group_exists("office").await.unwrap());
    assert!(!s.group_exists("Office").await.unwrap());
}

// --- enrollment ------------------------------------------------------------------------------

async fn enrollment_tokens_count_uses_expire_and_revoke(db: Db) {
    let s = open(&db).await;
    let expires = NOW + 1_000;
    let hash = with_token(&s, 2, expires).await;
    assert!(
        !s.create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr_2",
                hash: "h2",
                group: "nowhere",
                uses: 1,
                expires_ms: expires,
            },
            &audit("enrollment_token.create"),
        )
        .await
        .unwrap(),
        "unknown group"
    );
    assert_eq!(
        enroll_as(&s, "unknown-hash", 0, &[], NOW).await,
        Enrolled::Refused(Refusal::Unknown)
    );
    assert_eq!(
        enroll_as(&s, &hash, 1, &["alice"], NOW).await,
        Enrolled::Yes {
            group: "office".into()
        }
    );
    assert_eq!(
        enroll_as(&s, &hash, 2, &[], expires).await,
        Enrolled::Refused(Refusal::Expired),
        "expired at expires_ms"
    );
    assert_eq!(
        enroll_as(&s, &hash, 3, &[], expires - 1).await,
        Enrolled::Yes {
            group: "office".into()
        }
    );
    assert_eq!(
        enroll_as(&s, &hash, 4, &[], NOW).await,
        Enrolled::Refused(Refusal::UsedUp)
    );
    let r = audit("enrollment_token.revoke");
    assert!(s.revoke_enrollment_token("enr_1", &r).await.unwrap());
    assert!(!s.revoke_enrollment_token("enr_1", &r).await.unwrap());
    assert!(!s.revoke_enrollment_token("enr_9", &r).await.unwrap());
    assert_eq!(
        enroll_as(&s, &hash, 5, &[], expires + 1).await,
        Enrolled::Refused(Refusal::Revoked),
        "revoked comes before expired"
    );
    let devices: Vec<(String, String, Vec<String>)> = s
        .list_devices(None, true)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.group, d.users))
        .collect();
    assert_eq!(
        devices,
        [
            (device_id(1), "office".into(), vec!["alice".into()]),
            (device_id(3), "office".into(), vec![]),
        ],
        "refused enrollments inserted nothing"
    );
    let d = s.get_device(&device_id(3)).await.unwrap().unwrap();
    assert_eq!(
        (d.enrolled_ms, d.last_seen_ms, d.serial, d.retired_ms),
        (expires - 1, expires - 1, 0, None)
    );
    assert_eq!((d.hostname.as_str(), d.os.as_str()), ("host-3", "linux"));
    let uses_left: i64 = sqlx::query("SELECT uses_left FROM enrollment_tokens WHERE id = 'enr_1'")
        .fetch_one(s.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(uses_left, 0);
}

async fn concurrent_enrollments_on_two_stores_spend_each_use_once(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    let hash = with_token(&one, 5, NOW + 60_000).await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let hash = hash.clone();
        tasks.push(tokio::spawn(async move {
            enroll_as(&store, &hash, n, &["alice"], NOW).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Enrolled::Yes { group } => {
                assert_eq!(group, "office");
                won += 1;
            }
            Enrolled::Refused(r) => assert_eq!(r, Refusal::UsedUp),
        }
    }
    assert_eq!(won, 5, "a 5-use token enrolled {won} devices");
    assert_eq!(two.list_devices(None, true).await.unwrap().len(), 5);
}

// --- variables -------------------------------------------------------------------------------

async fn variables_replace_and_a_bulk_upload_is_all_or_nothing(db: Db) {
    let s = open(&db).await;
    let v = audit("user_variables.put");
    s.put_user_variables("alice", &vars(&[("a", "1"), ("b", "2")]), &v)
        .await
        .unwrap();
    s.put_user_variables("alice", &vars(&[("a", "3")]), &v)
        .await
        .unwrap();
    s.put_user_variables(r"CORP\bob", &vars(&[("user.email", "b@x")]), &v)
        .await
        .unwrap();
    let got = s
        .variables_for(&["alice".into(), r"CORP\bob".into(), "carol".into()])
        .await
        .unwrap();
    assert_eq!(
        got["alice"],
        vars(&[("a", "3")]),
        "a set replaces the old set"
    );
    assert_eq!(got[r"CORP\bob"], vars(&[("user.email", "b@x")]));
    assert!(
        !got.contains_key("carol"),
        "users without variables are absent"
    );
    s.put_user_variables(r"CORP\bob", &BTreeMap::new(), &v)
        .await
        .unwrap();
    assert!(s
        .variables_for(&[r"CORP\bob".into()])
        .await
        .unwrap()
        .is_empty());

    // A bulk upload larger than one statement: 2,500 users, three variables each; a user
    // listed twice keeps the last row.
    let mut rows: Vec<(String, BTreeMap<String, String>)> = (0..2500)
        .map(|i| {
            (
                format!("user{i:04}"),
                vars(&[("user.email", &format!("u{i}@x")), ("x", "1"), ("y", "2")]),
            )
        })
        .collect();
    rows.push(("user0000".into(), vars(&[("user.email", "last@x")])));
    let audits = audit_rows(&s).await;
    s.put_many_user_variables(&rows, &audit("user_variables.upload"))
        .await
        .unwrap();
    assert_eq!(
        audit_rows(&s).await,
        audits + 1,
        "one audit row for the upload"
    );
    let users: Vec<String> = rows.iter().map(|(u, _)| u.clone()).collect();
    let got = s.variables_for(&users).await.unwrap();
    assert_eq!(got.len(), 2500);
    assert_eq!(got["user0000"], vars(&[("user.email", "last@x")]));
    assert_eq!(got["user2499"]["user.email"], "u2499@x");

    // A row the database refuses (an empty user key) fails the whole upload: nothing of it
    // is stored, not even the rows before it, and no audit row.
    let bad = vec![
        ("alice".to_owned(), vars(&[("a", "changed")])),
        ("zed".to_owned(), vars(&[("a", "new")])),
        (String::new(), vars(&[("a", "x")])),
    ];
    let err = s
        .put_many_user_variables(&bad, &audit("user_variables.upload"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err}");
    let got = s
        .variables_for(&["alice".into(), "zed".into()])
        .await
        .unwrap();
    assert_eq!(got["alice"], vars(&[("a", "3")]));
    assert!(!got.contains_key("zed"));
    assert_eq!(audit_rows(&s).await, audits + 1);
}

// --- devices ---------------------------------------------------------------------------------

async fn a_retired_device_is_refused_and_hidden(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 2).await;
    let auth = s.device_by_credential("cred-0").await.unwrap().unwrap();
    assert_eq!(
        (auth.id.as_str(), auth.group.as_str(), auth.retired),
        (device_id(0).as_str(), "office", false)
    );
    assert!(s.device_by_credential("cred-9").await.unwrap().is_none());
    let retire = Audit {
        at_ms: NOW + 7,
        ..audit("device.retire")
    };
    assert!(s.retire_device(&device_id(0), &retire).await.unwrap());
    assert!(!s.retire_device(&device_id(0), &retire).await.unwrap());
    assert!(!s.retire_device("dev_none", &retire).await.unwrap());
    let auth = s.device_by_credential("cred-0").await.unwrap().unwrap();
    assert!(auth.retired, "its credential stops working at once");
    assert!(s.bundle_source(&device_id(0)).await.unwrap().is_none());
    assert!(s.bundle_source(&device_id(1)).await.unwrap().is_some());
    let live: Vec<String> = s
        .list_devices(None, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(live, [device_id(1)]);
    let all = s.list_devices(Some("office"), true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].retired_ms, Some(NOW + 7));
    assert!(s.list_devices(Some("lab"), true).await.unwrap().is_empty());
}

async fn heartbeats_and_users(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 3).await;
    let (a, b) = (device_id(0), device_id(1));
    s.touch_devices(&[
        (a.clone(), NOW + 10, None),
        (b.clone(), NOW + 30, Some(4)),
        (a.clone(), NOW + 20, Some(2)),
        (a.clone(), NOW + 15, None),
        ("dev_unknown".into(), NOW + 99, Some(1)),
    ])
    .await
    .unwrap();
    // Time only moves forward; a later heartbeat without a serial keeps the one stored.
    s.touch_devices(&[(b.clone(), NOW + 5, None)])
        .await
        .unwrap();
    s.touch_devices(&[]).await.unwrap();
    let get = |id: String| {
        let s = s.clone();
        async move { s.get_device(&id).await.unwrap().unwrap() }
    };
    let (da, db_, dc) = (
        get(a.clone()).await,
        get(b.clone()).await,
        get(device_id(2)).await,
    );
    assert_eq!((da.last_seen_ms, da.applied_serial), (NOW + 20, Some(2)));
    assert_eq!((db_.last_seen_ms, db_.applied_serial), (NOW + 30, Some(4)));
    assert_eq!((dc.last_seen_ms, dc.applied_serial), (NOW, None));

    s.set_device_users(&a, &["carol".into(), r"CORP\dave".into()], NOW + 40)
        .await
        .unwrap();
    let da = get(a.clone()).await;
    assert_eq!(da.users, ["carol", r"CORP\dave"]);
    assert_eq!(da.last_seen_ms, NOW + 40, "counts as a heartbeat");
    let err = s.set_device_users("dev_none", &[], NOW).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownDevice(_)), "{err}");
}

async fn bundle_source_and_serial_compare_and_set(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    with_devices(&one, 1).await;
    let dev = device_id(0);
    one.put_user_variables("alice", &vars(&[("user.email", "a@x")]), &audit("v"))
        .await
        .unwrap();
    one.put_user_variables("mallory", &vars(&[("user.email", "m@x")]), &audit("v"))
        .await
        .unwrap();
    let src = one.bundle_source(&dev).await.unwrap().unwrap();
    assert_eq!(
        (
            src.group.as_str(),
            src.profile_id.as_str(),
            src.profile_version
        ),
        ("office", "p", 1)
    );
    assert_eq!(src.profile_toml, "aa");
    assert_eq!(src.users, ["alice", "bob"]);
    assert_eq!(
        src.variables.keys().collect::<Vec<_>>(),
        ["alice"],
        "only the device's users' variables"
    );
    assert_eq!(
        (src.serial, src.fingerprint.as_deref(), src.issued_ms),
        (0, None, NOW)
    );

    // Both replicas see no fingerprint and race to "f1": one advance.
    let (a, b) = tokio::join!(
        one.advance_serial(&dev, None, "f1", NOW + 1),
        two.advance_serial(&dev, None, "f1", NOW + 2)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.0, a.1.as_str()), (1, "f1"));
    assert_eq!(a, b, "the loser reads the winner's advance");
    // A stale compare does not move it.
    let stale = one.advance_serial(&dev, None, "f2", NOW + 3).await.unwrap();
    assert_eq!(stale, a);
    // Many replicas racing from "f1" to different content: exactly one wins.
    let racers: Vec<_> = (0..10)
        .map(|i| {
            let s = if i % 2 == 0 { one.clone() } else { two.clone() };
            let dev = dev.clone();
            tokio::spawn(async move {
                s.advance_serial(&dev, Some("f1"), &format!("g{i}"), NOW + 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = BTreeSet::new();
    for r in racers {
        results.insert(r.await.unwrap());
    }
    assert_eq!(results.len(), 1, "{results:?}");
    let (serial, fp, issued) = results.pop_first().unwrap();
    assert_eq!((serial, issued), (2, NOW + 10));
    let src = two.bundle_source(&dev).await.unwrap().unwrap();
    assert_eq!(
        (src.serial, src.fingerprint, src.issued_ms),
        (2, Some(fp), NOW + 10)
    );
    let err = one
        .advance_serial("dev_none", None, "x", NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownDevice(_)), "{err}");
}

// --- reports and events ----------------------------------------------------------------------

async fn ingest_stores_each_item_once(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 1).await;
    let dev = device_id(0);
    let findings: Vec<FindingRow> = (0..1500)
        .map(|i| finding(&format!("c{i:04}"), Status::Drifted))
        .collect();
    let mut batch = vec![
        report("r1", NOW + 1, "alice", findings),
        event("e1", NOW + 2, "c0001"),
        event("e2", NOW + 3, "c0002"),
    ];
    batch.extend((0..1200).map(|i| event(&format!("bulk{i:04}"), NOW + 4, "c0003")));
    batch.extend((0..5000).map(|i| notice(&format!("n{i:04}"), NOW + 5, "queue_shed", None)));
    batch.push(event("e1", NOW + 2, "c0001")); // the same id again in the batch
    batch.push(notice("n0001", NOW + 2, "queue_shed", None)); // and a notice's
    let done = s.ingest(&dev, &batch, NOW + 100).await.unwrap();
    assert_eq!((done.accepted, done.duplicates), (6203, 2));
    let again = s.ingest(&dev, &batch, NOW + 200).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicates),
        (0, 6205),
        "a retried batch"
    );
    assert_eq!(count(&s, "reports").await, 1);
    assert_eq!(count(&s, "events").await, 1202);
    assert_eq!(count(&s, "notices").await, 5000);
    assert_eq!(count(&s, "current_findings").await, 1500);
    let d = s.get_device(&dev).await.unwrap().unwrap();
    assert_eq!(d.last_seen_ms, NOW + 200, "every batch is a heartbeat");
    assert_eq!(d.last_report_ms, Some(NOW + 1));
    assert_eq!(d.applied_profile, Some(("p".into(), 1)));
    let history = s.reports_of(&dev, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].received_ms, history[0].report_json.as_str()),
        (NOW + 100, "{\"id\":\"r1\"}")
    );
    // An id is unique per device: another device may use it.
    let hash = "token-hash";
    enroll_as(&s, hash, 7, &[], NOW).await;
    let other = s
        .ingest(&device_id(7), &[event("e1", NOW, "c")], NOW)
        .await
        .unwrap();
    assert_eq!(other.accepted, 1);
    let err = s
        .ingest("dev_none", &[event("x", NOW, "c")], NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownDevice(_)), "{err}");
    assert_eq!(count(&s, "events").await, 1203, "nothing stored for it");
}

async fn events_keep_their_context_and_notices_are_stored_once(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 2).await;
    let (a, b) = (device_id(0), device_id(1));
    let mut contested = event("e1", NOW + 1, "c1");
    if let IngestKind::Event(e) = &mut contested.kind {
        e.contested = true;
        e.changed_by = Some("Thunderbird (pid 42), which rewrites prefs.js when it exits".into());
        e.note = Some("repaired 5 times within an hour;\nleft alone until the next bundle".into());
        e.merged = 7;
    }
    let batch = [
        contested,
        notice("n1", NOW + 1, "bundle_refused", Some(9)),
        notice("n2", NOW + 3, "queue_shed", None),
        notice("n3", NOW + 2, "profile_refused", Some(i64::MAX)),
    ];
    let done = s.ingest(&a, &batch, NOW + 10).await.unwrap();
    assert_eq!((done.accepted, done.duplicates), (4, 0));
    let again = s.ingest(&a, &batch, NOW + 20).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicates),
        (0, 4),
        "a replayed batch"
    );
    // Another device may use the same ids.
    let other = s
        .ingest(&b, &[notice("n1", NOW, "queue_shed", None)], NOW + 30)
        .await
        .unwrap();
    assert_eq!((other.accepted, other.duplicates), (1, 0));

    let all = EventQuery {
        limit: 10,
        ..Default::default()
    };
    let e = &s.events(&all).await.unwrap()[0];
    assert_eq!(
        (
            e.contested,
            e.changed_by.as_deref(),
            e.note.as_deref(),
            e.merged
        ),
        (
            true,
            Some("Thunderbird (pid 42), which rewrites prefs.js when it exits"),
            Some("repaired 5 times within an hour;\nleft alone until the next bundle"),
            7
        )
    );
    let plain = s.ingest(&b, &[event("e9", NOW, "c1")], NOW).await.unwrap();
    assert_eq!(plain.accepted, 1);
    let e = &s
        .events(&EventQuery {
            device: Some(&b),
            ..all
        })
        .await
        .unwrap()[0];
    assert_eq!(
        (
            e.contested,
            e.changed_by.as_deref(),
            e.note.as_deref(),
            e.merged
        ),
        (false, None, None, 0)
    );

    let row = |id: &str, at_ms: i64, kind: &str, serial: Option<i64>| NoticeRow {
        item_id: id.into(),
        at_ms,
        received_ms: NOW + 10,
        kind: kind.into(),
        detail: format!("detail of {id}"),
        serial,
    };
    assert_eq!(
        s.notices_of(&a, 10).await.unwrap(),
        [
            row("n2", NOW + 3, "queue_shed", None),
            row("n3", NOW + 2, "profile_refused", Some(i64::MAX)),
            row("n1", NOW + 1, "bundle_refused", Some(9)),
        ],
        "newest first, received at the first delivery"
    );
    let newest: Vec<String> = s
        .notices_of(&a, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.item_id)
        .collect();
    assert_eq!(newest, ["n2", "n3"]);
    assert_eq!(s.notices_of(&b, 10).await.unwrap().len(), 1);
    assert!(s.notices_of("dev_none", 10).await.unwrap().is_empty());
}

/// Reports, events and notices of one batch are stored together or not at all: a notice the
/// database refuses (an empty item id), stored last, takes the batch's reports, events and
/// other notices with it, and the device's report state stays as it was.
async fn a_batch_of_every_kind_is_one_transaction(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 1).await;
    let dev = device_id(0);
    let mixed = |bad: Option<IngestItem>| {
        let mut batch = vec![
            report("r1", NOW + 1, "alice", vec![finding("c1", Status::Drifted)]),
            event("e1", NOW + 2, "c1"),
            notice("n1", NOW + 3, "bundle_refused", Some(4)),
        ];
        batch.extend(bad);
        batch
    };
    let tables = [
        "reports",
        "current_reports",
        "current_findings",
        "events",
        "notices",
    ];
    for bad in [
        notice("", NOW, "queue_shed", None),
        event("", NOW, "c1"),
        report("", NOW, "bob", vec![]),
    ] {
        let err = s
            .ingest(&dev, &mixed(Some(bad)), NOW + 100)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Db(_)), "{err}");
        for t in tables {
            assert_eq!(count(&s, t).await, 0, "{t}: nothing of the failed batch");
        }
        let d = s.get_device(&dev).await.unwrap().unwrap();
        assert_eq!((d.last_report_ms, d.applied_profile), (None, None));
    }
    let done = s.ingest(&dev, &mixed(None), NOW + 100).await.unwrap();
    assert_eq!((done.accepted, done.duplicates), (3, 0));
    for t in tables {
        assert_eq!(count(&s, t).await, 1, "{t}");
    }
}

/// Events stored under schema 1 read as not contested, nothing folded, no changed_by or note.
async fn events_stored_before_migration_2_read_with_defaults(db: Db) {
    let s = Store::connect(&db.url, 4).await.unwrap();
    let folder = match s.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let only_1 = tempfile::tempdir().unwrap();
    let first = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder)
        .join("0001_initial.sql");
    std::fs::copy(&first, only_1.path().join("0001_initial.sql")).unwrap();
    sqlx::migrate::Migrator::new(only_1.path())
        .await
        .unwrap()
        .run(s.pool())
        .await
        .unwrap();
    with_devices(&s, 1).await;
    sqlx::query(
        "INSERT INTO events (device_id, item_id, at_ms, received_ms, control, client, user_key, \
         scope, target, setting, old_value, new_value, repaired, status, notified) \
         VALUES ($1, 'old', $2, $2, 'c1', 'thunderbird', 'alice', 's', 't', NULL, '1', '2', 1, \
         'repaired', NULL)",
    )
    .bind(device_id(0))
    .bind(NOW)
    .execute(s.pool())
    .await
    .unwrap();
    s.migrate().await.unwrap();
    assert_eq!(count(&s, "_sqlx_migrations").await, 6);
    let e = &s
        .events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[0];
    assert_eq!(
        (
            e.item_id.as_str(),
            e.contested,
            e.changed_by.as_deref(),
            e.note.as_deref(),
            e.merged
        ),
        ("old", false, None, None, 0)
    );
    assert_eq!(count(&s, "notices").await, 0);
}

async fn the_same_batch_from_two_stores_is_stored_once(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    with_devices(&one, 1).await;
    let dev = device_id(0);
    let mut batch: Vec<IngestItem> = (0..50)
        .map(|i| event(&format!("e{i:02}"), NOW + i, "c"))
        .collect();
    for i in 0..5 {
        let findings = vec![
            finding("c1", Status::Drifted),
            finding("c2", Status::Compliant),
        ];
        batch.push(report(&format!("r{i}"), NOW + i, "alice", findings));
    }
    for round in 0..5 {
        let (a, b) = tokio::join!(
            one.ingest(&dev, &batch, NOW + 100),
            two.ingest(&dev, &batch, NOW + 100)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let expected = if round == 0 { 55 } else { 0 };
        assert_eq!(a.accepted + b.accepted, expected, "round {round}");
        assert_eq!(a.duplicates + b.duplicates, 110 - expected, "round {round}");
    }
    assert_eq!(count(&one, "events").await, 50);
    assert_eq!(count(&one, "reports").await, 5);
    assert_eq!(
        one.current_findings(None, None).await.unwrap().len(),
        2,
        "the newest report's findings, once"
    );
}

/// Many batches at once (on SQLite they share group-commit transactions): one for an unknown
/// device and one the database refuses (an empty item id) fail, each alone, with their own
/// error; every other batch is stored and answered with its own counts.
async fn concurrent_batches_fail_alone(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 4).await;
    let mut tasks = Vec::new();
    for n in 0..40usize {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let device = match n {
                13 => "dev_unknown".to_owned(),
                _ => device_id(n % 4),
            };
            let mut batch = vec![
                event(&format!("e{n}"), NOW + n as i64, "c"),
                report(
                    &format!("r{n}"),
                    NOW + n as i64,
                    "alice",
                    vec![finding("c1", Status::Drifted)],
                ),
                notice(&format!("n{n}"), NOW + n as i64, "queue_shed", None),
            ];
            if n == 27 {
                batch.push(event("", NOW, "c"));
            }
            if n % 5 == 0 {
                batch.push(event(&format!("e{n}"), NOW, "c")); // a repeat within the batch
            }
            (n, s.ingest(&device, &batch, NOW + 1000).await)
        }));
    }
    for t in tasks {
        let (n, result) = t.await.unwrap();
        match n {
            13 => assert!(
                matches!(result, Err(StoreError::UnknownDevice(_))),
                "{result:?}"
            ),
            27 => assert!(matches!(result, Err(StoreError::Db(_))), "{result:?}"),
            _ => {
                let done = result.unwrap();
                let repeats = u64::from(n % 5 == 0);
                assert_eq!((done.accepted, done.duplicates), (3, repeats), "batch {n}");
            }
        }
    }
    assert_eq!(count(&s, "events").await, 38);
    assert_eq!(count(&s, "reports").await, 38);
    assert_eq!(count(&s, "notices").await, 38);
    let ids: BTreeSet<String> = s
        .reports_of(&device_id(3), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item_id)
        .collect();
    assert!(!ids.contains("r27") && ids.contains("r31"), "{ids:?}");
    // Device 3's newest report is r39: its findings are current.
    let current = s.current_findings(None, None).await.unwrap();
    let of_3: Vec<i64> = current
        .iter()
        .filter(|f| f.device_id == device_id(3))
        .map(|f| f.at_ms)
        .collect();
    assert_eq!(of_3, [NOW + 39]);
}

async fn current_findings_are_replaced_only_by_a_newer_report(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 3).await;
    let (a, b) = (device_id(0), device_id(1));
    let statuses = |rows: &[postwarden_server_store::CurrentFinding]| -> Vec<(String, String, String, Status)> {
        rows.iter()
            .map(|f| (f.device_id.clone(), f.user.clone(), f.control.clone(), f.status))
            .collect()
    };
    s.ingest(
        &a,
        &[report(
            "a-10",
            NOW + 10,
            "alice",
            vec![
                finding("c1", Status::Drifted),
                finding("c2", Status::Failed),
            ],
        )],
        NOW + 100,
    )
    .await
    .unwrap();
    // An older report arriving late: history only.
    s.ingest(
        &a,
        &[report(
            "a-05",
            NOW + 5,
            "alice",
            vec![finding("c1", Status::Compliant)],
        )],
        NOW + 101,
    )
    .await
    .unwrap();
    // Another user of the same device has findings of its own.
    s.ingest(
        &a,
        &[report(
            "a-bob",
            NOW + 6,
            "bob",
            vec![finding("c1", Status::Repaired)],
        )],
        NOW + 102,
    )
    .await
    .unwrap();
    let now = s.current_findings(None, None).await.unwrap();
    assert_eq!(
        statuses(&now),
        [
            (a.clone(), "alice".into(), "c1".into(), Status::Drifted),
            (a.clone(), "alice".into(), "c2".into(), Status::Failed),
            (a.clone(), "bob".into(), "c1".into(), Status::Repaired),
        ]
    );
    let f = &now[0];
    assert_eq!(
        (f.at_ms, f.last_seen_ms, f.locked, f.reason.as_deref()),
        (NOW + 10, NOW + 102, Some(true), Some("because"))
    );
    assert_eq!((f.expected.as_str(), f.actual.as_str()), ("true", "false"));
    // A newer one replaces alice's rows, all of them; in one batch with an older one, the
    // newest counts whatever the order.
    s.ingest(
        &a,
        &[
            report(
                "a-30",
                NOW + 30,
                "alice",
                vec![finding("c1", Status::Compliant)],
            ),
            report(
                "a-20",
                NOW + 20,
                "alice",
                vec![finding("c9", Status::Drifted)],
            ),
        ],
        NOW + 103,
    )
    .await
    .unwrap();
    // Equal times: the larger item id wins, on every replica alike.
    s.ingest(
        &b,
        &[report(
            "b-x",
            NOW + 50,
            "alice",
            vec![finding("c1", Status::Drifted)],
        )],
        NOW + 104,
    )
    .await
    .unwrap();
    s.ingest(
        &b,
        &[report(
            "b-a",
            NOW + 50,
            "alice",
            vec![finding("c1", Status::Compliant)],
        )],
        NOW + 105,
    )
    .await
    .unwrap();
    let now = s.current_findings(None, None).await.unwrap();
    assert_eq!(
        statuses(&now),
        [
            (a.clone(), "alice".into(), "c1".into(), Status::Compliant),
            (a.clone(), "bob".into(), "c1".into(), Status::Repaired),
            (b.clone(), "alice".into(), "c1".into(), Status::Drifted),
        ]
    );
    let history: Vec<String> = s
        .reports_of(&a, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item_id)
        .collect();
    assert_eq!(
        history,
        ["a-30", "a-20", "a-10", "a-bob", "a-05"],
        "newest first"
    );
    assert_eq!(s.reports_of(&a, 2).await.unwrap().len(), 2);
    let d = s.get_device(&a).await.unwrap().unwrap();
    assert_eq!(d.last_report_ms, Some(NOW + 30));

    // Filters: by control, by group; retired devices are left out.
    let c1 = s.current_findings(None, Some("c1")).await.unwrap();
    assert_eq!(c1.len(), 3);
    assert!(s
        .current_findings(Some("lab"), None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.current_findings(Some("office"), Some("c1"))
            .await
            .unwrap()
            .len(),
        3
    );
    s.retire_device(&b, &audit("device.retire")).await.unwrap();
    let c1 = s.current_findings(None, Some("c1")).await.unwrap();
    assert!(c1.iter().all(|f| f.device_id == a), "{c1:?}");
}

async fn events_filter_and_order(db: Db) {
    let s = open(&db).await;
    with_devices(&s, 2).await;
    let (a, b) = (device_id(0), device_id(1));
    s.ingest(
        &a,
        &[
            event("a1", NOW + 1, "c1"),
            event("a2", NOW + 2, "c2"),
            event("a3", NOW + 3, "c1"),
        ],
        NOW + 10,
    )
    .await
    .unwrap();
    s.ingest(
        &b,
        &[event("b2", NOW + 2, "c1"), event("b4", NOW + 4, "c2")],
        NOW + 11,
    )
    .await
    .unwrap();
    let all = EventQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&s, all.clone()).await,
        ["b4", "a3", "a2", "b2", "a1"],
        "newest first, ties by device"
    );
    assert_eq!(
        ids(
            &s,
            EventQuery {
                device: Some(&a),
                ..all.clone()
            }
        )
        .await,
        ["a3", "a2", "a1"]
    );
    assert_eq!(
        ids(
            &s,
            EventQuery {
                control: Some("c1"),
                ..all.clone()
            }
        )
        .await,
        ["a3", "b2", "a1"]
    );
    assert_eq!(
        ids(
            &s,
            EventQuery {
                since_ms: Some(NOW + 2),
                until_ms: Some(NOW + 4),
                ..all.clone()
            }
        )
        .await,
        ["a3", "a2", "b2"],
        "since inclusive, until exclusive"
    );
    assert_eq!(
        ids(
            &s,
            EventQuery {
                device: Some(&b),
                control: Some("c2"),
                since_ms: Some(NOW),
                ..all.clone()
            }
        )
        .await,
        ["b4"]
    );
    assert_eq!(
        ids(
            &s,
            EventQuery {
                limit: 2,
                ..all.clone()
            }
        )
        .await,
        ["b4", "a3"]
    );
    assert_eq!(ids(&s, EventQuery::default()).await.len(), 1, "limit ≥ 1");
    let e = &s.events(&all).await.unwrap()[0];
    assert_eq!(
        (
            e.device_id.as_str(),
            e.received_ms,
            e.repaired,
            e.notified,
            e.old.as_str(),
            e.new.as_str(),
            e.status.as_str()
        ),
        (
            b.as_str(),
            NOW + 11,
            true,
            Some(false),
            "1",
            "2",
            "repaired"
        )
    );
}

async fn ids(s: &Store, q: EventQuery<'_>) -> Vec<String> {
    s.events(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.item_id)
        .collect()
}

// --- audit -----------------------------------------------------------------------------------

async fn audit_rows_commit_with_their_change_only(db: Db) {
    let s = open(&db).await;
    with_token(&s, 1, NOW + 60_000).await;
    let before = audit_rows(&s).await;
    assert_eq!(before, 3);
    // Refused changes: no row.
    assert_eq!(
        s.put_group("office", "p", 9, &audit("group.assign"))
            .await
            .unwrap(),
        PutGroup::UnknownProfile
    );
    assert!(!s
        .retire_device("dev_none", &audit("device.retire"))
        .await
        .unwrap());
    // A change the database refuses half-way (the token id exists already): no row either.
    let err = s
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr_1",
                hash: "other-hash",
                group: "office",
                uses: 1,
                expires_ms: NOW + 1,
            },
            &audit("enrollment_token.create"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err}");
    assert_eq!(audit_rows(&s).await, before);

    let detail = Audit {
        actor: "ops",
        source: "10.0.0.1",
        action: "server.note",
        target: "x/1",
        detail: serde_json::json!({"why": "test", "n": 1}),
        at_ms: NOW + 9,
    };
    s.record_audit(&detail).await.unwrap();
    let log = s.audit_log(2, None).await.unwrap();
    assert_eq!(log.len(), 2);
    let r = &log[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.source.as_str(),
            r.action.as_str(),
            r.target.as_str(),
            r.at_ms
        ),
        ("ops", "10.0.0.1", "server.note", "x/1", NOW + 9)
    );
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap();
    assert_eq!(detail, serde_json::json!({"why": "test", "n": 1}));
    assert_eq!(log[1].action, "enrollment_token.create");
    assert!(log[0].seq > log[1].seq);
    let older = s.audit_log(10, Some(log[1].seq)).await.unwrap();
    let actions: Vec<&str> = older.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["group.assign", "profile.upload"], "paging back");
}

// --- wake-ups --------------------------------------------------------------------------------

async fn notify_changed_moves_the_counter(db: Db) {
    let s = open(&db).await;
    let mut rx = s.changes();
    rx.borrow_and_update();
    s.notify_changed().await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), rx.changed())
        .await
        .expect("this store's own counter moves")
        .unwrap();
}

/// Waits for the listener of `store` to be listening (it bumps the counter once it is).
async fn listening(rx: &mut tokio::sync::watch::Receiver<u64>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while *rx.borrow_and_update() == 0 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the listener starts");
}

async fn listener_backends(s: &Store) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND (query LIKE 'LISTEN%' OR query LIKE 'UNLISTEN%') AND pid <> pg_backend_pid()",
    )
    .fetch_one(s.pool())
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_on_one_postgres_store_wakes_another_within_a_second() {
    let db = Db::postgres();
    let (one, two) = (open(&db).await, open(&db).await);
    let mut rx = two.changes();
    listening(&mut rx).await;
    for _ in 0..3 {
        rx.borrow_and_update();
        let started = Instant::now();
        one.notify_changed().await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("the other store wakes within 1 s")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connection_bumps_and_recovers() {
    let db = Db::postgres();
    let (one, two) = (open(&db).await, open(&db).await);
    let mut rx = two.changes();
    listening(&mut rx).await;
    // Both stores' listeners lose their connections (as in a database restart).
    rx.borrow_and_update();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .execute(one.pool())
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a reconnect bumps the counter: notifications may have been lost")
        .unwrap();
    // Listening again: notifications arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener_backends(&one).await < 2 {
        assert!(Instant::now() < deadline, "the listeners did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rx.borrow_and_update();
    one.notify_changed().await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), rx.changed())
        .await
        .expect("notifications arrive after the reconnect")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_store_clone_closes_its_listener() {
    let db = Db::postgres();
    let watcher = open(&db).await;
    let mut rx = watcher.changes();
    listening(&mut rx).await;
    let s = open(&db).await;
    let clone = s.clone();
    let mut rx = s.changes();
    listening(&mut rx).await;
    assert_eq!(listener_backends(&watcher).await, 2);
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        listener_backends(&watcher).await,
        2,
        "a clone still holds it"
    );
    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(10);
    while listener_backends(&watcher).await != 1 {
        assert!(Instant::now() < deadline, "the listener outlived its store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
