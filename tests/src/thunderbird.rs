//! Runs a real, headless Thunderbird on a copy of a profile and asks it, over
//! Marionette, what it actually uses.
//!
//! Method and traps: `shared/reference/thunderbird.md` §6. In short:
//! * always a *copy* of the profile (Thunderbird rewrites prefs.js);
//! * `remote.prefs.recommended=false`, or Marionette itself sets ~100 prefs,
//!   among them `signon.rememberSignons=false`;
//! * `--remote-allow-system-access`, or chrome-context scripts are refused;
//! * policies.json is read from `/etc/thunderbird/policies/` — a test shows
//!   Thunderbird its own directory there through a bind mount inside a private
//!   mount namespace (`unshare`), never by writing the real `/etc`;
//! * files of the installation (AutoConfig's `mozilla.cfg`, default-pref files,
//!   `distribution/policies.json`) are added the same way: overlayfs over the
//!   real directories, in the same namespace ([`LaunchOptions::with_gre_files`]);
//! * each of these mounts is proven from inside Thunderbird (a token file read
//!   back), or the start fails;
//! * the process runs in its own process group, which quit and Drop kill.

use std::fs::{self, File};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::fixture::{user_pref_line, PrefValue};
use crate::marionette::{Context, Marionette};

/// The real Thunderbird binary of the Debian package (`/usr/bin/thunderbird`
/// is only a wrapper script).
pub const DEFAULT_BINARY: &str = "/usr/lib/thunderbird/thunderbird";

/// Environment variable that overrides [`DEFAULT_BINARY`].
pub const BINARY_ENV: &str = "POSTWARDEN_TB_BINARY";

/// What a missing Thunderbird error tells the developer to do.
pub const INSTALL_HINT: &str = "install Thunderbird: scripts/install-test-deps.sh";

/// Profile files copied into the throw-away profile (never the mail store).
pub const PROFILE_FILES: [&str; 6] = [
    "prefs.js",
    "user.js",
    "logins.json",
    "key4.db",
    "cert9.db",
    "handlers.json",
];

/// Where Thunderbird (Debian build, `MOZ_SYSTEM_POLICIES`) reads system config.
pub const ETC_THUNDERBIRD: &str = "/etc/thunderbird";

/// Where the Debian package installs Thunderbird (its GRE directory).
pub const DEFAULT_GRE_DIR: &str = "/usr/lib/thunderbird";

/// Exit code of our `sh -c` wrapper when the bind mount fails.
const MOUNT_FAILED_EXIT: i32 = 97;

/// Exit code of our `sh -c` wrapper when an overlay mount fails.
const OVERLAY_FAILED_EXIT: i32 = 98;

/// File written into each overlay's upper directory and read back through Thunderbird to prove
/// that Thunderbird sees the overlay.
const OVERLAY_CHECK_FILE: &str = ".postwarden-e2e-overlay-check";

/// File written into the bind source and read back through Thunderbird to
/// prove that Thunderbird sees the caller's directory as /etc/thunderbird.
const BIND_CHECK_FILE: &str = ".postwarden-e2e-bind-check";

const PROBE_JS: &str = include_str!("js/probe.js");
const FETCH_POP3_JS: &str = include_str!("js/fetch_pop3.js");
const QUIT_JS: &str = include_str!("js/quit.js");
const READ_FILE_JS: &str = include_str!("js/read_file.js");

/// The Thunderbird binary to use: `$POSTWARDEN_TB_BINARY` or [`DEFAULT_BINARY`].
pub fn thunderbird_binary() -> PathBuf {
    std::env::var_os(BINARY_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY))
}

/// Returns the Thunderbird binary, or an error that says how to install it.
pub fn require_thunderbird() -> Result<PathBuf> {
    require_thunderbird_at(&thunderbird_binary())
}

/// Like [`require_thunderbird`] for an explicit path.
pub fn require_thunderbird_at(binary: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    match fs::metadata(binary) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(binary.to_path_buf()),
        Ok(_) => bail!(
            "{} is not an executable file; {INSTALL_HINT}",
            binary.display()
        ),
        Err(e) => bail!(
            "Thunderbird not found at {} ({e}); {INSTALL_HINT}",
            binary.display()
        ),
    }
}

/// What [`ThunderbirdRun::probe`] should read besides the accounts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProbeQuery {
    /// Pref names to report (value, default, user value, locked, type).
    pub prefs: Vec<String>,
    /// File extensions (without dot) whose MIME handler to report.
    pub extensions: Vec<String>,
}

impl ProbeQuery {
    /// An empty query (accounts, policies, logins and messages are always read).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pref name.
    pub fn pref(mut self, name: impl Into<String>) -> Self {
        self.prefs.push(name.into());
        self
    }

