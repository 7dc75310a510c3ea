//! The real registry and the watcher, on Windows or under Wine (`scripts/windows.sh test`).
//!
//! Every test works below its own key `HKCU\Software\PostwardenTest\<test name>`, removes what
//! an earlier run left there first, and removes the key when it ends, even when it fails.

#![cfg(windows)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use postwarden_registry::windows::{Change, Watcher, WinRegistry, MAX_ROOTS};
use postwarden_registry::{KeyPath, RegValue, Registry, Root};

/// How long a change may take to be reported by the watcher.
const PROMPT: Duration = Duration::from_secs(1);
/// For changes made by another process, whose start-up alone takes ~50-100 ms under Wine.
const PROMPT_PROCESS: Duration = Duration::from_secs(10);
/// How long we listen to conclude that nothing is reported.
const QUIET: Duration = Duration::from_millis(500);
/// How long we listen for the rest of a change that was reported in parts.
const SETTLE: Duration = Duration::from_millis(100);

/// `HKCU\Software\PostwardenTest\<name>`, empty at the start, removed on drop.
struct TestKey(KeyPath);

impl TestKey {
    fn new(name: &str) -> TestKey {
        let key = TestKey(KeyPath::new(
            Root::CurrentUser,
            format!(r"Software\PostwardenTest\{name}"),
        ));
        key.remove();
        key
    }

    fn join(&self, child: &str) -> KeyPath {
        self.0.join(child)
    }

    fn remove(&self) {
        let _ = windows_registry::CURRENT_USER.remove_tree(&self.0.path);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        self.remove();
    }
}

fn reg() -> WinRegistry {
    WinRegistry::new()
}

/// The value's type and bytes as the registry stores them, read without our code.
fn raw(key: &KeyPath, name: &str) -> (u32, Vec<u8>) {
    let value = windows_registry::CURRENT_USER
        .open(&key.path)
        .unwrap()
        .get_value(name)
        .unwrap();
    (u32::from(value.ty()), value.to_vec())
}

fn keys(list: &[&KeyPath]) -> BTreeSet<KeyPath> {
    list.iter().map(|k| (*k).clone()).collect()
}

/// The next change, within `within`.
fn next(rx: &Receiver<Change>, within: Duration, what: &str) -> Change {
    let start = Instant::now();
    match rx.recv_timeout(within) {
        Ok(change) => change,
        Err(e) => panic!(
            "no change reported {} ms after {what}: {e:?}",
            start.elapsed().as_millis()
        ),
    }
}

/// Waits until the changes reported for `root` have named exactly `expected`, within `within`.
///
/// One operation can be reported in several changes: creating a key and setting its value are
/// two registry operations (even inside one `Registry::set`), and the watcher may read between
/// them. So this collects changes until they cover `expected`, then listens a little longer:
/// any change still trickling in must also name only expected keys.
fn expect_keys(
    rx: &Receiver<Change>,
    root: &KeyPath,
    expected: &[&KeyPath],
    within: Duration,
    what: &str,
) {
    let expected = keys(expected);
    let deadline = Instant::now() + within;
    let mut seen = BTreeSet::new();
    while seen != expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let change = match rx.recv_timeout(left) {
            Ok(change) => change,
            Err(e) => panic!("after {what}: saw {seen:?} of {expected:?} in {within:?} ({e:?})"),
        };
        assert_eq!(&change.root, root, "after {what}");
        seen.extend(change.keys);
        assert!(
            seen.is_subset(&expected),
            "after {what}: {seen:?}, expected {expected:?}"
        );
    }
    while let Ok(change) = rx.recv_timeout(SETTLE) {
        assert_eq!(&change.root, root, "after {what}");
        assert!(
            change.keys.is_subset(&expected),
            "after {what}: late {change:?}"
        );
    }
}

/// Asserts that nothing is reported for a while.
fn quiet(rx: &Receiver<Change>, after: &str) {
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("expected no change after {after}, got {other:?}"),
    }
}

