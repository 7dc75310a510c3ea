//! The agent as a service, end to end: the real `postwarden-server` (SQLite) and the real
//! `postwarden-agent enroll` / `run`, on a fixture Thunderbird home.
//!
//! - enroll, first apply, drift injected like a user or a script → repaired, re-verified, and
//!   the event is on the server with old → new;
//! - server down while drift happens → the event arrives exactly once after it is back;
//! - `kill -9` with events queued → nothing lost, nothing duplicated;
//! - a new profile version reaches the running agent through the long-poll;
//! - bundles signed by another key, for another device, or older, served behind the same pin
//!   → refused and reported, the last good bundle stays in force;
//! - audit mode → files byte-identical, drift reported.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postwarden_e2e::fleet::{
    pref_value, replace_by_rename, wait_for, wait_for_or, with_pref, Agent, PolicyServer,
};
use postwarden_test_support::fixture::Machine;
use postwarden_test_support::{baseline_text, baseline_without_settings_lock};
use postwarden_wire::v1::BundlePayload;
use postwarden_wire::{sign_bundle, SigningKey};
use serde_json::Value;

const CHECK_TIME: &str = "mail.server.server1.check_time";
const WAIT: Duration = Duration::from_secs(20);

/// A server with `profile` for the group `office`, alice's address set, and a machine with
/// the non-compliant Thunderbird fixture enrolled into it.
struct Fleet {
    server: PolicyServer,
    machine: Machine,
    state: PathBuf,
    _state_dir: tempfile::TempDir,
}

impl Fleet {
    fn new(profile: &str) -> Fleet {
        let server = PolicyServer::start();
        server.publish(profile, "office");
        server.set_variables("alice", &[("user.email", "alice@example.org")]);
        let token = server.enrollment_token("office");
        let machine = Machine::empty().with_thunderbird();
        let state_dir = tempfile::tempdir().unwrap();
        let state = state_dir.path().join("state");
        Agent::enroll(&server, &token, &state, "alice");
        Fleet {
            server,
            machine,
            state,
            _state_dir: state_dir,
        }
    }

    fn agent(&self, extra: &[&str]) -> Agent {
        let home = self.machine.home.to_str().unwrap().to_owned();
        let root = self.machine.root.to_str().unwrap().to_owned();
        let mut args = vec!["--user", "alice", "--home", &home, "--system-root", &root];
        args.extend_from_slice(extra);
        Agent::start(&self.state, &args)
    }

    fn prefs(&self) -> PathBuf {
        self.machine.thunderbird_profile().join("prefs.js")
    }

    fn check_time(&self) -> Option<String> {
        pref_value(&std::fs::read_to_string(self.prefs()).ok()?, CHECK_TIME)
    }

    /// Sets check_time in prefs.js the way Thunderbird saves (rename over the file).
    fn drift_check_time(&self, value: &str) {
        let text = std::fs::read_to_string(self.prefs()).unwrap();
        replace_by_rename(
            &self.prefs(),
            with_pref(&text, CHECK_TIME, value).as_bytes(),
        );
    }

    /// Waits until the agent delivered everything it queued.
    fn wait_delivered(&self, agent: &Agent) {
        wait_for("an empty queue", WAIT, || {
            let s = agent.status();
            (s["queue"]["depth"].as_u64() == Some(0) && s["agent"]["users"].get("alice").is_some())
                .then_some(())
        });
    }

    fn device_id(&self) -> String {
        let e: Value = serde_json::from_str(
            &std::fs::read_to_string(self.state.join("enrollment.json")).unwrap(),
        )
        .unwrap();
        e["device_id"].as_str().unwrap().to_owned()
    }
}

/// The server's events about check_time with this new value.
fn check_time_events(server: &PolicyServer, new: i64) -> Vec<Value> {
    server
        .events()
        .into_iter()
        .filter(|e| e["setting"] == CHECK_TIME && e["new"] == new)
        .collect()
}

