//! Fixture homes: temporary homes and system roots seeded from the fixtures in
//! `agent/tests/data`, the way the agent meets them on an endpoint.

use std::fs;
use std::path::{Path, PathBuf};

use postwarden_registry::regfile::{self, Op};
use postwarden_registry::{MemRegistry, RegValue, Registry};

use crate::workspace_root;

/// The Thunderbird profile directory name of the non-compliant fixture.
pub const THUNDERBIRD_PROFILE_DIR: &str = "k3x9qv2p.default-default";

/// A file or directory of the fixtures in `agent/tests/data`.
pub fn data(rel: &str) -> PathBuf {
    workspace_root().join("agent/tests/data").join(rel)
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.expect("a directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("a file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// A temporary directory with a user's home and a system root in it.
#[derive(Debug)]
pub struct Machine {
    dir: tempfile::TempDir,
    pub home: PathBuf,
    pub root: PathBuf,
}

impl Machine {
    /// An empty home (`<tmp>/home/alice`) and a system root with an empty `etc`.
    pub fn empty() -> Machine {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("home/alice");
        let root = dir.path().join("root");
        fs::create_dir_all(&home).expect("home");
        fs::create_dir_all(root.join("etc")).expect("root");
        Machine { dir, home, root }
    }

    /// Adds the non-compliant Thunderbird profile (two accounts, saved passwords).
    pub fn with_thunderbird(self) -> Machine {
        let fixture = data("thunderbird/noncompliant");
        let profile = self.thunderbird_profile();
        fs::create_dir_all(&profile).expect("profile dir");
        fs::copy(
            fixture.join("profiles.ini"),
            self.home.join(".thunderbird/profiles.ini"),
        )
        .expect("profiles.ini");
        for f in ["prefs.js", "logins.json"] {
            fs::copy(fixture.join(f), profile.join(f)).expect("fixture file");
        }
        self
    }

    /// Adds Apple Mail's preference plists as macOS leaves them.
    pub fn with_apple_mail(self) -> Machine {
        copy_tree(&data("applemail/home"), &self.home);
        self
    }

    /// The temporary directory holding everything.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fixture's Thunderbird profile directory.
    pub fn thunderbird_profile(&self) -> PathBuf {
        self.home.join(".thunderbird").join(THUNDERBIRD_PROFILE_DIR)
    }

    /// Where Thunderbird reads the machine's policies (Linux).
    pub fn policies_json(&self) -> PathBuf {
        self.root.join("etc/thunderbird/policies/policies.json")
    }

    /// The policy file Thunderbird reads on this platform (the agent's
    /// `thunderbird::paths::policy_path`): [`Machine::policies_json`] on Linux, the
    /// installation's `distribution/policies.json` on Windows (tests under Wine).
    pub fn thunderbird_policy_file(&self) -> PathBuf {
        if cfg!(windows) {
            self.root
                .join("Program Files/Mozilla Thunderbird/distribution/policies.json")
        } else {
            self.policies_json()
        }
    }

    /// Writes `text` to `rel` below the temporary directory, creating parents.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().expect("a parent")).expect("parents");
        fs::write(&p, text).expect("write");
        p
    }
}

/// An in-memory registry seeded from a `.reg` fixture (e.g. `outlook/noncompliant.reg`), as
/// `reg import` would leave it: every section's key exists, even one without values.
pub fn registry_from(rel: &str) -> MemRegistry {
    let path = data(rel);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = regfile::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reg = MemRegistry::new();
    for section in file.sections {
        reg.set(&section.key, "__probe", &RegValue::Dword(0))
            .expect("a fresh in-memory registry accepts writes");
        reg.delete_value(&section.key, "__probe")
            .expect("the probe exists");
        for entry in section.entries {
            match entry.op {
                Op::Set(v) => reg.set(&section.key, &entry.name, &v),
                Op::Delete => reg.delete_value(&section.key, &entry.name),
            }
            .expect("a fresh in-memory registry accepts writes");
        }
    }
    reg
}

/// What a run of a command printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Standard output as JSON; the test fails if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {:?}, stderr {:?}", self.stdout, self.stderr))
    }
}

/// Runs a program and collects its output.
pub fn run(program: &Path, args: &[std::ffi::OsString]) -> Out {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 errors"),
    }
}

/// The baseline profile's file, as an administrator passes it with `--profile`.
pub fn baseline_file() -> PathBuf {
    workspace_root().join("profiles/bsi-m5.57.toml")
}