#[test]
fn every_value_type_round_trips_byte_exactly() {
    let t = TestKey::new("round_trip");
    let key = t.join(r"Ünïcødé\Sub");
    let values = [
        ("dword", RegValue::Dword(0xDEAD_BEEF)),
        ("qword", RegValue::Qword(0x0102_0304_0506_0708)),
        ("sz", RegValue::Sz("grüße ✓ Ωμέγα 𝄞 日本語".into())),
        ("empty sz", RegValue::Sz(String::new())),
        ("expand", RegValue::ExpandSz(r"%USERPROFILE%\Dätä".into())),
        (
            "multi",
            RegValue::MultiSz(vec![
                "contoso.com".into(),
                "fäbrikam.com".into(),
                "𝄞".into(),
            ]),
        ),
        ("empty multi", RegValue::MultiSz(Vec::new())),
        ("binary", RegValue::Binary((0..=255).collect())),
        ("empty binary", RegValue::Binary(Vec::new())),
        (
            "binary text",
            RegValue::binary_text("Jürgen <j@exämple.org>"),
        ),
        (
            "none",
            RegValue::Other {
                ty: 0,
                data: vec![1, 2, 3],
            },
        ),
        (
            "big endian dword",
            RegValue::Other {
                ty: 5,
                data: vec![0, 0, 0, 7],
            },
        ),
        ("", RegValue::Sz("the default value".into())),
        ("Ünïcødé näme ✓", RegValue::Dword(1)),
    ];
    let mut r = reg();
    for (name, value) in &values {
        r.set(&key, name, value).unwrap();
    }
    for (name, value) in &values {
        assert_eq!(r.get(&key, name).unwrap().as_ref(), Some(value), "{name:?}");
        assert_eq!(
            raw(&key, name),
            (value.type_code(), value.to_bytes()),
            "{name:?} as stored"
        );
    }
    let all = r.values(&key).unwrap();
    assert_eq!(all.len(), values.len());
    for (name, value) in &values {
        assert_eq!(all.get(*name), Some(value), "values() has {name:?}");
    }

    // Overwriting changes the type too, and names are case-insensitive.
    r.set(&key, "DWORD", &RegValue::Sz("now text".into()))
        .unwrap();
    assert_eq!(
        r.get(&key, "dword").unwrap(),
        Some(RegValue::Sz("now text".into()))
    );
}

#[test]
fn strings_stored_without_their_nul_are_kept_as_stored() {
    // RegSetValueExW takes any bytes for the string types, but adds a NUL "the caller forgot"
    // when the memory after the data happens to hold one; a lossless value must be written back
    // exactly as it was read.
    let t = TestKey::new("unterminated");
    let key = t.join("Sub");
    let cases: [(&str, u32, Vec<u8>); 5] = [
        ("sz", 1, vec![b'h', 0, b'i', 0]),
        ("odd sz", 1, vec![b'h', 0, 0]),
        ("expand", 2, vec![b'%', 0, b'X', 0]),
        ("multi", 7, vec![b'a', 0, 0, 0, b'b', 0]),
        ("empty sz", 1, Vec::new()),
    ];
    let mut r = reg();
    for (name, ty, data) in &cases {
        let value = RegValue::Other {
            ty: *ty,
            data: data.clone(),
        };
        r.set(&key, name, &value).unwrap();
        assert_eq!(&raw(&key, name), &(*ty, data.clone()), "{name} as stored");
        let read = r.get(&key, name).unwrap().unwrap();
        assert_eq!(
            (read.type_code(), read.to_bytes()),
            (*ty, data.clone()),
            "{name}"
        );
    }
}