#[test]
fn drift_is_repaired_within_milliseconds_and_the_event_reaches_the_server() {
    let fleet = Fleet::new(baseline_text());
    let mut agent = fleet.agent(&[]);
    let policies = fleet.machine.policies_json();
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30") && policies.exists()).then_some(())
    });
    fleet.wait_delivered(&agent);

    // A script un-manages Thunderbird: the value in prefs.js and the policy file.
    fleet.drift_check_time("5");
    std::fs::remove_file(&policies).unwrap();
    wait_for("the repair", WAIT, || {
        (fleet.check_time().as_deref() == Some("30") && policies.exists()).then_some(())
    });
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(&policies).unwrap()).unwrap();
    assert_eq!(
        policy["policies"]["Preferences"][CHECK_TIME]["Status"], "locked",
        "the lock is back: {policy}"
    );

    let event = wait_for("the drift event on the server", WAIT, || {
        check_time_events(&fleet.server, 5).into_iter().next()
    });
    assert_eq!(event["old"], 30, "{event}");
    assert_eq!(event["repaired"], true, "{event}");
    assert_eq!(event["status"], "repaired", "{event}");
    assert_eq!(event["user"], "alice");
    assert_eq!(event["device"], fleet.device_id());
    // The policy file's locks came back too, each an event.
    wait_for("the settings-locked events", WAIT, || {
        let n = fleet
            .server
            .events()
            .into_iter()
            .filter(|e| e["control"] == "settings-locked" && e["repaired"] == true)
            .count();
        (n > 0).then_some(())
    });

    // The agent's own writes did not trigger repairs of themselves: one event per setting.
    fleet.wait_delivered(&agent);
    let events = check_time_events(&fleet.server, 5);
    assert_eq!(events.len(), 1, "{events:#?}\n{}", agent.log());
    // Reading a repair back is not an event either.
    let echoes: Vec<Value> = fleet
        .server
        .events()
        .into_iter()
        .filter(|e| e["old"] == e["new"])
        .collect();
    assert!(
        echoes.is_empty(),
        "events that changed nothing: {echoes:#?}"
    );
    let status = agent.status();
    assert_eq!(status["agent"]["profile"]["id"], "bsi-m5.57", "{status}");
    assert!(status["contact"]["last_contact_at"].is_string(), "{status}");

    let exit = agent.stop();
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}\n{}", agent.log());
    let log = agent.log();
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line: {line}"));
        assert_ne!(v["level"], "ERROR", "{line}");
    }
    let credential = std::fs::read_to_string(fleet.state.join("enrollment.json")).unwrap();
    let credential: Value = serde_json::from_str(&credential).unwrap();
    assert!(
        !log.contains(credential["credential"].as_str().unwrap()),
        "the device credential is never logged"
    );
}

#[test]
fn an_event_made_while_the_server_is_down_arrives_exactly_once() {
    let mut fleet = Fleet::new(&baseline_without_settings_lock());
    let agent = fleet.agent(&[]);
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    fleet.wait_delivered(&agent);

    fleet.server.stop();
    fleet.drift_check_time("7");
    wait_for("the repair without a server", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    let queued = wait_for("the event in the queue", WAIT, || {
        let s = agent.status();
        let depth = s["queue"]["depth"].as_u64().unwrap_or(0);
        (depth > 0).then_some(depth)
    });
    assert!(queued >= 1);

    fleet.server.restart();
    wait_for("the event on the server", Duration::from_secs(60), || {
        (!check_time_events(&fleet.server, 7).is_empty()).then_some(())
    });
    fleet.wait_delivered(&agent);
    let events = check_time_events(&fleet.server, 7);
    assert_eq!(events.len(), 1, "exactly once: {events:?}");
    assert_eq!(events[0]["old"], 30);
}

#[test]
fn kill_9_with_events_queued_loses_nothing_and_duplicates_nothing() {
    let mut fleet = Fleet::new(&baseline_without_settings_lock());
    let mut agent = fleet.agent(&[]);
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    fleet.wait_delivered(&agent);

    fleet.server.stop();
    let depth = || agent.status()["queue"]["depth"].as_u64().unwrap_or(0);
    for value in ["7", "8", "9"] {
        // One change at a time, as a user makes them: the next after the agent's pass is done
        // (a write racing the agent's own rename would be overwritten, by any editor).
        let before = depth();
        fleet.drift_check_time(value);
        wait_for("the repair, queued", WAIT, || {
            (fleet.check_time().as_deref() == Some("30") && depth() > before).then_some(())
        });
    }
    wait_for("three events queued", WAIT, || {
        (agent.status()["queue"]["depth"].as_u64().unwrap_or(0) >= 3).then_some(())
    });
    agent.kill9();
    agent.restart();
    fleet.server.restart();
    wait_for_or(
        "every event on the server",
        Duration::from_secs(60),
        || {
            ["7", "8", "9"]
                .iter()
                .all(|v| !check_time_events(&fleet.server, v.parse().unwrap()).is_empty())
                .then_some(())
        },
        || format!("{:#?}\n{}", fleet.server.events(), agent.log()),
    );
    fleet.wait_delivered(&agent);
    for v in [7, 8, 9] {
        assert_eq!(
            check_time_events(&fleet.server, v).len(),
            1,
            "value {v} exactly once"
        );
    }
    let ids: Vec<Value> = fleet
        .server
        .events()
        .into_iter()
        .map(|e| e["id"].clone())
        .collect();
    let mut unique = ids.clone();
    unique.sort_by_key(|v| v.to_string());
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "no item stored twice");
    // The original times were kept: the events are older than the restart.
    let at: Vec<String> = check_time_events(&fleet.server, 9)
        .iter()
        .map(|e| e["at"].as_str().unwrap().to_owned())
        .collect();
    let received: Vec<String> = check_time_events(&fleet.server, 9)
        .iter()
        .map(|e| e["received_at"].as_str().unwrap().to_owned())
        .collect();
    assert!(at[0] <= received[0], "at {at:?} received {received:?}");
}