impl Machine {
    /// Runs `agent CMD --home HOME --system-root ROOT EXTRA...`; `check` and `apply` get the
    /// baseline profile and `--var user.email=alice@example.org` unless `extra` has its own
    /// `--profile` or `--var` (or `--no-var`, which is dropped: no variable at all).
    pub fn agent(&self, agent: &Path, cmd: &str, extra: &[&str]) -> Out {
        let mut args: Vec<std::ffi::OsString> = vec![
            cmd.into(),
            "--home".into(),
            self.home.clone().into(),
            "--system-root".into(),
            self.root.clone().into(),
        ];
        if cmd == "check" || cmd == "apply" {
            if !extra.contains(&"--profile") {
                args.extend(["--profile".into(), baseline_file().into()]);
            }
            if !extra
                .iter()
                .any(|a| a.starts_with("--var") || *a == "--no-var")
            {
                args.extend(["--var".into(), "user.email=alice@example.org".into()]);
            }
        }
        args.extend(extra.iter().filter(|a| **a != "--no-var").map(Into::into));
        run(agent, &args)
    }

    /// Every file and folder of the machine (home and system root).
    pub fn snapshot(&self) -> crate::tree::Tree {
        crate::tree::snapshot(self.dir.path())
    }
}

/// prefs.js of a profile with `accounts` accounts (odd POP3, even IMAP), in the order
/// Thunderbird writes it (sorted by name), with 2,000 unrelated prefs: the input of the
/// benchmarks of growth with the account count.
pub fn large_prefs_js(accounts: usize) -> String {
    let mut lines = Vec::new();
    let keys: Vec<String> = (1..=accounts).map(|i| format!("account{i}")).collect();
    lines.push(format!(
        "user_pref(\"mail.accountmanager.accounts\", \"{}\");",
        keys.join(",")
    ));
    let smtp: Vec<String> = (1..=accounts).map(|i| format!("smtp{i}")).collect();
    lines.push(format!(
        "user_pref(\"mail.smtpservers\", \"{}\");",
        smtp.join(",")
    ));
    for i in 1..=accounts {
        let kind = if i % 2 == 0 { "imap" } else { "pop3" };
        lines.extend([
            format!("user_pref(\"mail.account.account{i}.identities\", \"id{i}\");"),
            format!("user_pref(\"mail.account.account{i}.server\", \"server{i}\");"),
            format!("user_pref(\"mail.identity.id{i}.fullName\", \"User {i}\");"),
            format!("user_pref(\"mail.identity.id{i}.useremail\", \"user{i}@example.org\");"),
            format!("user_pref(\"mail.identity.id{i}.smtpServer\", \"smtp{i}\");"),
            format!("user_pref(\"mail.server.server{i}.type\", \"{kind}\");"),
            format!("user_pref(\"mail.server.server{i}.hostname\", \"mail{i}.example.org\");"),
            format!("user_pref(\"mail.server.server{i}.userName\", \"user{i}\");"),
            format!("user_pref(\"mail.server.server{i}.check_time\", 5);"),
            format!("user_pref(\"mail.server.server{i}.leave_on_server\", true);"),
            format!("user_pref(\"mail.server.server{i}.socketType\", 2);"),
            format!("user_pref(\"mail.smtpserver.smtp{i}.hostname\", \"smtp{i}.example.org\");"),
            format!("user_pref(\"mail.smtpserver.smtp{i}.authMethod\", 3);"),
            format!("user_pref(\"mail.smtpserver.smtp{i}.try_ssl\", 2);"),
        ]);
    }
    // Thunderbird keeps many unrelated prefs too; a realistic file is a few thousand lines.
    for i in 0..2000 {
        lines.push(format!(
            "user_pref(\"extensions.bench.filler{i}\", \"value {i} with \\\"quotes\\\"\");"
        ));
    }
    lines.sort();
    let mut text = String::from(
        "// Mozilla User Preferences\n\n// DO NOT EDIT THIS FILE.\n\
         //\n// If you make changes to this file while the application is running,\n\n",
    );
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    text
}

/// A Thunderbird home (`profiles.ini` and one profile) whose prefs.js is
/// [`large_prefs_js`]`(accounts)`.
pub fn large_thunderbird_home(home: &Path, accounts: usize) {
    let dir = home.join(".thunderbird/bench.default");
    fs::create_dir_all(&dir).expect("profile dir");
    fs::write(
        home.join(".thunderbird/profiles.ini"),
        "[Profile0]\nName=bench\nIsRelative=1\nPath=bench.default\n",
    )
    .expect("profiles.ini");
    fs::write(dir.join("prefs.js"), large_prefs_js(accounts)).expect("prefs.js");
}
