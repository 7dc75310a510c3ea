//! The harness of the server's end-to-end tests: the real `postwarden-server` binary on a
//! throwaway data directory, on SQLite or on a throwaway PostgreSQL cluster the tests start
//! themselves, reached over HTTPS pinned to the key in its ready file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postwarden_test_support::bin;
use postwarden_transport::Trust;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Db)` scenario once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::common::Db::Postgres).await
            }
        }
    };
}

/// A fresh database URL for `db` (`None`: the data directory's SQLite file).
pub fn database_url(db: Db) -> Option<String> {
    match db {
        Db::Sqlite => None,
        Db::Postgres => Some(postwarden_test_support::pg::database()),
    }
}

/// A running server.
pub struct Server {
    child: Child,
    pub dir: PathBuf,
    _temp: Option<TempDir>,
    pub url: String,
    pub pin: String,
    pub jwk: Value,
    pub admin: String,
    pub database_url: Option<String>,
    pub client: reqwest::Client,
    log: PathBuf,
}

impl Server {
    /// Starts a server on a new data directory and database, with an admin token.
    pub fn start(db: Db) -> Server {
        Server::start_with(db, &[])
    }

    pub fn start_with(db: Db, extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let url = database_url(db);
        let admin = create_admin_token(&dir, url.as_deref(), "tester");
        let mut server = Server::spawn(&dir, url, extra);
        server.admin = admin;
        server._temp = Some(temp);
        server
    }

    /// Starts another replica: the same database and the same keys (the data directory's key
    /// files copied, as the README tells administrators to do).
    pub fn replica(&self, extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        for f in ["signing-key.jwk", "tls-cert.pem", "tls-key.pem"] {
            std::fs::copy(self.dir.join(f), dir.join(f)).unwrap();
        }
        let mut server = Server::spawn(&dir, self.database_url.clone(), extra);
        server.admin = self.admin.clone();
        server._temp = Some(temp);
        server
    }

    /// Stops the server (SIGTERM, a clean shutdown) and starts it again on the same data
    /// directory and database with `extra` options; the admin token stays valid.
    pub fn restart(&mut self, extra: &[&str]) {
        self.stop();
        let ready = self.dir.parent().expect("a parent").join("ready.json");
        let _ = std::fs::remove_file(ready);
        let mut next = Server::spawn(&self.dir, self.database_url.clone(), extra);
        next.admin = std::mem::take(&mut self.admin);
        next._temp = self._temp.take();
        // The stopped server goes out of scope here; its process is gone already.
        std::mem::swap(self, &mut next);
    }

    /// SIGTERM first (a clean shutdown is part of what is tested), SIGKILL after 5 s.
    fn stop(&mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(dir: &Path, database_url: Option<String>, extra: &[&str]) -> Server {
        // Beside the data directory, which the server creates (0700) or checks itself.
        let parent = dir.parent().expect("the data directory has a parent");
        let ready = parent.join("ready.json");
        let log = parent.join("server.log");
        let mut cmd = Command::new(bin::server());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env(
                "POSTWARDEN_LOG",
                "debug,sqlx=warn,hyper=info,h2=info,rustls=info",
            )
            .env_remove("POSTWARDEN_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = &database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().expect("postwarden-server starts");
        let started = Instant::now();
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the server exited with {status} before it was ready:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server was not ready within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let ready: Value = serde_json::from_str(&text).expect("the ready file is JSON");
        let url = ready["url"].as_str().unwrap().to_owned();
        let pin = ready["pin_sha256"].as_str().unwrap_or_default().to_owned();
        let client = if url.starts_with("https://") {
            postwarden_transport::client(&Trust::Pins(vec![pin.clone()]), Duration::from_secs(60))
                .unwrap()
        } else {
            reqwest::Client::builder().build().unwrap()
        };
        Server {
            child,
            dir: dir.to_owned(),
            _temp: None,
            url,
            pin,
            jwk: ready["signing_key"].clone(),
            admin: String::new(),
            database_url,
            client,
            log,
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// A request with the admin token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(&self.admin)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "GET {path}: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// Uploads a profile, expecting `status`.
    pub async fn upload(&self, toml: &str, status: StatusCode) -> Value {
        let r = self
            .admin(Method::POST, "/api/v1/profiles")
            .header("content-type", "application/toml")
            .body(toml.to_owned())
            .send()
            .await
            .unwrap();
        expect(r, status).await
    }

    pub async fn put_group(&self, group: &str, profile: &str, version: u32) -> Value {
        let r = self
            .admin(Method::PUT, &format!("/api/v1/groups/{group}"))
            .json(&serde_json::json!({"profile": profile, "version": version}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "PUT group: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    pub async fn enrollment_token(&self, group: &str, uses: u32) -> String {
        let r = self
            .admin(Method::POST, "/api/v1/enrollment-tokens")
            .json(&serde_json::json!({"group": group, "uses": uses}))
            .send()
            .await
            .unwrap();
        let v = expect(r, StatusCode::CREATED).await;
        v["token"].as_str().unwrap().to_owned()
    }

    /// Enrolls a device; returns (device id, credential).
    pub async fn enroll(&self, token: &str, users: &[&str]) -> (String, String) {
        let r = self
            .request(Method::POST, "/api/v1/enroll")
            .json(&serde_json::json!({
                "token": token, "hostname": "ws-01.example.org", "os": "linux",
                "agent_version": "0.1.0", "users": users
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

    /// The bundle: (status, ETag serial, body).
    pub async fn bundle(
        &self,
        credential: &str,
        have: Option<u64>,
        wait: Option<u64>,
    ) -> (StatusCode, Option<u64>, String) {
        let path = match wait {
            Some(w) => format!("/api/v1/bundle?wait={w}"),
            None => "/api/v1/bundle".to_owned(),
        };
        let mut req = self.request(Method::GET, &path).bearer_auth(credential);
        if let Some(s) = have {
            req = req.header("if-none-match", format!("\"{s}\""));
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        (status, etag, r.text().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only a process still running (a restarted server's old one was stopped and reaped:
        // its id may belong to another process by now).
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// `postwarden-server admin create-token`; returns the token it printed.
pub fn create_admin_token(dir: &Path, database_url: Option<&str>, name: &str) -> String {
    let mut cmd = Command::new(bin::server());
    cmd.args(["admin", "create-token", "--name", name, "--data-dir"])
        .arg(dir)
        .env_remove("POSTWARDEN_DATABASE_URL");
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "create-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        token.lines().count(),
        1,
        "only the token on stdout: {token:?}"
    );
    token.trim().to_owned()
}

/// Asserts the status and returns the JSON body (problem details for errors).
pub async fn expect(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    if !got.is_success() {
        assert_eq!(
            ct, "application/problem+json",
            "errors are problem details: {text}"
        );
    }
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// The baseline profile, as shipped.
pub fn baseline_toml() -> String {
    postwarden_test_support::baseline_text().to_owned()
}

/// The baseline as version 2, with a 15-minute mail check.
pub fn baseline_v2_toml() -> String {
    let v2 = baseline_toml()
        .replacen("version = 1\n", "version = 2\n", 1)
        .replacen("value = { minutes = 30 }", "value = { minutes = 15 }", 1);
    assert_ne!(v2, baseline_toml());
    v2
}

/// The records of a CSV answer (RFC 4180 as the server writes it: CRLF rows, quoted cells with
/// doubled quotes, line breaks inside quotes), each as a map from the header's names.
pub fn csv_records(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "rows end with CRLF");
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\n') => panic!("a bare LF outside quotes: {text:?}"),
            (false, c) => cell.push(c),
        }
    }
    assert!(
        !quoted && row.is_empty() && cell.is_empty(),
        "the last row ends with CRLF"
    );
    let header = rows.remove(0);
    rows.into_iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?}");
            header.iter().cloned().zip(r).collect()
        })
        .collect()
}