    /// Adds several pref names.
    pub fn prefs<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.prefs.extend(names.into_iter().map(Into::into));
        self
    }

    /// Adds a file extension (without dot).
    pub fn extension(mut self, ext: impl Into<String>) -> Self {
        self.extensions.push(ext.into());
        self
    }
}

/// Files laid over a real directory with overlayfs, in Thunderbird's private mount namespace:
/// Thunderbird sees `target` with the files of `files` added (or replacing the real ones of the
/// same name); the real directory is never written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The directory as Thunderbird names it, e.g. `/usr/lib/thunderbird`. Symlinks below it
    /// are followed: `defaults/pref/x.js` under Debian's `/usr/lib/thunderbird` lands in
    /// `/usr/share/thunderbird/defaults/pref`, where the `defaults` symlink points.
    pub target: PathBuf,
    /// A directory that mirrors `target`: `files/defaults/pref/x.js` is shown as
    /// `target/defaults/pref/x.js`. Only regular files count (empty folders are ignored).
    pub files: PathBuf,
}

/// One overlayfs mount of a run (see [`ThunderbirdRun::overlay_mounts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// The real directory the overlay covers, symlinks resolved.
    pub point: PathBuf,
    /// The files laid over it, relative to `point`.
    pub files: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    token: String,
}

/// How to start Thunderbird.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The real Thunderbird binary.
    pub binary: PathBuf,
    /// A directory Thunderbird must see as `/etc/thunderbird` (policies.json
    /// goes to `<dir>/policies/policies.json`). `None`: the real /etc.
    pub etc_thunderbird: Option<PathBuf>,
    /// How long to wait for Marionette after the start.
    pub startup_timeout: Duration,
    /// Profile files to copy (see [`PROFILE_FILES`]).
    pub profile_files: Vec<String>,
    /// Extra prefs appended to the copy's prefs.js (after the harness prefs).
    pub extra_prefs: Vec<(String, PrefValue)>,
    /// Keep the temporary directory (profile copy, HOME, log) for debugging.
    /// Also enabled by `POSTWARDEN_E2E_KEEP_TMP=1`.
    pub keep_tmp: bool,
    /// Files to copy into Thunderbird's HOME: `(path relative to HOME, source file)`, e.g. the
    /// user's `~/.mime.types`.
    pub home_files: Vec<(String, PathBuf)>,
    /// Run on the profile itself instead of a copy (see [`ThunderbirdRun::start_in_place`]).
    pub in_place: bool,
    /// A directory that mirrors Thunderbird's installation directory (the GRE: the binary's
    /// folder, `/usr/lib/thunderbird` on Debian), laid over it; see
    /// [`LaunchOptions::with_gre_files`].
    pub gre_files: Option<PathBuf>,
    /// Further directories laid over real ones; see [`Overlay`].
    pub overlays: Vec<Overlay>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            binary: thunderbird_binary(),
            etc_thunderbird: None,
            startup_timeout: Duration::from_secs(60),
            profile_files: PROFILE_FILES.iter().map(|s| s.to_string()).collect(),
            extra_prefs: Vec::new(),
            keep_tmp: std::env::var_os("POSTWARDEN_E2E_KEEP_TMP").is_some_and(|v| v == "1"),
            home_files: Vec::new(),
            in_place: false,
            gre_files: None,
            overlays: Vec::new(),
        }
    }
}

impl LaunchOptions {
    /// Default options with the given `/etc/thunderbird` replacement.
    pub fn with_etc(etc_thunderbird: Option<PathBuf>) -> Self {
        LaunchOptions {
            etc_thunderbird,
            ..Self::default()
        }
    }

    /// Leaves `name` out of the profile copy.
    pub fn without_profile_file(mut self, name: &str) -> Self {
        self.profile_files.retain(|f| f != name);
        self
    }

    /// Lays the files of `dir` over Thunderbird's installation directory (see
    /// [`LaunchOptions::gre_dir`]), as an administrator would install them: `dir/mozilla.cfg`
    /// (AutoConfig), `dir/defaults/pref/autoconfig.js` (default-pref files; on Debian they land
    /// in `/usr/share/thunderbird/defaults/pref`, where the `defaults` symlink points),
    /// `dir/distribution/policies.json`. Nothing real is written: overlayfs in Thunderbird's
    /// private mount namespace, checked from inside Thunderbird at the start.
    pub fn with_gre_files(mut self, dir: impl Into<PathBuf>) -> Self {
        self.gre_files = Some(dir.into());
        self
    }

    /// Lays the files of `files` over the real directory `target` (see [`Overlay`]).
    pub fn with_overlay(mut self, target: impl Into<PathBuf>, files: impl Into<PathBuf>) -> Self {
        self.overlays.push(Overlay {
            target: target.into(),
            files: files.into(),
        });
        self
    }

