//! The real `postwarden-server` and the real `postwarden-agent run`, started by tests: a
//! server on its embedded SQLite in a throwaway data folder, administered over HTTPS with curl
//! pinned to its key (as an administrator would), and agents enrolled with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use postwarden_test_support::bin;
use serde_json::Value;
use tempfile::TempDir;

/// Polls `f` every 10 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, timeout, f, String::new)
}

/// [`wait_for`], with `context` (e.g. a log) in the panic message.
pub fn wait_for_or<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// A running policy server.
#[derive(Debug)]
pub struct PolicyServer {
    child: Option<Child>,
    temp: TempDir,
    pub data: PathBuf,
    pub url: String,
    pub pin: String,
    pub admin: String,
    listen: String,
}

impl PolicyServer {
    /// A new server on a free port, with an admin token.
    pub fn start() -> PolicyServer {
        let temp = tempfile::tempdir().expect("a temporary folder");
        let data = temp.path().join("data");
        let out = Command::new(bin::server())
            .args(["admin", "create-token", "--name", "e2e", "--data-dir"])
            .arg(&data)
            .env_remove("POSTWARDEN_DATABASE_URL")
            .output()
            .expect("postwarden-server runs");
        assert!(
            out.status.success(),
            "create-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut server = PolicyServer {
            child: None,
            temp,
            data,
            url: String::new(),
            pin: String::new(),
            admin,
            listen: "127.0.0.1:0".to_owned(),
        };
        server.spawn();
        server.listen = server
            .url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        server
    }

    fn spawn(&mut self) {
        let ready = self.temp.path().join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.temp.path().join("server.log"))
            .unwrap();
        let mut child = Command::new(bin::server())
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &self.listen])
            .arg("--ready-file")
            .arg(&ready)
            .env("POSTWARDEN_LOG", "info")
            .env_remove("POSTWARDEN_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postwarden-server starts");
        let text = wait_for("the server's ready file", Duration::from_secs(60), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the server exited with {status}:\n{}", self.log());
            }
            std::fs::read_to_string(&ready).ok()
        });
        let ready: Value = serde_json::from_str(&text).unwrap();
        self.url = ready["url"].as_str().unwrap().to_owned();
        self.pin = ready["pin_sha256"].as_str().unwrap().to_owned();
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.temp.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sigterm(&child);
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The TLS certificate and key files of the server (a test server behind the same pin).
    pub fn tls_files(&self) -> (PathBuf, PathBuf) {
        (
            self.data.join("tls-cert.pem"),
            self.data.join("tls-key.pem"),
        )
    }

    /// An admin request with curl; returns the status and the JSON body (`null` if none).
    pub fn api(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "--pinnedpubkey", &self.pin, "-X", method])
            .args(["-H", &format!("Authorization: Bearer {}", self.admin)])
            .args(["-w", "\n%{http_code}"]);
        if let Some((content_type, _)) = body {
            cmd.args([
                "-H",
                &format!("content-type: {content_type}"),
                "--data-binary",
                "@-",
            ]);
        }
        cmd.arg(format!("{}{path}", self.url))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if let Some((_, bytes)) = body {
                stdin.write_all(bytes).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        let value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))
        };
        (code.parse().unwrap(), value)
    }

    pub fn ok(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Value {
        let (code, v) = self.api(method, path, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }

    /// Uploads a profile (TOML) and assigns it to `group`; returns its version.
    pub fn publish(&self, toml: &str, group: &str) -> u64 {
        let created = self.ok(
            "POST",
            "/api/v1/profiles",
            Some(("application/toml", toml.as_bytes())),
        );
        let version = created["version"].as_u64().unwrap();
        let body = serde_json::json!({"profile": created["id"], "version": version}).to_string();
        self.ok(
            "PUT",
            &format!("/api/v1/groups/{group}"),
            Some(("application/json", body.as_bytes())),
        );
        version
    }

    pub fn set_variables(&self, user: &str, vars: &[(&str, &str)]) {
        let map: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        self.ok(
            "PUT",
            &format!("/api/v1/users/{user}/variables"),
            Some((
                "application/json",
                Value::Object(map).to_string().as_bytes(),
            )),
        );
    }

    pub fn enrollment_token(&self, group: &str) -> String {
        let body = serde_json::json!({"group": group, "uses": 1}).to_string();
        let v = self.ok(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(("application/json", body.as_bytes())),
        );
        v["token"].as_str().unwrap().to_owned()
    }

    /// The drift events the server holds (newest first, as the API lists them).
    pub fn events(&self) -> Vec<Value> {
        self.ok("GET", "/api/v1/events?limit=1000", None)["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn device(&self, id: &str) -> Value {
        self.ok("GET", &format!("/api/v1/devices/{id}"), None)
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `postwarden-agent run` process.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    pub state: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// `postwarden-agent enroll` into `state` for `user`.
    pub fn enroll(server: &PolicyServer, token: &str, state: &Path, user: &str) {
        let out = Command::new(bin::agent())
            .args([
                "enroll",
                "--server",
                &server.url,
                "--pin-sha256",
                &server.pin,
            ])
            .arg("--state-dir")
            .arg(state)
            .args(["--user", user])
            .env("POSTWARDEN_ENROLL_TOKEN", token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enroll: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postwarden-agent run --state-dir STATE ARGS… --log-format json`.
    pub fn start(state: &Path, args: &[&str]) -> Agent {
        let mut agent = Agent {
            child: None,
            state: state.to_path_buf(),
            log: state.with_extension("log"),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin::agent())
            .arg("run")
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info,postwarden_daemon=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postwarden-agent run starts");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the agent runs");
        sigterm(&child);
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!(
                    "the agent did not stop within 20 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the agent runs");
        child.kill().unwrap();
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill it first");
        self.spawn();
    }

    /// `postwarden-agent status --format json`.
    pub fn status(&self) -> Value {
        let out = Command::new(bin::agent())
            .args(["status", "--format", "json", "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Replaces `path`'s content the way Thunderbird and editors do: a new file renamed over it.
pub fn replace_by_rename(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-e2e");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// prefs.js with one `user_pref` value replaced.
pub fn with_pref(prefs: &str, name: &str, value: &str) -> String {
    let needle = format!("user_pref(\"{name}\", ");
    let start = prefs
        .find(&needle)
        .unwrap_or_else(|| panic!("{name} in prefs.js"))
        + needle.len();
    let end = start + prefs[start..].find(");").unwrap();
    format!("{}{value}{}", &prefs[..start], &prefs[end..])
}

/// The value of a `user_pref` in prefs.js text.
pub fn pref_value(prefs: &str, name: &str) -> Option<String> {
    let needle = format!("user_pref(\"{name}\", ");
    let start = prefs.find(&needle)? + needle.len();
    let end = start + prefs[start..].find(");")?;
    Some(prefs[start..end].to_owned())
}