#[test]
fn utf16_text_in_binary_values_reads_back_as_text() {
    let t = TestKey::new("binary_text");
    let key = t.join(r"Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001");
    let mut r = reg();
    let text = "Antwort an: Jürgen Groß <reply@exämple.org> ✓";
    r.set(&key, "Reply-To", &RegValue::binary_text(text))
        .unwrap();
    let read = r.get(&key, "reply-to").unwrap().unwrap();
    assert_eq!(read.type_code(), 3, "stays REG_BINARY");
    assert_eq!(read.as_text().as_deref(), Some(text));
}

#[test]
fn missing_keys_and_values_read_as_absent() {
    let t = TestKey::new("missing");
    let missing = t.join(r"Not\There");
    let mut r = reg();
    assert_eq!(r.get(&missing, "x").unwrap(), None);
    assert!(!r.exists(&missing).unwrap());
    assert!(r.subkeys(&missing).unwrap().is_empty());
    assert!(r.values(&missing).unwrap().is_empty());
    r.delete_value(&missing, "x").unwrap();
    assert!(!r.delete_key_if_empty(&missing).unwrap());
    assert!(!r.exists(&missing).unwrap(), "reading creates nothing");

    let key = t.join("Here");
    r.set(&key, "present", &RegValue::Dword(1)).unwrap();
    assert_eq!(r.get(&key, "absent").unwrap(), None);
    assert_eq!(r.get(&key, "").unwrap(), None, "no default value");
    r.delete_value(&key, "absent").unwrap();
    r.delete_value(&key, "PRESENT").unwrap();
    assert_eq!(r.get(&key, "present").unwrap(), None);
    assert!(r.exists(&KeyPath::new(Root::CurrentUser, "")).unwrap());
}

#[test]
fn subkeys_are_listed_sorted_ignoring_case() {
    let t = TestKey::new("subkeys");
    let mut r = reg();
    for name in ["beta", "Alpha", "gamma", "Ärger"] {
        r.set(&t.join(name), "v", &RegValue::Dword(1)).unwrap();
    }
    assert_eq!(
        r.subkeys(&t.0).unwrap(),
        vec!["Alpha", "beta", "gamma", "Ärger"]
    );
    assert!(r.exists(&t.join("ALPHA")).unwrap());
}

#[test]
fn delete_key_if_empty_keeps_keys_with_values_or_subkeys() {
    let t = TestKey::new("delete_if_empty");
    let parent = t.join("Parent");
    let child = parent.join("Child");
    let mut r = reg();
    r.set(&child, "v", &RegValue::Dword(1)).unwrap();

    assert!(!r.delete_key_if_empty(&child).unwrap(), "has a value");
    assert_eq!(r.get(&child, "v").unwrap(), Some(RegValue::Dword(1)));
    assert!(!r.delete_key_if_empty(&parent).unwrap(), "has a subkey");
    assert!(r.exists(&child).unwrap());

    r.delete_value(&child, "v").unwrap();
    assert!(
        !r.delete_key_if_empty(&parent).unwrap(),
        "still has a subkey"
    );
    assert!(r.delete_key_if_empty(&child).unwrap());
    assert!(!r.exists(&child).unwrap());
    assert!(r.delete_key_if_empty(&parent).unwrap());
    assert!(!r.exists(&parent).unwrap());
    assert!(!r.delete_key_if_empty(&parent).unwrap(), "already gone");
    assert!(!r
        .delete_key_if_empty(&KeyPath::new(Root::CurrentUser, ""))
        .unwrap());
}

#[test]
fn watcher_reports_a_value_set_by_another_thread() {
    let t = TestKey::new("watch_thread");
    let sub = t.join(r"Accounts\0001");
    reg().set(&sub, "before", &RegValue::Dword(0)).unwrap();
    let (_watcher, rx) = Watcher::spawn(vec![t.0.clone()]).unwrap();

    let writer_key = sub.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        reg()
            .set(&writer_key, "Leave on Server", &RegValue::Dword(1))
            .unwrap()
    })
    .join()
    .unwrap();
    let change = next(&rx, PROMPT, "a value set by a thread");
    assert!(started.elapsed() < PROMPT);
    assert_eq!(change.root, t.0);
    assert_eq!(change.keys, keys(&[&sub]));
}

