//! A fake POP3 server on `127.0.0.1:0` that records what a client sends.
//!
//! It serves one small message. If the first byte of a connection (or the first
//! byte after `STLS` was accepted) is `0x16` (a TLS handshake record) it records
//! `tls_client_hello` and keeps the connection open without answering: closing
//! it would make Thunderbird show a modal error dialog, which blocks scripts and
//! a clean quit.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

/// The one message in the maildrop (CRLF line ends, no line starts with '.').
pub const MESSAGE: &str = "From: Sender <sender@example.test>\r\n\
To: alice@example.test\r\n\
Subject: postwarden e2e test message\r\n\
Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <postwarden-e2e-1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hello from the Postwarden fake POP3 server.\r\n";

/// UIDL of the message.
pub const MESSAGE_UIDL: &str = "postwarden-e2e-uid-1";

/// What the server has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pop3Log {
    /// Every command line received, in order, without the line ending
    /// (across all connections).
    pub commands: Vec<String>,
    /// A TLS ClientHello (first byte 0x16) arrived at a point where a POP3
    /// command or a TLS handshake could start.
    pub tls_client_hello: bool,
    /// Number of accepted TCP connections.
    pub connections: usize,
    /// Whether the message was deleted (DELE followed by QUIT).
    pub message_deleted: bool,
}

impl Pop3Log {
    /// True if a command line equal to `cmd` (case-insensitive) was received.
    pub fn saw(&self, cmd: &str) -> bool {
        self.commands.iter().any(|c| c.eq_ignore_ascii_case(cmd))
    }

