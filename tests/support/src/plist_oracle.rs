//! Independent plist readers as test oracles: Python's `plistlib` (strict) and libplist's
//! `plistutil` (Debian `libplist-utils`, a C implementation unrelated to the `plist` crate and
//! to Python). Both turn a plist, binary or XML, into the same JSON-comparable form, which
//! [`expected`] also makes from a `plist::Value`, so a test compares what it wrote with what two
//! other programs read, value by value.
//!
//! The JSON form keeps every plist type apart:
//!
//! | plist | JSON |
//! | --- | --- |
//! | boolean | `true` / `false` |
//! | integer | number |
//! | real | `{"$real": "0x<IEEE 754 bits, 16 hex digits>"}` (exact; NaN, ±∞ and -0.0 included) |
//! | string | string |
//! | data | `{"$data": "<hex>"}` |
//! | date | `{"$date": "YYYY-MM-DDTHH:MM:SSZ"}` (UTC, whole seconds: XML dates have no more) |
//! | UID (binary only) | `{"$uid": n}` |
//! | array / dictionary | array / object (key order is not compared) |
//!
//! `plistutil` 2.2.0 is no validator: it exits 0 when it fails ("ERROR: Failed to convert input
//! file." on standard output), copies the bytes without parsing when the input already has the output's
//! format, turns corrupt binary into an empty `<plist/>` and bad scalars into 0 or the epoch. So
//! [`read_with_plistutil`] makes it convert to the *other* format (XML → binary, binary → XML),
//! treats anything it prints, a missing or empty output file or an empty plist as a failure, and
//! reads its output with `plistlib`; its coercions then show up as a value that differs.
//!
//! A missing `python3` or `plistutil` fails the test (install them with
//! `apt-get install python3 libplist-utils`); nothing is skipped.
//!
//! Use it as `postwarden_test_support::plist_oracle`.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value as Json};

/// Encodes a value in the oracle's JSON form (see the module documentation).
pub fn expected(value: &plist::Value) -> Json {
    match value {
        plist::Value::Boolean(b) => Json::Bool(*b),
        plist::Value::Integer(i) => match (i.as_signed(), i.as_unsigned()) {
            (Some(s), _) => json!(s),
            (None, Some(u)) => json!(u),
            (None, None) => unreachable!("a plist integer is i64 or u64"),
        },
        plist::Value::Real(r) => json!({ "$real": format!("0x{:016x}", r.to_bits()) }),
        plist::Value::String(s) => Json::String(s.clone()),
        plist::Value::Data(d) => json!({ "$data": hex(d) }),
        plist::Value::Date(d) => json!({ "$date": date_string(*d) }),
        plist::Value::Uid(u) => json!({ "$uid": u.get() }),
        plist::Value::Array(a) => Json::Array(a.iter().map(expected).collect()),
        plist::Value::Dictionary(d) => {
            Json::Object(d.iter().map(|(k, v)| (k.clone(), expected(v))).collect())
        }
        other => panic!("plist value {other:?} has no oracle form"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn date_string(date: plist::Date) -> String {
    let t: std::time::SystemTime = date.into();
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            // Floor: whole seconds before the epoch.
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    };
    let dt = time::OffsetDateTime::from_unix_timestamp(secs).expect("a plist date is in range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Reads a plist (binary or XML, detected from `bplist00`) with `plistlib`, strictly: the
/// format is given, not guessed. Returns its JSON form, or `plistlib`'s error.
pub fn try_read_with_plistlib(bytes: &[u8]) -> Result<Json, String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(if is_binary(bytes) {
        "input.plist.bin"
    } else {
        "input.plist.xml"
    });
    std::fs::write(&path, bytes).expect("writing the plist");
    plistlib(&path)
}

/// [`try_read_with_plistlib`], failing the test with `plistlib`'s error.
pub fn read_with_plistlib(bytes: &[u8]) -> Json {
    try_read_with_plistlib(bytes).unwrap_or_else(|e| panic!("plistlib rejected the plist:\n{e}"))
}

/// Reads a plist with `plistutil`: converts it to the other format (XML → binary, binary →
/// XML) and reads that with `plistlib`. Returns its JSON form, or why `plistutil` failed (what
/// it printed).
pub fn try_read_with_plistutil(bytes: &[u8]) -> Result<Json, String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (input, output, format) = if is_binary(bytes) {
        ("input.plist.bin", "converted.plist.xml", "xml")
    } else {
        ("input.plist.xml", "converted.plist.bin", "bin")
    };
    let input = dir.path().join(input);
    let output = dir.path().join(output);
    std::fs::write(&input, bytes).expect("writing the plist");
    let out = Command::new("plistutil")
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .arg("-f")
        .arg(format)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run plistutil ({e}): install it with `apt-get install libplist-utils` \
                 (scripts/install-test-deps.sh does)"
            )
        });
    // plistutil 2.2.0 prints "ERROR: Failed to convert input file." on standard output and
    // exits 0; with -o, any output at all means trouble.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        return Err(format!(
            "plistutil -f {format} failed ({}): {}",
            out.status,
            said.trim()
        ));
    }
    match std::fs::metadata(&output) {
        Ok(m) if m.len() > 0 => {}
        _ => {
            return Err(format!(
                "plistutil -f {format} wrote no output and said nothing"
            ))
        }
    }
    let converted = std::fs::read(&output).expect("reading plistutil's output");
    if format == "bin" && !is_binary(&converted) {
        return Err("plistutil -f bin did not write a binary plist".into());
    }
    plistlib(&output).map_err(|e| format!("plistutil's -f {format} output: {e}"))
}