#[test]
fn watcher_reports_a_change_made_by_another_process() {
    let t = TestKey::new("watch_process");
    reg().set(&t.0, "v", &RegValue::Dword(0)).unwrap();
    let (_watcher, rx) = Watcher::spawn(vec![t.0.clone()]).unwrap();

    let target = t.join("FromRegExe");
    // Under Wine, `reg` is Wine's reg.exe, a separate Windows process.
    let status = Command::new("reg")
        .args(["add", &target.to_string(), "/v", "Level", "/t", "REG_DWORD"])
        .args(["/d", "4", "/f"])
        .status()
        .expect("reg.exe runs");
    assert!(status.success(), "reg add: {status}");
    // reg.exe creates the key, then sets the value: one or two changes.
    expect_keys(&rx, &t.0, &[&target], PROMPT_PROCESS, "reg.exe add");
    assert_eq!(
        reg().get(&target, "level").unwrap(),
        Some(RegValue::Dword(4))
    );
}

#[test]
fn watcher_keeps_reporting_after_rearming() {
    let t = TestKey::new("watch_rearm");
    reg().set(&t.0, "v", &RegValue::Dword(0)).unwrap();
    let (_watcher, rx) = Watcher::spawn(vec![t.0.clone()]).unwrap();
    let mut r = reg();
    let a = t.join("A");
    let b = a.join("B");

    for i in 1..=5u32 {
        r.set(&a, "counter", &RegValue::Dword(i)).unwrap();
        let change = next(&rx, PROMPT, &format!("set number {i}"));
        assert_eq!(change.keys, keys(&[&a]), "set number {i}");
    }
    r.set(&b, "deep", &RegValue::Sz("x".into())).unwrap();
    expect_keys(&rx, &t.0, &[&b], PROMPT, "a new subkey");
    r.delete_value(&b, "deep").unwrap();
    assert_eq!(next(&rx, PROMPT, "a deleted value").keys, keys(&[&b]));
    assert!(r.delete_key_if_empty(&b).unwrap());
    assert_eq!(next(&rx, PROMPT, "a deleted subkey").keys, keys(&[&b]));
    r.set(&t.0, "v", &RegValue::Dword(1)).unwrap();
    assert_eq!(next(&rx, PROMPT, "a value of the root").keys, keys(&[&t.0]));
    quiet(&rx, "the last change");
}

#[test]
fn watcher_reports_a_root_that_does_not_exist_yet_once_created() {
    let t = TestKey::new("watch_later");
    reg().set(&t.0, "v", &RegValue::Dword(0)).unwrap();
    let root = t.join(r"Later\Deeper");
    let (_watcher, rx) = Watcher::spawn(vec![root.clone()]).unwrap();
    let mut r = reg();

    // The watcher arms on the nearest existing ancestor meanwhile; a change there is silent.
    r.set(&t.join("Beside"), "v", &RegValue::Dword(1)).unwrap();
    r.set(&t.join("Later"), "v", &RegValue::Dword(1)).unwrap();
    quiet(&rx, "changes beside the missing root");

    let sub = root.join("Sub");
    r.set(&sub, "v", &RegValue::Dword(1)).unwrap();
    expect_keys(&rx, &root, &[&root, &sub], PROMPT, "the root was created");

    // Now armed on the root itself.
    r.set(&root, "direct", &RegValue::Dword(2)).unwrap();
    assert_eq!(
        next(&rx, PROMPT, "a value of the root").keys,
        keys(&[&root])
    );

    // Deleted: reported, and re-creating it is reported again.
    windows_registry::CURRENT_USER
        .remove_tree(&t.join("Later").path)
        .unwrap();
    // RegDeleteTreeW deletes key by key: one or several changes.
    expect_keys(&rx, &root, &[&root, &sub], PROMPT, "the root was deleted");
    r.set(&root, "again", &RegValue::Dword(3)).unwrap();
    expect_keys(&rx, &root, &[&root], PROMPT, "the root was re-created");
    quiet(&rx, "the last change");
}

