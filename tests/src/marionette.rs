//! A minimal Marionette client over `std::net::TcpStream`.
//!
//! Wire format: every message is `<decimal byte length>:<json>`. After the TCP
//! connection is accepted the server sends a hello object such as
//! `{"applicationType":"gecko","marionetteProtocol":3}`. Commands are
//! `[0, id, "Command:Name", {params}]` and responses are
//! `[1, id, error_or_null, result]`.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

/// Largest message we accept from the server (guards against garbage lengths).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// An error the Marionette server reported for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarionetteError {
    /// The command that failed, e.g. `WebDriver:ExecuteScript`.
    pub command: String,
    /// WebDriver error code, e.g. `javascript error`.
    pub error: String,
    /// The server's message.
    pub message: String,
    /// The server's stack trace (JS stack for script errors).
    pub stacktrace: String,
}

impl fmt::Display for MarionetteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Marionette command {} failed: {}: {}",
            self.command, self.error, self.message
        )?;
        if !self.stacktrace.trim().is_empty() {
            write!(f, "\nstacktrace:\n{}", self.stacktrace.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for MarionetteError {}

/// Marionette execution context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Privileged chrome scope (`Services`, `Cc`, `Ci`, ...).
    Chrome,
    /// Web content scope.
    Content,
}

impl Context {
    fn as_str(self) -> &'static str {
        match self {
            Context::Chrome => "chrome",
            Context::Content => "content",
        }
    }
}

/// A connected Marionette client.
#[derive(Debug)]
pub struct Marionette {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
    hello: Value,
    read_timeout: Duration,
}