#[test]
fn a_new_profile_version_reaches_the_running_agent_through_the_long_poll() {
    let fleet = Fleet::new(baseline_text());
    let agent = fleet.agent(&["--long-poll", "120s"]);
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    fleet.wait_delivered(&agent);
    let v2 = baseline_text()
        .replace("version = 1", "version = 2")
        .replace("value = { minutes = 30 }", "value = { minutes = 45 }");
    let published = std::time::Instant::now();
    fleet.server.publish(&v2, "office");
    wait_for("version 2 applied", Duration::from_secs(10), || {
        (fleet.check_time().as_deref() == Some("45")).then_some(())
    });
    let took = published.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "published → applied took {took:?}"
    );
    wait_for("the status shows version 2", WAIT, || {
        (agent.status()["agent"]["profile"]["version"] == 2).then_some(())
    });
}

#[test]
fn audit_mode_changes_nothing_and_reports_drift() {
    let audit = baseline_text().replacen("mode = \"enforce\"", "mode = \"audit\"", 1);
    let fleet = Fleet::new(&audit);
    let before = fleet.machine.snapshot();
    let agent = fleet.agent(&[]);
    fleet.wait_delivered(&agent);
    before.assert_same(&fleet.machine.snapshot(), "audit mode wrote nothing");

    fleet.drift_check_time("9");
    let drifted = fleet.machine.snapshot();
    let event = wait_for("the drift event", WAIT, || {
        check_time_events(&fleet.server, 9).into_iter().next()
    });
    assert_eq!(event["repaired"], false, "{event}");
    assert_eq!(event["status"], "drifted", "{event}");
    assert_eq!(event["old"], 5, "the fixture's value before: {event}");
    drifted.assert_same(&fleet.machine.snapshot(), "audit mode still wrote nothing");
}

/// A test server behind the real server's certificate (so the agent's pin matches) that serves
/// crafted bundles and records every report batch.
struct FakeServer {
    url: String,
    batches: Arc<Mutex<Vec<Value>>>,
}

impl FakeServer {
    fn start(cert: &Path, key: &Path, bundles: Vec<String>) -> FakeServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let batches: Arc<Mutex<Vec<Value>>> = Arc::default();
        let recorded = batches.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(&mut tls);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let (status, ctype, answer) = if request_line.starts_with("GET /api/v1/bundle") {
                    let b = bundles[next % bundles.len()].clone();
                    next += 1;
                    ("200 OK", "application/jose", b)
                } else if request_line.starts_with("POST /api/v1/reports") {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let n = v["items"].as_array().map(Vec::len).unwrap_or(0);
                    recorded.lock().unwrap().push(v);
                    (
                        "200 OK",
                        "application/json",
                        format!("{{\"accepted\":{n},\"duplicates\":0}}"),
                    )
                } else if request_line.starts_with("POST /api/v1/users") {
                    (
                        "200 OK",
                        "application/json",
                        String::from_utf8_lossy(&body).into_owned(),
                    )
                } else {
                    ("404 Not Found", "text/plain", String::new())
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        FakeServer { url, batches }
    }

    fn notices(&self) -> Vec<Value> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["kind"] == "notice")
            .map(|i| i["notice"].clone())
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["kind"] == "event")
            .map(|i| i["event"].clone())
            .collect()
    }
}