    /// Shows Thunderbird a system root as the agent's `--system-root` models it:
    /// `<root>/etc/thunderbird` as `/etc/thunderbird` and the files of
    /// `<root>/usr/lib/thunderbird` laid over the installation directory (each only if it
    /// exists).
    pub fn with_system_root(mut self, root: &Path) -> Self {
        let etc = root.join(ETC_THUNDERBIRD.trim_start_matches('/'));
        if etc.is_dir() {
            self.etc_thunderbird = Some(etc);
        }
        let gre = root.join(DEFAULT_GRE_DIR.trim_start_matches('/'));
        if gre.is_dir() {
            self.gre_files = Some(gre);
        }
        self
    }

    /// Thunderbird's installation (GRE) directory: the folder of the real binary, symlinks
    /// resolved (`/usr/lib/thunderbird` on Debian).
    pub fn gre_dir(&self) -> PathBuf {
        fs::canonicalize(&self.binary)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_GRE_DIR))
    }

    /// Every overlay of this launch, the GRE files first.
    pub fn all_overlays(&self) -> Vec<Overlay> {
        let gre = self.gre_files.iter().map(|files| Overlay {
            target: self.gre_dir(),
            files: files.clone(),
        });
        gre.chain(self.overlays.iter().cloned()).collect()
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct QuitReport {
    /// From the quit request until the process group was gone.
    pub duration: Duration,
    /// Exit status of the process we started (unshare or Thunderbird).
    pub exit_status: Option<ExitStatus>,
    /// `None` if Thunderbird quit by itself, else the signal we had to send.
    pub escalated_to: Option<&'static str>,
}

/// A running headless Thunderbird with a Marionette session in chrome context.
#[derive(Debug)]
pub struct ThunderbirdRun {
    // Drop kills the process group first, then removes the temp dir (the
    // profile copy Thunderbird was using).
    client: Mutex<Marionette>,
    process: GroupProcess,
    profile: PathBuf,
    log_path: PathBuf,
    startup: Duration,
    overlay_mounts: Vec<OverlayMount>,
    tmp: Option<TempDir>,
}

impl ThunderbirdRun {
    /// Starts Thunderbird on a copy of `profile`; see [`LaunchOptions`].
    pub fn start(profile: &Path, etc_thunderbird: Option<PathBuf>) -> Result<Self> {
        Self::start_with(profile, LaunchOptions::with_etc(etc_thunderbird))
    }

    /// Starts Thunderbird on `profile` itself, not a copy, as a user's Thunderbird runs: it
    /// takes the profile's `lock`, rewrites its prefs.js and removes the lock when it exits, so
    /// an agent watching the profile sees a running Thunderbird. The harness prefs (Marionette's
    /// port, `remote.prefs.recommended=false`) are appended to the profile's prefs.js;
    /// `opts.profile_files` is ignored. HOME is still a temporary folder (see
    /// [`LaunchOptions::home_files`]).
    pub fn start_in_place(profile: &Path, opts: LaunchOptions) -> Result<Self> {
        Self::start_with(
            profile,
            LaunchOptions {
                in_place: true,
                ..opts
            },
        )
    }

    /// Starts Thunderbird on a copy of `profile` with explicit options.
    pub fn start_with(profile: &Path, opts: LaunchOptions) -> Result<Self> {
        let binary = require_thunderbird_at(&opts.binary)?;
        let tmp = tempfile::Builder::new()
            .prefix("postwarden-e2e-tb-")
            .tempdir()
            .context("creating the temporary directory")?;
        let copy = if opts.in_place {
            profile.to_path_buf()
        } else {
            tmp.path().join("profile")
        };
        let home = tmp.path().join("home");
        fs::create_dir_all(&copy)?;
        fs::create_dir_all(&home)?;
        for (rel, src) in &opts.home_files {
            let dst = home.join(rel);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
        for name in opts.profile_files.iter().filter(|_| !opts.in_place) {
            let src = profile.join(name);
            if src.is_file() {
                fs::copy(&src, copy.join(name))
                    .with_context(|| format!("copying {}", src.display()))?;
            }
        }
        let port = free_port()?;
        append_harness_prefs(&copy.join("prefs.js"), port, &opts.extra_prefs)?;

        let bind_check = match &opts.etc_thunderbird {
            Some(dir) => Some(prepare_etc_dir(dir)?),
            None => None,
        };
        let mounts = prepare_overlays(
            &opts.all_overlays(),
            &tmp.path().join("overlays"),
            opts.etc_thunderbird.is_some(),
        )?;
        let namespaced = opts.etc_thunderbird.is_some() || !mounts.is_empty();

        let mut tb_args: Vec<String> = vec![
            binary.to_string_lossy().into_owned(),
            "--headless".into(),
            "--marionette".into(),
            "--remote-allow-system-access".into(),
            "--no-remote".into(),
            "--profile".into(),
            copy.to_string_lossy().into_owned(),
        ];
        let mut cmd = if namespaced {
            namespace_command(opts.etc_thunderbird.as_deref(), &mounts, &tb_args)?
        } else {
            let mut c = Command::new(tb_args.remove(0));
            c.args(&tb_args);
            c
        };
        let log_path = tmp.path().join("thunderbird.log");
        let log = File::create(&log_path)?;
        cmd.env("HOME", &home)
            .env("MOZ_HEADLESS", "1")
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("MOZ_NO_REMOTE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt as _;
            cmd.process_group(0);
        }

        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let mut process = GroupProcess {
            pgid: child.id(),
            child: Some(child),
        };

        let waited = wait_for_marionette(
            &mut process,
            port,
            opts.startup_timeout,
            &log_path,
            &opts,
            &mounts,
        );
        let client = match waited {
            Ok(c) => c,
            Err(e) => {
                process.terminate(Duration::from_secs(2));
                if let Some(dir) = &opts.etc_thunderbird {
                    let _ = fs::remove_file(dir.join(BIND_CHECK_FILE));
                }
                relax_work_dirs(&mounts);
                return Err(e);
            }
        };
        let startup = started.elapsed();
        let mut tmp = Some(tmp);
        if opts.keep_tmp {
            if let Some(t) = tmp.take() {
                eprintln!("postwarden-e2e: keeping {}", t.path().display());
                let _ = t.keep();
            }
        }
        let run = ThunderbirdRun {
            client: Mutex::new(client),
            process,
            profile: copy,
            log_path,
            startup,
            overlay_mounts: mounts,
            tmp,
        };
        if let (Some(dir), Some(token)) = (&opts.etc_thunderbird, bind_check) {
            let seen = run.execute(
                READ_FILE_JS,
                vec![json!(format!("{ETC_THUNDERBIRD}/{BIND_CHECK_FILE}"))],
            );
            let _ = fs::remove_file(dir.join(BIND_CHECK_FILE));
            let seen =
                seen.context("checking the /etc/thunderbird bind mount from inside Thunderbird")?;
            if seen.as_str() != Some(token.as_str()) {
                bail!(
                    "Thunderbird does not see {} as {ETC_THUNDERBIRD} (read {seen}); \
                     the bind mount did not take effect, refusing to run without the policy",
                    dir.display()
                );
            }
        }
        for m in &run.overlay_mounts {
            let path = m.point.join(OVERLAY_CHECK_FILE);
            let seen = run
                .execute(READ_FILE_JS, vec![json!(path.to_string_lossy())])
                .with_context(|| {
                    format!(
                        "checking the overlay over {} from inside Thunderbird",
                        m.point.display()
                    )
                })?;
            if seen.as_str() != Some(m.token.as_str()) {
                bail!(
                    "Thunderbird does not see the files laid over {} (read {seen} from {}); \
                     the overlay did not take effect, refusing to run without them",
                    m.point.display(),
                    path.display()
                );
            }
        }
        Ok(run)
    }

    /// The overlay mounts of this run: which real directories got which files.
    pub fn overlay_mounts(&self) -> &[OverlayMount] {
        &self.overlay_mounts
    }

    /// Time from spawn until the Marionette chrome session was ready.
    pub fn startup_duration(&self) -> Duration {
        self.startup
    }

    /// The profile copy Thunderbird runs on (the profile itself when started in place).
    pub fn profile_copy(&self) -> &Path {
        &self.profile
    }

    /// Path of Thunderbird's stdout/stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Thunderbird's stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process group id (== pid of the process we spawned).
    pub fn pgid(&self) -> u32 {
        self.process.pgid
    }

    /// Runs a chrome-context script body (`arguments` = `args`; a returned
    /// Promise is awaited) and returns its JSON result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client().execute_script(script, args)
    }

    /// Reads what the running Thunderbird uses: requested prefs
    /// (`{value, defaultValue, userValue, locked, hasUserValue, type}`),
    /// `policies_status` (ACTIVE/INACTIVE/FAILED/...), `active_policies`,
    /// `accounts`, `servers` (by key), `identities` (by key), `smtp` (by key),
    /// `handlers` (by extension), `logins` (`decryptable`, `stored`),
    /// `policy_messages`, open `windows` and the probe's own `errors`.
    pub fn probe(&self, query: &ProbeQuery) -> Result<Value> {
        self.execute(PROBE_JS, vec![serde_json::to_value(query)?])
            .context("running the probe script in Thunderbird")
    }

    /// Triggers "Get Messages" for the POP3 server `server_key`, with the
    /// password set in memory only. Waits until the fetch finished or `wait`
    /// passed; returns `{started, finished, status, ...}`.
    pub fn fetch_pop3(&self, server_key: &str, password: &str, wait: Duration) -> Result<Value> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let mut client = self.client();
        let script_timeout = wait + Duration::from_secs(30);
        client.set_script_timeout(script_timeout)?;
        client.set_read_timeout(script_timeout + Duration::from_secs(10))?;
        let result = client.execute_script(
            FETCH_POP3_JS,
            vec![json!({"serverKey": server_key, "password": password, "waitMs": wait_ms})],
        );
        client.set_script_timeout(SCRIPT_TIMEOUT)?;
        client.set_read_timeout(READ_TIMEOUT)?;
        result.with_context(|| format!("fetching mail for POP3 server {server_key}"))
    }

    /// [`quit`](Self::quit) for tests: panics with `label` if quitting fails and logs how
    /// long it took and whether signals were needed.
    pub fn quit_logged(self, label: &str) -> QuitReport {
        let report = self
            .quit()
            .unwrap_or_else(|e| panic!("[{label}] quitting Thunderbird: {e:#}"));
        eprintln!(
            "[{label}] Thunderbird quit in {:.2} s (escalated: {:?})",
            report.duration.as_secs_f64(),
            report.escalated_to
        );
        report
    }

    /// Asks Thunderbird to force-quit, waits, then SIGTERM/SIGKILLs the
    /// process group if anything is left.
    pub fn quit(mut self) -> Result<QuitReport> {
        let t0 = Instant::now();
        let _ = self.client().execute_script(QUIT_JS, vec![]);
        let (exit_status, escalated_to) = self.process.shutdown(Duration::from_secs(20));
        if self.process.group_alive() {
            bail!(
                "process group {} still has live processes after SIGKILL",
                self.process.pgid
            );
        }
        Ok(QuitReport {
            duration: t0.elapsed(),
            exit_status,
            escalated_to,
        })
    }

    fn client(&self) -> MutexGuard<'_, Marionette> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ThunderbirdRun {
    fn drop(&mut self) {
        // `process` kills the group in its own Drop; keep the temp dir alive
        // until then by dropping it explicitly afterwards.
        self.process.terminate(Duration::from_secs(3));
        relax_work_dirs(&self.overlay_mounts);
        drop(self.tmp.take());
    }
}

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const READ_TIMEOUT: Duration = Duration::from_secs(75);

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn append_harness_prefs(prefs_js: &Path, port: u16, extra: &[(String, PrefValue)]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(prefs_js)
        .with_context(|| format!("opening {}", prefs_js.display()))?;
    let mut text = String::from("\n");
    text.push_str(&user_pref_line("marionette.port", i64::from(port)));
    // Without this Marionette sets ~100 "recommended" prefs, among them
    // signon.rememberSignons=false, which would falsify the probe.
    text.push_str(&user_pref_line("remote.prefs.recommended", false));
    for (name, value) in extra {
        text.push_str(&user_pref_line(name, value.clone()));
    }
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Makes `dir` usable as /etc/thunderbird: copies Debian's `pref/` in when
/// missing and writes the bind-check token. Returns the token.
fn prepare_etc_dir(dir: &Path) -> Result<String> {
    let real = Path::new(ETC_THUNDERBIRD);
    if !real.is_dir() {
        bail!(
            "{ETC_THUNDERBIRD} does not exist, so there is no mount point to show Thunderbird \
             the test's policies.json; {INSTALL_HINT}"
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pref_dst = dir.join("pref");
    let pref_src = real.join("pref");
    if !pref_dst.exists() && pref_src.is_dir() {
        fs::create_dir_all(&pref_dst)?;
        for entry in fs::read_dir(&pref_src)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::copy(entry.path(), pref_dst.join(entry.file_name()))
                    .with_context(|| format!("copying {}", entry.path().display()))?;
            }
        }
    }
    let token = format!(
        "postwarden-e2e pid {} at {:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    fs::write(dir.join(BIND_CHECK_FILE), &token)?;
    Ok(token)
}

/// The regular files under `dir`, relative to it, sorted (symlinks followed).
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let here = root.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&here)
            .with_context(|| format!("reading {}", here.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = rel.join(e.file_name());
            let meta = fs::metadata(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            if meta.is_dir() {
                walk(root, &rel, out)?;
            } else if meta.is_file() {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out)?;
    Ok(out)
}

/// A planned overlay mount: its mount point and `(path below it, source file)` per file.
type MountPlan = (PathBuf, Vec<(PathBuf, PathBuf)>);

/// Where each file of `overlays` must be mounted: for every file, the deepest existing folder
/// above its place in the target, symlinks resolved, is a mount point; nested mount points
/// are folded into the outer one.
fn plan_overlays(overlays: &[Overlay]) -> Result<Vec<MountPlan>> {
    let mut by_point: std::collections::BTreeMap<PathBuf, Vec<(PathBuf, PathBuf)>> =
        std::collections::BTreeMap::new();
    for o in overlays {
        if !o.target.is_absolute() || !o.target.is_dir() {
            bail!(
                "cannot lay files over {}: not an existing absolute directory",
                o.target.display()
            );
        }
        for rel in files_under(&o.files)? {
            let logical = o.target.join(&rel);
            let mut existing = logical
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| o.target.clone());
            while !existing.is_dir() {
                existing = existing
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| o.target.clone());
            }
            let point = fs::canonicalize(&existing)
                .with_context(|| format!("resolving {}", existing.display()))?;
            let below = logical
                .strip_prefix(&existing)
                .map(Path::to_path_buf)
                .with_context(|| format!("placing {}", logical.display()))?;
            by_point
                .entry(point)
                .or_default()
                .push((below, o.files.join(&rel)));
        }
    }
    // BTreeMap order puts a folder before the folders inside it.
    let mut out: Vec<MountPlan> = Vec::new();
    for (point, files) in by_point {
        match out.iter_mut().find(|(outer, _)| point.starts_with(outer)) {
            Some((outer, outer_files)) => {
                let prefix = point.strip_prefix(&*outer).unwrap_or(Path::new(""));
                outer_files.extend(files.into_iter().map(|(b, src)| (prefix.join(b), src)));
            }
            None => out.push((point, files)),
        }
    }
    Ok(out)
}

/// Plans the overlays and fills their upper folders under `base` (copies of the files plus the
/// check token). Nothing is mounted yet: the `unshare` wrapper does that.
fn prepare_overlays(
    overlays: &[Overlay],
    base: &Path,
    etc_bound: bool,
) -> Result<Vec<OverlayMount>> {
    let mut out = Vec::new();
    for (i, (point, files)) in plan_overlays(overlays)?.into_iter().enumerate() {
        if etc_bound && Path::new(ETC_THUNDERBIRD).starts_with(&point) {
            bail!(
                "an overlay over {} would hide the {ETC_THUNDERBIRD} bind mount; put those \
                 files into the /etc/thunderbird directory instead",
                point.display()
            );
        }
        let dir = base.join(i.to_string());
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        fs::create_dir_all(&upper)?;
        fs::create_dir_all(&work)?;
        for p in [&point, &upper, &work] {
            let text = p.to_string_lossy();
            if text.contains([',', ':', '\\', '"', '\n']) {
                bail!(
                    "{} cannot be an overlayfs mount option (',', ':', '\\', '\"' or a line \
                     break in it)",
                    p.display()
                );
            }
        }
        for (below, src) in &files {
            let dst = upper.join(below);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
        let token = format!(
            "postwarden-e2e overlay {i} over {} pid {} at {:?}",
            point.display(),
            std::process::id(),
            std::time::SystemTime::now()
        );
        fs::write(upper.join(OVERLAY_CHECK_FILE), &token)?;
        out.push(OverlayMount {
            point,
            files: files.into_iter().map(|(b, _)| b).collect(),
            upper,
            work,
            token,
        });
    }
    Ok(out)
}

/// overlayfs leaves a mode-000 folder in its work directory; make it removable again.
fn relax_work_dirs(mounts: &[OverlayMount]) {
    use std::os::unix::fs::PermissionsExt as _;
    for m in mounts {
        if let Ok(entries) = fs::read_dir(&m.work) {
            for e in entries.flatten() {
                let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
            }
        }
    }
}

/// `unshare ... -- sh -c '<mounts> && exec "$@"' postwarden-e2e <mount args> <thunderbird...>`:
/// the bind mount of `etc` over /etc/thunderbird, then one overlayfs mount per `mounts`, all in
/// a private mount namespace that only Thunderbird (and its children) see.
fn namespace_command(
    etc: Option<&Path>,
    mounts: &[OverlayMount],
    tb_args: &[String],
) -> Result<Command> {
    let unshare = find_in_path("unshare").ok_or_else(|| {
        anyhow!(
            "`unshare` (util-linux) is not installed; it is needed to show Thunderbird the \
             test's policies.json without touching the real {ETC_THUNDERBIRD}; \
             run scripts/install-test-deps.sh"
        )
    })?;
    if find_in_path("mount").is_none() {
        bail!("`mount` (util-linux) is not installed; run scripts/install-test-deps.sh");
    }
    let mut script = String::new();
    let mut params: Vec<PathBuf> = Vec::new();
    if let Some(dir) = etc {
        let dir = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
        params.push(dir);
        script.push_str(&format!(
            "mount --bind \"$1\" {ETC_THUNDERBIRD} || {{ echo \"postwarden-e2e: cannot \
             bind-mount $1 over {ETC_THUNDERBIRD}\" >&2; exit {MOUNT_FAILED_EXIT}; }}; "
        ));
    }
    for m in mounts {
        let n = params.len();
        let (point, upper, work) = (n + 1, n + 2, n + 3);
        params.extend([m.point.clone(), m.upper.clone(), m.work.clone()]);
        // Without `userxattr` first (root); with it for a user namespace on kernels that want it.
        let opts = format!("lowerdir=${{{point}}},upperdir=${{{upper}}},workdir=${{{work}}}");
        script.push_str(&format!(
            "{{ mount -t overlay postwarden-e2e -o \"{opts}\" \"${{{point}}}\" 2>/dev/null || \
             mount -t overlay postwarden-e2e -o \"{opts},userxattr\" \"${{{point}}}\"; }} || \
             {{ echo \"postwarden-e2e: cannot mount an overlay over ${{{point}}}\" >&2; \
             exit {OVERLAY_FAILED_EXIT}; }}; "
        ));
    }
    script.push_str(&format!("shift {}; exec \"$@\"", params.len()));
    let mut cmd = Command::new(unshare);
    if !is_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--",
        "sh",
        "-c",
    ])
    .arg(script)
    .arg("postwarden-e2e")
    .args(params)
    .args(tb_args);
    Ok(cmd)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_for_marionette(
    process: &mut GroupProcess,
    port: u16,
    timeout: Duration,
    log_path: &Path,
    opts: &LaunchOptions,
    mounts: &[OverlayMount],
) -> Result<Marionette> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_wait()? {
            let tail = log_tail(log_path, 30);
            if status.code() == Some(OVERLAY_FAILED_EXIT) && !mounts.is_empty() {
                let points: Vec<String> = mounts
                    .iter()
                    .map(|m| m.point.display().to_string())
                    .collect();
                bail!(
                    "could not mount an overlay over {} in a private mount namespace (needs \
                     root, or unprivileged user namespaces with overlayfs, Linux 5.11 or \
                     later); Thunderbird was not started:\n{tail}",
                    points.join(", ")
                );
            }
            if opts.etc_thunderbird.is_some() || !mounts.is_empty() {
                if status.code() == Some(MOUNT_FAILED_EXIT) {
                    bail!(
                        "could not bind-mount {} over {ETC_THUNDERBIRD} in a private mount \
                         namespace (needs root, or unprivileged user namespaces for \
                         `unshare --user --map-root-user`); Thunderbird was not started:\n{tail}",
                        opts.etc_thunderbird
                            .as_deref()
                            .unwrap_or(Path::new("?"))
                            .display()
                    );
                }
                if tail.contains("unshare:") {
                    bail!(
                        "`unshare` could not create the private mount namespace (needs root, \
                         or unprivileged user namespaces enabled); Thunderbird was not \
                         started:\n{tail}"
                    );
                }
            }
            bail!("Thunderbird exited during startup with {status}; log:\n{tail}");
        }
        if Instant::now() >= deadline {
            bail!(
                "Marionette did not answer on {addr} within {timeout:?}; log:\n{}",
                log_tail(log_path, 30)
            );
        }
        match Marionette::connect(addr, Duration::from_millis(500)) {
            Ok(mut client) => {
                client.set_read_timeout(READ_TIMEOUT)?;
                client
                    .new_session(json!({}))
                    .context("WebDriver:NewSession")?;
                client.set_context(Context::Chrome)?;
                client.set_script_timeout(SCRIPT_TIMEOUT)?;
                return Ok(client);
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Live (non-zombie) processes whose process group is `pgid`, from /proc.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let pgrp = f.nth(1).and_then(|s| s.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            out.push(pid);
        }
    }
    out
}

/// A child process that leads its own process group.
#[derive(Debug)]
struct GroupProcess {
    pgid: u32,
    child: Option<Child>,
}

impl GroupProcess {
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    fn members(&self) -> Vec<u32> {
        process_group_members(self.pgid)
    }

    fn group_alive(&mut self) -> bool {
        let _ = self.try_wait();
        !self.members().is_empty()
    }

    fn wait_gone(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.group_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, "--", &format!("-{}", self.pgid)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits `grace` for a voluntary exit, then TERM (5 s), then KILL.
    fn shutdown(&mut self, grace: Duration) -> (Option<ExitStatus>, Option<&'static str>) {
        let mut escalated = None;
        if !self.wait_gone(grace) {
            escalated = Some("SIGTERM");
            self.signal("TERM");
            if !self.wait_gone(Duration::from_secs(5)) {
                escalated = Some("SIGKILL");
                self.signal("KILL");
                self.wait_gone(Duration::from_secs(5));
            }
        }
        let status = self.child.take().and_then(|mut c| c.wait().ok());
        (status, escalated)
    }

    fn terminate(&mut self, grace: Duration) {
        if self.child.is_none() && self.members().is_empty() {
            return;
        }
        self.signal("TERM");
        if !self.wait_gone(grace) {
            self.signal("KILL");
            self.wait_gone(Duration::from_secs(5));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GroupProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_thunderbird_says_how_to_install_it() {
        let err = require_thunderbird_at(Path::new("/nonexistent/thunderbird")).unwrap_err();
        assert!(
            err.to_string()
                .contains("install Thunderbird: scripts/install-test-deps.sh"),
            "{err}"
        );
    }

    #[test]
    fn harness_prefs_are_appended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("prefs.js");
        fs::write(&p, "user_pref(\"a\", 1);").unwrap();
        append_harness_prefs(&p, 4242, &[("x.y".into(), PrefValue::Bool(true))]).unwrap();
        let s = fs::read_to_string(&p).unwrap();
        assert_eq!(
            s,
            "user_pref(\"a\", 1);\nuser_pref(\"marionette.port\", 4242);\n\
             user_pref(\"remote.prefs.recommended\", false);\nuser_pref(\"x.y\", true);\n"
        );
    }

    #[test]
    fn overlays_follow_symlinks_and_fold_nested_mount_points() {
        let d = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(d.path()).unwrap();
        // Debian's shape: <gre>/defaults -> ../../share/app/defaults.
        let gre = real.join("usr/lib/app");
        fs::create_dir_all(gre.join("sub")).unwrap();
        fs::create_dir_all(real.join("usr/share/app/defaults/pref")).unwrap();
        std::os::unix::fs::symlink("../../share/app/defaults", gre.join("defaults")).unwrap();
        let files = real.join("files");
        for rel in [
            "mozilla.cfg",
            "defaults/pref/autoconfig.js",
            "distribution/policies.json",
            "sub/x.txt",
        ] {
            let p = files.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, rel).unwrap();
        }
        fs::create_dir_all(files.join("empty")).unwrap();
        let plan = plan_overlays(&[Overlay {
            target: gre.clone(),
            files: files.clone(),
        }])
        .unwrap();
        let got: Vec<(PathBuf, Vec<PathBuf>)> = plan
            .iter()
            .map(|(p, f)| (p.clone(), f.iter().map(|(b, _)| b.clone()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    gre.clone(),
                    vec![
                        PathBuf::from("distribution/policies.json"),
                        PathBuf::from("mozilla.cfg"),
                        PathBuf::from("sub/x.txt"),
                    ]
                ),
                (
                    real.join("usr/share/app/defaults/pref"),
                    vec![PathBuf::from("autoconfig.js")]
                ),
            ]
        );
        let base = real.join("upper");
        let mounts = prepare_overlays(
            &[Overlay {
                target: gre.clone(),
                files,
            }],
            &base,
            false,
        )
        .unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            fs::read_to_string(mounts[0].upper.join("sub/x.txt")).unwrap(),
            "sub/x.txt"
        );
        assert_eq!(
            fs::read_to_string(mounts[1].upper.join(OVERLAY_CHECK_FILE)).unwrap(),
            mounts[1].token
        );
        let err = plan_overlays(&[Overlay {
            target: real.join("missing"),
            files: real.join("files"),
        }])
        .unwrap_err();
        assert!(err.to_string().contains("not an existing"), "{err}");
    }

    #[test]
    fn system_root_maps_etc_and_gre() {
        let d = tempfile::tempdir().unwrap();
        let opts = LaunchOptions::default().with_system_root(d.path());
        assert_eq!((opts.etc_thunderbird, opts.gre_files), (None, None));
        fs::create_dir_all(d.path().join("etc/thunderbird")).unwrap();
        fs::create_dir_all(d.path().join("usr/lib/thunderbird")).unwrap();
        let opts = LaunchOptions::default().with_system_root(d.path());
        assert_eq!(opts.etc_thunderbird, Some(d.path().join("etc/thunderbird")));
        assert_eq!(opts.gre_files, Some(d.path().join("usr/lib/thunderbird")));
        assert_eq!(opts.all_overlays()[0].target, opts.gre_dir());
    }

    #[test]
    fn process_group_is_killed_on_drop() {
        use std::os::unix::process::CommandExt as _;
        let child = Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let g = GroupProcess {
            pgid: child.id(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.members().len() < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let members = g.members();
        assert_eq!(members.len(), 3, "{members:?}");
        drop(g);
        for pid in members {
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                state.is_empty() || state.contains(") Z"),
                "pid {pid} survived: {state}"
            );
        }
    }
}