impl Marionette {
    /// Connects to `addr`, reads the server hello and checks the protocol level.
    ///
    /// `timeout` bounds the TCP connect and every later read (see
    /// [`Marionette::set_read_timeout`]).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to Marionette at {addr}"))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut client = Marionette {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            hello: Value::Null,
            read_timeout: timeout,
        };
        let hello = client
            .read_message()
            .with_context(|| format!("reading the Marionette hello from {addr}"))?;
        let level = hello
            .get("marionetteProtocol")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("unexpected Marionette hello from {addr}: {hello}"))?;
        if level < 3 {
            bail!("Marionette protocol level {level} is too old (need 3): {hello}");
        }
        client.hello = hello;
        Ok(client)
    }

    /// The hello object the server sent on connect.
    pub fn hello(&self) -> &Value {
        &self.hello
    }

    /// Sets how long to wait for any single response.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        self.read_timeout = timeout;
        Ok(())
    }

    /// Sends one command and waits for its response; returns the result value.
    ///
    /// Server-side failures come back as a [`MarionetteError`] (inside the
    /// `anyhow::Error`, so callers can `downcast_ref`).
    pub fn command(&mut self, name: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let body = serde_json::to_string(&json!([0, id, name, params]))?;
        let framed = format!("{}:{}", body.len(), body);
        self.writer
            .write_all(framed.as_bytes())
            .and_then(|()| self.writer.flush())
            .with_context(|| format!("sending Marionette command {name}"))?;
        loop {
            let msg = self.read_message().with_context(|| {
                format!(
                    "waiting for the response to Marionette command {name} (timeout {:?})",
                    self.read_timeout
                )
            })?;
            let arr = msg
                .as_array()
                .ok_or_else(|| anyhow!("malformed Marionette packet: {msg}"))?;
            if arr.len() != 4 || arr[0] != json!(1) {
                bail!("unexpected Marionette packet for {name}: {msg}");
            }
            if arr[1].as_u64() != Some(id) {
                // A late response to an earlier command that timed out: skip it.
                continue;
            }
            if !arr[2].is_null() {
                let err = &arr[2];
                let field = |k: &str| {
                    err.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let mut error = MarionetteError {
                    command: name.to_string(),
                    error: field("error"),
                    message: field("message"),
                    stacktrace: field("stacktrace"),
                };
                if error.error.is_empty() && error.message.is_empty() {
                    error.message = err.to_string();
                }
                return Err(error.into());
            }
            return Ok(arr[3].clone());
        }
    }

    /// `WebDriver:NewSession` with the given capabilities (`{}` is fine for
    /// Thunderbird). Returns the session result (`sessionId`, `capabilities`).
    pub fn new_session(&mut self, capabilities: Value) -> Result<Value> {
        self.command(
            "WebDriver:NewSession",
            json!({ "capabilities": capabilities }),
        )
    }

    /// `Marionette:SetContext`.
    pub fn set_context(&mut self, context: Context) -> Result<()> {
        self.command(
            "Marionette:SetContext",
            json!({ "value": context.as_str() }),
        )?;
        Ok(())
    }

    /// Sets the server-side script timeout (`WebDriver:SetTimeouts`).
    pub fn set_script_timeout(&mut self, timeout: Duration) -> Result<()> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.command("WebDriver:SetTimeouts", json!({ "script": ms }))?;
        Ok(())
    }

    /// `WebDriver:ExecuteScript`: `script` is a function body; `args` are
    /// available as `arguments`. A returned Promise is awaited by the server.
    /// Returns the (JSON-serialised) return value.
    pub fn execute_script(&mut self, script: &str, args: Vec<Value>) -> Result<Value> {
        let mut result = self.command(
            "WebDriver:ExecuteScript",
            json!({ "script": script, "args": args }),
        )?;
        Ok(match result.get_mut("value") {
            Some(v) => v.take(),
            None => result,
        })
    }

    /// `Marionette:Quit` with the given flags (e.g. `["eForceQuit"]`).
    pub fn quit(&mut self, flags: &[&str]) -> Result<Value> {
        self.command("Marionette:Quit", json!({ "flags": flags }))
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut len_buf = Vec::new();
        let n = self.reader.read_until(b':', &mut len_buf)?;
        if n == 0 {
            bail!("Marionette connection closed by the server");
        }
        if len_buf.last() != Some(&b':') {
            bail!("Marionette connection closed in the middle of a length prefix");
        }
        len_buf.pop();
        let len_str = std::str::from_utf8(&len_buf)
            .map_err(|_| anyhow!("non-ASCII Marionette length prefix {len_buf:?}"))?;
        let len: usize = len_str
            .trim()
            .parse()
            .map_err(|_| anyhow!("bad Marionette length prefix {len_str:?}"))?;
        if len > MAX_MESSAGE_BYTES {
            bail!("Marionette message of {len} bytes exceeds the limit");
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "invalid JSON in Marionette message: {}",
                String::from_utf8_lossy(&body)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn frame(v: &Value) -> Vec<u8> {
        let s = v.to_string();
        format!("{}:{}", s.len(), s).into_bytes()
    }

    fn read_frame(r: &mut BufReader<TcpStream>) -> Value {
        let mut len = Vec::new();
        r.read_until(b':', &mut len).unwrap();
        len.pop();
        let n: usize = std::str::from_utf8(&len).unwrap().parse().unwrap();
        let mut body = vec![0; n];
        r.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn speaks_the_wire_protocol_and_reports_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&frame(
                &json!({"applicationType": "gecko", "marionetteProtocol": 3}),
            ))
            .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            // 1: ExecuteScript -> answer a stale id first, then the real one (non-ASCII payload).
            let cmd = read_frame(&mut r);
            assert_eq!(cmd[2], "WebDriver:ExecuteScript");
            assert_eq!(cmd[3]["args"], json!([1, "x"]));
            let id = cmd[1].as_u64().unwrap();
            s.write_all(&frame(&json!([1, id + 100, null, {"value": "stale"}])))
                .unwrap();
            s.write_all(&frame(&json!([1, id, null, {"value": {"ü": 42}}])))
                .unwrap();
            // 2: an error.
            let cmd = read_frame(&mut r);
            let id = cmd[1].as_u64().unwrap();
            s.write_all(&frame(&json!([1, id, {"error": "javascript error", "message": "boom", "stacktrace": "@probe.js:1"}, null])))
                .unwrap();
        });
        let mut m = Marionette::connect(addr, Duration::from_secs(5)).unwrap();
        assert_eq!(m.hello()["marionetteProtocol"], 3);
        let v = m
            .execute_script("return 1", vec![json!(1), json!("x")])
            .unwrap();
        assert_eq!(v, json!({"ü": 42}));
        let err = m.execute_script("throw 1", vec![]).unwrap_err();
        let me = err.downcast_ref::<MarionetteError>().unwrap();
        assert_eq!(me.error, "javascript error");
        assert!(err.to_string().contains("boom"));
        assert!(err.to_string().contains("@probe.js:1"));
        server.join().unwrap();
        // The server hung up: the next command must fail, not hang.
        assert!(m.command("WebDriver:Status", json!({})).is_err());
    }
}
