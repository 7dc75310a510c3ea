//! The agent's Windows build under Wine: a throwaway Wine prefix per test (a real registry, via
//! Wine's wineserver), `wine reg import/export/add`, and `postwarden-agent.exe`.
//!
//! Everything comes from `scripts/windows.sh`: `build` (cross-compiles with Debian's rustc-web
//! and `-Zbuild-std`; cargo rebuilds only what changed) and `prefix-clone` (a fresh copy of a
//! base prefix with the bcryptprimitives shim, made once). A missing toolchain or Wine fails the
//! test loudly with the command that installs them; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use postwarden_registry::regfile::{self, RegFile};

use postwarden_test_support::workspace_root;

fn windows_sh(args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/windows.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/windows.sh")?;
    if !out.status.success() {
        bail!(
            "`bash scripts/windows.sh {}` failed ({}); install the Windows toolchain and Wine \
             with `sudo bash scripts/windows.sh deps`",
            args.join(" "),
            out.status
        );
    }
    let stdout = String::from_utf8(out.stdout).context("windows.sh output")?;
    Ok(stdout.lines().last().unwrap_or_default().trim().to_owned())
}

/// `postwarden-agent.exe`, built (or brought up to date) once per test binary.
pub fn agent_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| match windows_sh(&["build"]) {
        Ok(path) => PathBuf::from(path),
        Err(e) => panic!("{e:#}"),
    })
    .clone()
}

/// A throwaway Wine prefix, removed (and its wineserver stopped) on drop.
#[derive(Debug)]
pub struct WinePrefix {
    dir: tempfile::TempDir,
}

impl WinePrefix {
    pub fn new() -> Result<WinePrefix> {
        // Next to the base prefix, so the clone can hard-link its files.
        let parent = workspace_root().join("target/wine");
        std::fs::create_dir_all(&parent)?;
        let dir = tempfile::Builder::new()
            .prefix("e2e-")
            .tempdir_in(&parent)
            .context("creating a Wine prefix directory")?;
        windows_sh(&["prefix-clone", &dir.path().display().to_string()])?;
        Ok(WinePrefix { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `C:\postwarden\<name>` inside the prefix, as (Windows path, Unix path).
    pub fn c_file(&self, name: &str) -> (String, PathBuf) {
        let unix = self.path().join("drive_c/postwarden").join(name);
        std::fs::create_dir_all(unix.parent().expect("has a parent")).expect("mkdir in prefix");
        (format!(r"C:\postwarden\{name}"), unix)
    }

    /// `wine <program> <args>` in this prefix.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("wine");
        cmd.arg(program)
            .env("WINEPREFIX", self.path())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            .env("WINEARCH", "win64")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<Output> {
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        Ok(out)
    }

    fn reg(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command("reg");
        cmd.args(args);
        let out = self.run(cmd)?;
        if !out.status.success() {
            bail!(
                "wine reg {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// `wine reg import` of a `.reg` file's bytes.
    pub fn reg_import(&self, bytes: &[u8]) -> Result<()> {
        let (win, unix) = self.c_file("import.reg");
        std::fs::write(&unix, bytes)?;
        self.reg(&["import", &win])?;
        Ok(())
    }

    /// `wine reg add KEY /v NAME /t TYPE /d DATA /f`.
    pub fn reg_add(&self, key: &str, name: &str, ty: &str, data: &str) -> Result<()> {
        self.reg(&["add", key, "/v", name, "/t", ty, "/d", data, "/f"])?;
        Ok(())
    }

    /// `wine reg delete KEY /v NAME /f`.
    pub fn reg_delete_value(&self, key: &str, name: &str) -> Result<()> {
        self.reg(&["delete", key, "/v", name, "/f"])?;
        Ok(())
    }

    /// `wine reg query KEY /v NAME`: the value's type and data as reg.exe prints them
    /// (`REG_DWORD`, `0x3`); `None` if the key or the value does not exist. Names are compared
    /// without regard to case, as Windows does.
    pub fn reg_query(&self, key: &str, name: &str) -> Result<Option<(String, String)>> {
        let mut cmd = self.command("reg");
        cmd.args(["query", key, "/v", name]);
        let out = self.run(cmd)?;
        if !out.status.success() {
            return Ok(None);
        }
        // `    NAME    TYPE    DATA` (names may contain single spaces).
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split("    ").collect();
            match fields[..] {
                ["", n, ty, data] if n.eq_ignore_ascii_case(name) => {
                    Some((ty.to_owned(), data.trim_end().to_owned()))
                }
                _ => None,
            }
        }))
    }

    /// The raw bytes `wine reg export KEY` writes; `None` if the key does not exist.
    pub fn reg_export_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (win, unix) = self.c_file("export.reg");
        let _ = std::fs::remove_file(&unix);
        let mut cmd = self.command("reg");
        cmd.args(["export", key, &win, "/y"]);
        let out = self.run(cmd)?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(Some(std::fs::read(&unix).with_context(|| {
            format!("reading what `reg export {key}` wrote")
        })?))
    }

    /// `wine reg export KEY`, parsed with our `.reg` reader.
    pub fn reg_export(&self, key: &str) -> Result<Option<RegFile>> {
        self.reg_export_bytes(key)?
            .map(|b| regfile::parse(&b).map_err(|e| anyhow::anyhow!("export of {key}: {e}")))
            .transpose()
    }

    /// `wine postwarden-agent.exe <args>`.
    pub fn agent(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command(agent_exe());
        cmd.args(args);
        self.run(cmd)
    }

    /// `wine postwarden-agent.exe <args>`, not started yet: for the long-running `run`, whose
    /// output the caller reads as it comes.
    pub fn agent_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(agent_exe());
        cmd.args(args);
        cmd
    }

    /// Starts `wine <exe>` in the background (for a stand-in `OUTLOOK.EXE`); killed on drop of
    /// the returned guard.
    pub fn spawn(&self, exe: &Path) -> Result<Background> {
        let child = self
            .command(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(Background { child })
    }
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        let _ = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", self.path())
            .status();
    }
}

/// A background Wine process; killed on drop.
#[derive(Debug)]
pub struct Background {
    child: std::process::Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