#[test]
fn watcher_reports_its_empty_root_deleted_and_recreated() {
    // A single RegDeleteKeyW of the watched key itself, with nothing below it to fire first.
    let t = TestKey::new("watch_delete_root");
    let root = t.join("Root");
    windows_registry::CURRENT_USER.create(&root.path).unwrap();
    let (_watcher, rx) = Watcher::spawn(vec![root.clone()]).unwrap();
    let mut r = reg();

    assert!(r.delete_key_if_empty(&root).unwrap());
    expect_keys(&rx, &root, &[&root], PROMPT, "the root was deleted");
    windows_registry::CURRENT_USER.create(&root.path).unwrap();
    expect_keys(&rx, &root, &[&root], PROMPT, "the root was re-created");
    r.set(&root, "v", &RegValue::Dword(1)).unwrap();
    expect_keys(
        &rx,
        &root,
        &[&root],
        PROMPT,
        "a value of the re-created root",
    );
}

#[test]
fn watcher_is_silent_about_unrelated_keys() {
    let t = TestKey::new("watch_unrelated");
    let watched = t.join("Watched");
    let other = t.join("Other");
    let mut r = reg();
    r.set(&watched, "v", &RegValue::Dword(0)).unwrap();
    let (_watcher, rx) = Watcher::spawn(vec![watched.clone()]).unwrap();

    r.set(&other, "v", &RegValue::Dword(1)).unwrap(); // a sibling key (the guard fires)
    r.set(&other.join("Deeper"), "v", &RegValue::Dword(1))
        .unwrap();
    r.set(&t.0, "parent value", &RegValue::Dword(1)).unwrap();
    r.set(&t.join("WatchedNot"), "v", &RegValue::Dword(1))
        .unwrap();
    r.set(&watched, "v", &RegValue::Dword(0)).unwrap(); // the same data again
    quiet(&rx, "unrelated changes");

    // Still alive: a related change right after is reported.
    r.set(&watched, "v", &RegValue::Dword(1)).unwrap();
    assert_eq!(
        next(&rx, PROMPT, "a related change").keys,
        keys(&[&watched])
    );
}

#[test]
fn one_watcher_names_the_root_that_changed() {
    let t = TestKey::new("watch_many");
    let roots: Vec<KeyPath> = (0..4).map(|i| t.join(&format!("Root{i}"))).collect();
    let (_watcher, rx) = Watcher::spawn(roots.clone()).unwrap();
    let mut r = reg();
    for root in roots.iter().rev() {
        r.set(root, "v", &RegValue::Dword(1)).unwrap();
        expect_keys(
            &rx,
            root,
            &[root],
            PROMPT,
            &format!("a change under {root}"),
        );
    }
}

#[test]
fn dropping_the_watcher_stops_it() {
    let t = TestKey::new("watch_drop");
    let (watcher, rx) = Watcher::spawn(vec![t.0.clone()]).unwrap();
    let started = Instant::now();
    drop(watcher);
    assert!(started.elapsed() < PROMPT, "drop joins the thread promptly");
    assert_eq!(rx.recv_timeout(PROMPT), Err(RecvTimeoutError::Disconnected));
    reg().set(&t.0, "v", &RegValue::Dword(1)).unwrap();
}

#[test]
fn too_many_roots_are_refused() {
    let roots: Vec<KeyPath> = (0..=MAX_ROOTS)
        .map(|i| {
            KeyPath::new(
                Root::CurrentUser,
                format!(r"Software\PostwardenTest\many\{i}"),
            )
        })
        .collect();
    assert!(Watcher::spawn(roots).is_err());
}