/// [`try_read_with_plistutil`], failing the test with `plistutil`'s error.
pub fn read_with_plistutil(bytes: &[u8]) -> Json {
    try_read_with_plistutil(bytes)
        .unwrap_or_else(|e| panic!("plistutil could not read the plist:\n{e}"))
}

/// Both oracles read `bytes` as `value`, value by value; otherwise the test fails naming the
/// tool and the first path that differs.
pub fn assert_reads_back_as(bytes: &[u8], value: &plist::Value) {
    let want = expected(value);
    for (tool, got) in [
        ("plistlib", read_with_plistlib(bytes)),
        ("plistutil", read_with_plistutil(bytes)),
    ] {
        if let Some(diff) = first_difference(&want, &got, "") {
            panic!("{tool} read something else than was written: {diff}");
        }
    }
}

/// The first place where `want` and `got` differ, as `path: want … got …`.
pub fn first_difference(want: &Json, got: &Json, path: &str) -> Option<String> {
    match (want, got) {
        (Json::Object(w), Json::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}/{k}");
                match g.get(k) {
                    None => return Some(format!("{p}: missing (want {wv})")),
                    Some(gv) => {
                        if let Some(d) = first_difference(wv, gv, &p) {
                            return Some(d);
                        }
                    }
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{path}/{k}: unexpected key (value {})", g[k]))
        }
        (Json::Array(w), Json::Array(g)) => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                if let Some(d) = first_difference(wv, gv, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (w.len() != g.len()).then(|| format!("{path}: {} elements, want {}", g.len(), w.len()))
        }
        _ => (want != got).then(|| {
            format!(
                "{}: want {want}, got {got}",
                if path.is_empty() { "/" } else { path }
            )
        }),
    }
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(b"bplist00")
}

const PLISTLIB_TO_JSON: &str = r#"
import datetime, json, plistlib, struct, sys

def enc(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return {"$real": "0x%016x" % struct.unpack("<Q", struct.pack("<d", v))[0]}
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return {"$data": v.hex()}
    if isinstance(v, datetime.datetime):
        return {"$date": v.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if isinstance(v, plistlib.UID):
        return {"$uid": v.data}
    if isinstance(v, list):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        return {k: enc(x) for k, x in v.items()}
    raise TypeError("unexpected plist value %r" % (v,))

path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
fmt = plistlib.FMT_BINARY if data.startswith(b"bplist00") else plistlib.FMT_XML
value = plistlib.loads(data, fmt=fmt)
if value is None:
    sys.exit("no root object (an empty <plist/>)")
json.dump(enc(value), sys.stdout)
"#;

fn plistlib(path: &Path) -> Result<Json, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PLISTLIB_TO_JSON)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): the plistlib oracle needs Python 3 on PATH")
        });
    if !out.status.success() {
        return Err(format!(
            "plistlib failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("plistlib's JSON: {e}"))
}
