//! Two `serve` processes on one PostgreSQL behave as one: enroll on one, long-poll on the other,
//! reassign the group on the first → the waiting request gets the new bundle within 1 s; the
//! same batch posted to both is stored once; a device retired on one is refused by the other.

mod common;

use std::time::{Duration, Instant};

use common::{baseline_toml, baseline_v2_toml, expect, Db, Server};
use postwarden_wire::{verify_bundle, Jwk};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_behave_as_one() {
    let a = Server::start(Db::Postgres);
    let b = a.replica(&[]);
    assert_eq!(a.pin, b.pin, "replicas share the certificate");
    assert_eq!(a.jwk, b.jwk, "replicas share the signing key");
    let jwk: Jwk = serde_json::from_value(a.jwk.clone()).unwrap();

    a.upload(&baseline_toml(), StatusCode::CREATED).await;
    b.upload(&baseline_v2_toml(), StatusCode::CREATED).await;
    a.put_group("office", "bsi-m5.57", 1).await;
    let token = a.enrollment_token("office", 2).await;
    let (device, credential) = a.enroll(&token, &["alice"]).await;

    // The same bundle, same serial, from both.
    let (_, serial_a, jws_a) = a.bundle(&credential, None, None).await;
    let (_, serial_b, jws_b) = b.bundle(&credential, None, None).await;
    assert_eq!(serial_a, serial_b);
    assert_eq!(
        jws_a, jws_b,
        "deterministic signatures over the same payload"
    );
    let serial = serial_a.unwrap();

    // Long-poll on B; reassign on A.
    let poll = {
        let client = b.client.clone();
        let url = format!("{}/api/v1/bundle?wait=30", b.url);
        let credential = credential.clone();
        tokio::spawn(async move {
            let r = client
                .get(url)
                .bearer_auth(credential)
                .header("if-none-match", format!("\"{serial}\""))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, Instant::now(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed_at = Instant::now();
    a.put_group("office", "bsi-m5.57", 2).await;
    let (status, answered_at, body) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let waited = answered_at.duration_since(changed_at);
    assert!(
        waited < Duration::from_secs(1),
        "answered {waited:?} after the change"
    );
    let payload = verify_bundle(&body, &jwk, &device, Some(serial)).unwrap();
    assert_eq!(payload.profile.version, 2);
    assert!(payload.serial > serial);
    // A sees the same new serial.
    let (_, serial_a2, _) = a.bundle(&credential, Some(serial), None).await;
    assert_eq!(serial_a2, Some(payload.serial));

    // The same batch to both, concurrently and again: stored once.
    let batch = json!({"schema": "postwarden.report-batch/v1", "items": [
        {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:00Z", "kind": "event", "event": {
            "control": "mail-check-interval", "client": "thunderbird", "user": "alice",
            "scope": "p", "target": "server1", "old": 30, "new": 5, "repaired": true,
            "status": "repaired"}},
        {"id": uuid::Uuid::new_v4(), "at": "2026-11-28T10:00:01Z", "kind": "event", "event": {
            "control": "require-tls", "client": "thunderbird", "user": "alice",
            "scope": "p", "target": "server1", "old": 0, "new": 3, "repaired": true,
            "status": "repaired"}}
    ]});
    let post = |s: &Server| {
        s.request(Method::POST, "/api/v1/reports")
            .bearer_auth(&credential)
            .json(&batch)
            .send()
    };
    let (ra, rb) = tokio::join!(post(&a), post(&b));
    let (va, vb) = (
        expect(ra.unwrap(), StatusCode::OK).await,
        expect(rb.unwrap(), StatusCode::OK).await,
    );
    let accepted = va["accepted"].as_u64().unwrap() + vb["accepted"].as_u64().unwrap();
    let duplicates = va["duplicates"].as_u64().unwrap() + vb["duplicates"].as_u64().unwrap();
    assert_eq!((accepted, duplicates), (2, 2), "{va} {vb}");
    let again = expect(post(&b).await.unwrap(), StatusCode::OK).await;
    assert_eq!(again["duplicates"], 2);
    let events = a.get_json("/api/v1/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2);

    // Retired on A → refused by B at once (B had the credential cached).
    let r = a
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::NO_CONTENT).await;
    let started = Instant::now();
    loop {
        let r = b
            .request(Method::GET, "/api/v1/bundle")
            .bearer_auth(&credential)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica B still accepts a retired device's credential"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The second use of the token, enrolled on B, is the last.
    b.enroll(&token, &["bob"]).await;
    let r = a
        .request(Method::POST, "/api/v1/enroll")
        .json(&json!({"token": token, "hostname": "h", "os": "linux", "agent_version": "1", "users": []}))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::UNAUTHORIZED).await;
}
