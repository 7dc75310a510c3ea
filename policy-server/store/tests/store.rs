//! The store on both databases: the two schemas agree, migrations are idempotent, every admin
//! change and its audit row are one transaction, and the operations that several replicas race
//! for (enrollment on a token's last uses, serial advances, the same batch twice) come out the
//! same as if they had run one after another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use postwarden_server_store::{
    Audit, Backend, Enrolled, EventItem, IngestItem, IngestKind, NewDevice, NewEnrollmentToken,
    NewProfile, PutGroup, Refusal, Store,
};
use sqlx::Row;

const NOW: i64 = 1_764_000_000_000;

fn audit(action: &'static str) -> Audit<'static> {
    Audit {
        actor: "tester",
        source: "127.0.0.1",
        action,
        target: "t",
        detail: serde_json::Value::Null,
        at_ms: NOW,
    }
}

struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

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

async fn open(db: &Db) -> Store {
    let s = Store::connect(&db.url, 8).await.unwrap();
    s.migrate().await.unwrap();
    s
}

/// A store with a profile, a group `office` and a token of `uses` uses; returns the token hash.
async fn with_token(s: &Store, uses: i64, expires_ms: i64) -> String {
    s.put_profile(
        &NewProfile {
            id: "p",
            version: 1,
            title: "P",
            sha256: "aa",
            toml: "id = \"p\"",
        },
        &audit("profile.upload"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.put_group("office", "p", 1, &audit("group.assign"))
            .await
            .unwrap(),
        PutGroup::Created
    );
    let hash = format!("hash-{uses}-{expires_ms}");
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

async fn enroll_one(s: &Store, token_hash: &str, n: usize) -> Enrolled {
    let id = format!("dev_{n:026}");
    let cred = format!("cred-{n}");
    s.enroll(
        token_hash,
        &NewDevice {
            id: &id,
            credential_hash: &cred,
            hostname: "h",
            os: "linux",
            agent_version: "1",
            users: &["alice".to_owned()],
        },
        NOW,
    )
    .await
    .unwrap()
}

async fn columns(s: &Store, url: &str) -> BTreeSet<(String, String)> {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let sql = match s.backend() {
        Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'"
        }
    };
    sqlx::query(sql)
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schemas_define_the_same_tables_and_columns_and_migrate_idempotently() {
    let (a, b) = (sqlite(), postgres());
    let (sa, sb) = (open(&a).await, open(&b).await);
    sa.migrate().await.unwrap();
    sb.migrate().await.unwrap();
    let (ca, cb) = (columns(&sa, &a.url).await, columns(&sb, &b.url).await);
    assert!(ca.len() > 50, "{ca:?}");
    assert_eq!(ca, cb, "the SQLite and PostgreSQL schemas differ");
}

async fn concurrent_enrollments_spend_each_use_once(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    let hash = with_token(&one, 5, NOW + 60_000).await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let hash = hash.clone();
        tasks.push(tokio::spawn(
            async move { enroll_one(&store, &hash, n).await },
        ));
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
    assert_eq!(one.list_devices(None, false).await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_sqlite() {
    concurrent_enrollments_spend_each_use_once(sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_postgres() {
    concurrent_enrollments_spend_each_use_once(postgres()).await
}

async fn refusals_name_the_reason(db: Db) {
    let s = open(&db).await;
    let hash = with_token(&s, 1, NOW + 1).await;
    assert!(matches!(
        enroll_one(&s, "nope", 1).await,
        Enrolled::Refused(Refusal::Unknown)
    ));
    // Expired: the token's time is now - 1 after one millisecond.
    let later = NOW + 5;
    let r = s
        .enroll(
            &hash,
            &NewDevice {
                id: "dev_x",
                credential_hash: "c",
                hostname: "h",
                os: "linux",
                agent_version: "1",
                users: &[],
            },
            later,
        )
        .await
        .unwrap();
    assert_eq!(r, Enrolled::Refused(Refusal::Expired));
    assert!(s
        .revoke_enrollment_token("enr_1", &audit("enrollment_token.revoke"))
        .await
        .unwrap());
    assert_eq!(
        enroll_one(&s, &hash, 2).await,
        Enrolled::Refused(Refusal::Revoked)
    );
    assert!(s.list_devices(None, true).await.unwrap().is_empty());
}

#[tokio::test]
async fn refusals_sqlite() {
    refusals_name_the_reason(sqlite()).await
}

#[tokio::test]
async fn refusals_postgres() {
    refusals_name_the_reason(postgres()).await
}

async fn a_refused_change_writes_no_audit_row(db: Db) {
    let s = open(&db).await;
    with_token(&s, 1, NOW + 60_000).await;
    let before = s.audit_log(1000, None).await.unwrap().len();
    assert_eq!(
        s.put_group("office", "p", 9, &audit("group.assign"))
            .await
            .unwrap(),
        PutGroup::UnknownProfile
    );
    assert!(!s
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: "enr_2",
                hash: "h2",
                group: "nowhere",
                uses: 1,
                expires_ms: NOW + 1,
            },
            &audit("enrollment_token.create"),
        )
        .await
        .unwrap());
    assert!(!s
        .retire_device("dev_none", &audit("device.retire"))
        .await
        .unwrap());
    assert_eq!(s.audit_log(1000, None).await.unwrap().len(), before);
    let log = s.audit_log(2, None).await.unwrap();
    assert_eq!(log[0].action, "enrollment_token.create", "newest first");
    let older = s.audit_log(10, Some(log[0].seq)).await.unwrap();
    assert_eq!(older[0].seq, log[1].seq, "paging back by sequence");
}

#[tokio::test]
async fn audit_sqlite() {
    a_refused_change_writes_no_audit_row(sqlite()).await
}

#[tokio::test]
async fn audit_postgres() {
    a_refused_change_writes_no_audit_row(postgres()).await
}

async fn serials_advance_once_per_content_change(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    let hash = with_token(&one, 1, NOW + 60_000).await;
    enroll_one(&one, &hash, 1).await;
    let dev = format!("dev_{:026}", 1);
    let src = one.bundle_source(&dev).await.unwrap().unwrap();
    assert_eq!((src.serial, src.fingerprint.as_deref()), (0, None));
    // Both replicas see fingerprint None and race to "f1": one advance.
    let (a, b) = tokio::join!(
        one.advance_serial(&dev, None, "f1", NOW),
        two.advance_serial(&dev, None, "f1", NOW)
    );
    assert_eq!(a.unwrap().0, 1);
    assert_eq!(b.unwrap().0, 1, "the loser reads the winner's serial");
    // A stale compare (old = None) does not move it again.
    let (serial, fp, _) = one.advance_serial(&dev, None, "f2", NOW).await.unwrap();
    assert_eq!((serial, fp.as_str()), (1, "f1"));
    let (serial, fp, _) = two
        .advance_serial(&dev, Some("f1"), "f2", NOW)
        .await
        .unwrap();
    assert_eq!((serial, fp.as_str()), (2, "f2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_sqlite() {
    serials_advance_once_per_content_change(sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_postgres() {
    serials_advance_once_per_content_change(postgres()).await
}

fn event(id: &str) -> IngestItem {
    IngestItem {
        id: id.to_owned(),
        at_ms: NOW,
        kind: IngestKind::Event(EventItem {
            control: "c".into(),
            client: "thunderbird".into(),
            user: "alice".into(),
            scope: "s".into(),
            target: "t".into(),
            setting: None,
            old: "1".into(),
            new: "2".into(),
            repaired: true,
            status: "repaired".into(),
            notified: None,
        }),
    }
}

async fn the_same_batch_from_two_replicas_is_stored_once(db: Db) {
    let (one, two) = (open(&db).await, open(&db).await);
    let hash = with_token(&one, 1, NOW + 60_000).await;
    enroll_one(&one, &hash, 1).await;
    let dev = format!("dev_{:026}", 1);
    let batch: Vec<IngestItem> = (0..50).map(|i| event(&format!("e{i}"))).collect();
    let (a, b) = tokio::join!(one.ingest(&dev, &batch, NOW), two.ingest(&dev, &batch, NOW));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.accepted + b.accepted, 50);
    assert_eq!(a.duplicates + b.duplicates, 50);
    let q = postwarden_server_store::EventQuery {
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(one.events(&q).await.unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sqlite() {
    the_same_batch_from_two_replicas_is_stored_once(sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_postgres() {
    the_same_batch_from_two_replicas_is_stored_once(postgres()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_on_one_replica_wakes_the_other() {
    let db = postgres();
    let (one, two) = (open(&db).await, open(&db).await);
    let mut rx = two.changes();
    // Let the listener's LISTEN take effect (it bumps once when it does).
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("the listener starts")
        .unwrap();
    rx.borrow_and_update();
    let started = Instant::now();
    one.notify_changed().await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), rx.changed())
        .await
        .expect("the other replica wakes within 1 s")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn variables_replace_and_bad_urls_are_named() {
    let db = sqlite();
    let s = open(&db).await;
    let vars = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    s.put_user_variables("alice", &vars(&[("a", "1"), ("b", "2")]), &audit("v"))
        .await
        .unwrap();
    s.put_user_variables("alice", &vars(&[("a", "3")]), &audit("v"))
        .await
        .unwrap();
    let got = s
        .variables_for(&["alice".into(), "bob".into()])
        .await
        .unwrap();
    assert_eq!(
        got["alice"],
        vars(&[("a", "3")]),
        "a set replaces the old set"
    );
    assert!(!got.contains_key("bob"));
    let err = Store::connect("mysql://x", 1).await.unwrap_err();
    assert!(err.to_string().contains("mysql://x"), "{err}");
    let err = Store::connect("sqlite://:memory:", 1).await.unwrap_err();
    assert!(err.to_string().contains("in-memory"), "{err}");
}