    /// Command verbs (first word, upper-cased) in order.
    pub fn verbs(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|c| {
                c.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Pop3Log>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pop3Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Pop3Log)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A running fake POP3 server; stops when dropped.
#[derive(Debug)]
pub struct FakePop3 {
    /// The port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl FakePop3 {
    /// Starts the server. With `offer_stls` the CAPA answer lists `STLS` and the
    /// `STLS` command is accepted.
    pub fn start(offer_stls: bool) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fake POP3 server")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let sh = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("fake-pop3-{port}"))
            .spawn(move || accept_loop(listener, sh, offer_stls))?;
        Ok(FakePop3 {
            port,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// A snapshot of everything seen so far.
    pub fn log(&self) -> Pop3Log {
        self.shared.lock().clone()
    }

    /// Every command line received so far.
    pub fn commands(&self) -> Vec<String> {
        self.shared.lock().commands.clone()
    }

    /// Whether a TLS ClientHello was received.
    pub fn saw_tls(&self) -> bool {
        self.shared.lock().tls_client_hello
    }

    /// Waits until `pred` holds for the log or `timeout` passes; returns
    /// whether it held.
    pub fn wait_for(&self, pred: impl Fn(&Pop3Log) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.lock();
        loop {
            if pred(&guard) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.shared.changed.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl Drop for FakePop3 {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, offer_stls: bool) {
    let mut workers = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.update(|l| l.connections += 1);
                let sh = Arc::clone(&shared);
                workers.push(thread::spawn(move || {
                    let _ = serve(stream, &sh, offer_stls);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Outcome of waiting for the next byte on a connection.
enum Next {
    Tls,
    Data,
    Closed,
}

fn peek_next(reader: &mut BufReader<TcpStream>, shared: &Shared) -> Next {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Next::Closed;
        }
        match reader.fill_buf() {
            Ok([]) => return Next::Closed,
            Ok(buf) if buf[0] == 0x16 => return Next::Tls,
            Ok(_) => return Next::Data,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Closed,
        }
    }
}

/// Holds a connection that started a TLS handshake open (reading and
/// discarding) until the peer closes it or the server stops.
fn hold_tls(reader: &mut BufReader<TcpStream>, shared: &Shared) {
    shared.update(|l| l.tls_client_hello = true);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match reader.fill_buf() {
            Ok([]) => return,
            Ok(buf) => {
                let n = buf.len();
                reader.consume(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared, offer_stls: bool) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let size = MESSAGE.len();
    let mut marked_deleted = false;
    let mut line = Vec::new();

    // A client that speaks TLS right away (socketType=3) never waits for a greeting,
    // but a greeting sent first is harmless: it would only be read as a bad record.
    // Check for an immediate ClientHello briefly before greeting.
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))?;
    match reader.fill_buf() {
        Ok([]) => return Ok(()),
        Ok(buf) if buf[0] == 0x16 => {
            reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)))?;
            hold_tls(&mut reader, shared);
            return Ok(());
        }
        _ => {}
    }
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    out.write_all(b"+OK Postwarden fake POP3 server ready\r\n")?;

    loop {
        match peek_next(&mut reader, shared) {
            Next::Closed => return Ok(()),
            Next::Tls => {
                hold_tls(&mut reader, shared);
                return Ok(());
            }
            Next::Data => {}
        }
        line.clear();
        // Read a full line, tolerating read timeouts in the middle of it.
        loop {
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(()),
                Ok(_) if line.ends_with(b"\n") => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    if shared.stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        shared.update(|l| l.commands.push(text.clone()));
        let mut parts = text.split_whitespace();
        let verb = parts.next().unwrap_or_default().to_ascii_uppercase();
        let arg = parts.next();
        let present = !marked_deleted && !shared.lock().message_deleted;
        let is_msg_1 = arg == Some("1");
        let reply: String = match verb.as_str() {
            "CAPA" => {
                let mut r = String::from("+OK Capability list follows\r\nUSER\r\nUIDL\r\nTOP\r\n");
                if offer_stls {
                    r.push_str("STLS\r\n");
                }
                r.push_str(".\r\n");
                r
            }
            "STLS" if offer_stls => {
                out.write_all(b"+OK Begin TLS negotiation\r\n")?;
                match peek_next(&mut reader, shared) {
                    Next::Tls => hold_tls(&mut reader, shared),
                    Next::Data | Next::Closed => {}
                }
                return Ok(());
            }
            "USER" => "+OK send PASS\r\n".into(),
            "PASS" => "+OK maildrop locked and ready\r\n".into(),
            "STAT" if present => format!("+OK 1 {size}\r\n"),
            "STAT" => "+OK 0 0\r\n".into(),
            "LIST" if arg.is_none() && present => format!("+OK 1 messages\r\n1 {size}\r\n.\r\n"),
            "LIST" if arg.is_none() => "+OK 0 messages\r\n.\r\n".into(),
            "LIST" if present && is_msg_1 => format!("+OK 1 {size}\r\n"),
            "UIDL" if arg.is_none() && present => format!("+OK\r\n1 {MESSAGE_UIDL}\r\n.\r\n"),
            "UIDL" if arg.is_none() => "+OK\r\n.\r\n".into(),
            "UIDL" if present && is_msg_1 => format!("+OK 1 {MESSAGE_UIDL}\r\n"),
            "RETR" | "TOP" if present && is_msg_1 => {
                format!("+OK {size} octets\r\n{MESSAGE}.\r\n")
            }
            "DELE" if present && is_msg_1 => {
                marked_deleted = true;
                "+OK message 1 deleted\r\n".into()
            }
            "RSET" => {
                marked_deleted = false;
                "+OK\r\n".into()
            }
            "NOOP" => "+OK\r\n".into(),
            "QUIT" => {
                if marked_deleted {
                    shared.update(|l| l.message_deleted = true);
                }
                out.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" => "-ERR no such message\r\n".into(),
            _ => "-ERR unknown command\r\n".into(),
        };
        out.write_all(reply.as_bytes())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_reply(r: &mut BufReader<TcpStream>, multiline: bool) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            all.push_str(&l);
            if !multiline || l == ".\r\n" || l.starts_with("-ERR") {
                return all;
            }
        }
    }

    #[test]
    fn serves_and_deletes_the_message() {
        let srv = FakePop3::start(false).unwrap();
        let s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        assert!(read_reply(&mut r, false).starts_with("+OK"));
        let mut cmd = |c: &str, multi: bool| {
            w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
            read_reply(&mut r, multi)
        };
        let capa = cmd("CAPA", true);
        assert!(capa.contains("UIDL") && !capa.contains("STLS"));
        assert!(cmd("USER alice", false).starts_with("+OK"));
        assert!(cmd("PASS pw", false).starts_with("+OK"));
        assert_eq!(cmd("STAT", false), format!("+OK 1 {}\r\n", MESSAGE.len()));
        assert!(cmd("UIDL", true).contains(MESSAGE_UIDL));
        assert!(cmd("RETR 1", true).contains("Subject: postwarden e2e"));
        assert!(cmd("DELE 1", false).starts_with("+OK"));
        assert!(cmd("QUIT", false).starts_with("+OK"));
        assert!(srv.wait_for(|l| l.message_deleted, Duration::from_secs(5)));
        let log = srv.log();
        assert_eq!(
            log.verbs(),
            ["CAPA", "USER", "PASS", "STAT", "UIDL", "RETR", "DELE", "QUIT"]
        );
        assert!(log.saw("dele 1"));
        assert!(!log.tls_client_hello);
    }

    #[test]
    fn records_a_client_hello_after_stls_and_keeps_the_connection_open() {
        let srv = FakePop3::start(true).unwrap();
        let s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        read_reply(&mut r, false);
        w.write_all(b"CAPA\r\n").unwrap();
        assert!(read_reply(&mut r, true).contains("STLS"));
        w.write_all(b"STLS\r\n").unwrap();
        assert!(read_reply(&mut r, false).starts_with("+OK Begin TLS"));
        w.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05]).unwrap();
        assert!(srv.wait_for(|l| l.tls_client_hello, Duration::from_secs(5)));
        // Still open: a read times out instead of returning EOF.
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut b = [0u8; 1];
        let e = r.read(&mut b).unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        assert_eq!(srv.commands(), ["CAPA", "STLS"]);
    }

    #[test]
    fn records_an_immediate_client_hello() {
        let srv = FakePop3::start(false).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        assert!(srv.wait_for(|l| l.tls_client_hello, Duration::from_secs(5)));
        assert!(srv.saw_tls());
        assert!(srv.commands().is_empty());
    }
}