fn payload_of(jws: &str) -> BundlePayload {
    use base64::Engine as _;
    let payload = jws.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn bad_bundles_are_refused_and_reported_and_the_last_good_one_stays_in_force() {
    let fleet = Fleet::new(&baseline_without_settings_lock());
    // A second version, so that an older serial exists.
    let v2 = baseline_without_settings_lock().replace("version = 1", "version = 2");
    fleet.server.publish(&v2, "office");
    let mut agent = fleet.agent(&[]);
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    fleet.wait_delivered(&agent);
    assert!(agent.stop().success());

    let good = std::fs::read_to_string(fleet.state.join("bundle.jws")).unwrap();
    let payload = payload_of(&good);
    assert!(payload.serial >= 1, "serial {}", payload.serial);
    let key = SigningKey::from_private_jwk_json(
        &std::fs::read_to_string(fleet.server.data.join("signing-key.jwk")).unwrap(),
    )
    .unwrap();
    let other_key = SigningKey::from_seed(&[7; 32]);
    let mut newer = payload.clone();
    newer.serial += 1;
    newer.profile.toml = newer.profile.toml.replace("minutes = 30", "minutes = 5");
    let mut other_device = newer.clone();
    other_device.device = postwarden_wire::v1::DeviceId("dev_someone_else".to_owned());
    let mut older = payload.clone();
    older.serial -= 1;
    let bundles = vec![
        sign_bundle(&newer, &other_key),
        sign_bundle(&other_device, &key),
        sign_bundle(&older, &key),
    ];
    let (cert, tls_key) = fleet.server.tls_files();
    let fake = FakeServer::start(&cert, &tls_key, bundles);
    let enrollment_path = fleet.state.join("enrollment.json");
    let mut enrollment: Value =
        serde_json::from_str(&std::fs::read_to_string(&enrollment_path).unwrap()).unwrap();
    enrollment["server"] = Value::String(fake.url.clone());
    std::fs::write(
        &enrollment_path,
        serde_json::to_vec_pretty(&enrollment).unwrap(),
    )
    .unwrap();

    agent.restart();
    let notices = wait_for("three refusals reported", Duration::from_secs(30), || {
        let n = fake.notices();
        (n.len() >= 3).then_some(n)
    });
    let details: Vec<String> = notices
        .iter()
        .map(|n| {
            assert_eq!(n["kind"], "bundle_refused", "{n}");
            n["detail"].as_str().unwrap().to_owned()
        })
        .collect();
    let all = details.join("\n");
    assert!(all.contains("signature"), "another key: {all}");
    assert!(all.contains("dev_someone_else"), "another device: {all}");
    assert!(all.contains("older"), "an older serial: {all}");

    // The last good bundle is still enforced: drift goes back to 30, not 5.
    fleet.drift_check_time("12");
    wait_for("the repair from the cached bundle", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    wait_for("the event at the test server", WAIT, || {
        fake.events()
            .iter()
            .any(|e| e["setting"] == CHECK_TIME && e["new"] == 12)
            .then_some(())
    });
    assert_eq!(agent.status()["agent"]["profile"]["serial"], payload.serial);
    assert_eq!(
        std::fs::read_to_string(fleet.state.join("bundle.jws")).unwrap(),
        good,
        "the cached bundle is unchanged"
    );
}

#[test]
fn a_setting_that_keeps_being_changed_is_contested_and_left_alone() {
    let fleet = Fleet::new(&baseline_without_settings_lock());
    let agent = fleet.agent(&["--contest-limit", "2"]);
    wait_for("the first apply", WAIT, || {
        (fleet.check_time().as_deref() == Some("30")).then_some(())
    });
    fleet.wait_delivered(&agent);
    // Another tool sets it back three times: the third repair makes it contested.
    for value in ["6", "7", "8"] {
        let before = agent.status()["queue"]["depth"].as_u64().unwrap_or(0);
        fleet.drift_check_time(value);
        wait_for("the repair", WAIT, || {
            (fleet.check_time().as_deref() == Some("30")).then_some(())
        });
        // The pass is done once its event is delivered.
        wait_for("the event", WAIT, || {
            (!check_time_events(&fleet.server, value.parse().unwrap()).is_empty()
                || agent.status()["queue"]["depth"].as_u64().unwrap_or(0) > before)
                .then_some(())
        });
        fleet.wait_delivered(&agent);
    }
    let third = check_time_events(&fleet.server, 8);
    assert_eq!(third.len(), 1, "{third:#?}");
    assert_eq!(third[0]["contested"], true, "{}", third[0]);
    assert!(
        third[0]["note"]
            .as_str()
            .unwrap()
            .contains("repaired 3 times within an hour"),
        "{}",
        third[0]
    );
    // The fourth change is left alone, and reported.
    fleet.drift_check_time("9");
    let fourth = wait_for("the contested drift reported", WAIT, || {
        check_time_events(&fleet.server, 9).into_iter().next()
    });
    assert_eq!(fourth["repaired"], false, "{fourth}");
    assert_eq!(fourth["status"], "drifted", "{fourth}");
    assert_eq!(fourth["contested"], true, "{fourth}");
    assert_eq!(fleet.check_time().as_deref(), Some("9"), "left alone");
    let status = agent.status();
    let contested = status["agent"]["contested"].as_array().unwrap();
    assert_eq!(contested.len(), 1, "{status}");
    assert_eq!(contested[0]["setting"], CHECK_TIME);
}
