//! Running the platform's tools: a command line as data (so the pure parts are tested on any
//! OS), and one run of it with a deadline after which the child is killed.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a child's standard output and error are read up to; the rest is drained and dropped,
/// so a chatty child can neither block on a full pipe nor fill the agent's memory.
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// A command line: program, arguments, and the environment it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// `Some`: exactly these variables, nothing inherited from the agent. `None`: the agent's.
    pub env: Option<Vec<(String, OsString)>>,
}

impl CommandLine {
    pub fn new(program: impl Into<OsString>) -> CommandLine {
        CommandLine {
            program: program.into(),
            args: Vec::new(),
            env: Some(Vec::new()),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> CommandLine {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> CommandLine {
        self.env
            .get_or_insert_with(Vec::new)
            .push((name.to_owned(), value.into()));
        self
    }

    /// The agent's environment instead of an empty one.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn inherit_env(mut self) -> CommandLine {
        self.env = None;
        self
    }

    /// The program and its arguments, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(env) = &self.env {
            cmd.env_clear();
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }
}

/// A child that exited.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Its standard error, trimmed, for a reason.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// When a notification must be done by: one deadline for every tool it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }
}

#[derive(Debug)]
pub(crate) enum RunError {
    Spawn(io::Error),
    Wait(io::Error),
    /// Still running at the deadline: killed and reaped.
    TimedOut {
        timeout: Duration,
    },
}

impl RunError {
    /// The reason, naming the command line.
    pub fn reason(&self, line: &CommandLine) -> String {
        match self {
            RunError::Spawn(e) => format!("could not start {}: {e}", line.display()),
            RunError::Wait(e) => format!("could not wait for {}: {e}", line.display()),
            RunError::TimedOut { timeout } => format!(
                "{} did not finish within {} ms and was killed",
                line.display(),
                timeout.as_millis()
            ),
        }
    }
}

/// Runs `line` (in `/` on Unix), with `input` on its standard input, and waits until it exits
/// or `deadline` passes; then it is killed. Output is read in threads of
/// its own, so neither pipe can fill up and stall the child.
pub(crate) fn run(
    line: &CommandLine,
    input: &[u8],
    deadline: Deadline,
) -> Result<Finished, RunError> {
    let mut cmd = line.command();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if cfg!(unix) {
        cmd.current_dir("/");
    }
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;

    // A child that never reads its input must not stall us: write from a thread, which ends
    // when the input is written or the child is gone (a broken pipe).
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = child.stdout.take().map(read_in_thread);
    let stderr = child.stderr.take().map(read_in_thread);

    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let now = Instant::now();
                if now >= deadline.at {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunError::TimedOut {
                        timeout: deadline.timeout,
                    });
                }
                thread::sleep(pause.min(deadline.at - now));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Wait(e));
            }
        }
    };
    // The pipes close when the child exits, unless something it started holds them open: wait
    // for the readers a little past the deadline at most, and keep what they read.
    let grace = deadline.at.max(Instant::now()) + Duration::from_millis(200);
    Ok(Finished {
        status,
        stdout: stdout.map(|rx| collect(rx, grace)).unwrap_or_default(),
        stderr: stderr.map(|rx| collect(rx, grace)).unwrap_or_default(),
    })
}

fn read_in_thread<R: Read + Send + 'static>(pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut pipe = pipe;
        let mut kept = Vec::new();
        let _ = (&mut pipe).take(OUTPUT_LIMIT).read_to_end(&mut kept);
        let _ = io::copy(&mut pipe, &mut io::sink());
        let _ = tx.send(kept);
    });
    rx
}

fn collect(rx: mpsc::Receiver<Vec<u8>>, until: Instant) -> Vec<u8> {
    rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        .unwrap_or_default()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandLine {
        CommandLine::new("/bin/sh").arg("-c").arg(script)
    }

    #[test]
    fn input_in_output_out() {
        let done = run(
            &sh("cat; echo err >&2; exit 3"),
            b"hello",
            Deadline::after(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(done.stdout, b"hello");
        assert_eq!(done.stderr_text(), "err");
        assert_eq!(done.status.code(), Some(3));
    }

    #[test]
    fn the_environment_is_only_what_was_given() {
        let line = sh("env").env("PATH", "/usr/bin:/bin").env("A", "b");
        let done = run(&line, b"", Deadline::after(Duration::from_secs(10))).unwrap();
        let mut vars: Vec<String> = String::from_utf8(done.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            // sh sets these itself.
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        vars.sort();
        assert_eq!(vars, ["A=b", "PATH=/usr/bin:/bin"]);
    }

    #[test]
    fn a_child_past_the_deadline_is_killed() {
        let started = Instant::now();
        let err = run(
            &sh("exec sleep 30"),
            b"",
            Deadline::after(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let line = sh("exec sleep 30");
        assert_eq!(
            err.reason(&line),
            "/bin/sh -c exec sleep 30 did not finish within 300 ms and was killed"
        );
    }

    #[test]
    fn output_is_bounded_and_a_child_that_ignores_its_input_is_fine() {
        // 1 MiB of output, 1 MiB of input it never reads.
        let done = run(
            &sh("head -c 1048576 /dev/zero"),
            &vec![b'x'; 1 << 20],
            Deadline::after(Duration::from_secs(10)),
        )
        .unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout.len() as u64, OUTPUT_LIMIT);
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let line = CommandLine::new("/nonexistent/tool");
        let err = run(&line, b"", Deadline::after(Duration::from_secs(1))).unwrap_err();
        assert!(
            err.reason(&line)
                .starts_with("could not start /nonexistent/tool: "),
            "{err:?}"
        );
    }
}
