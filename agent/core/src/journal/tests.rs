use postwarden_registry::{MemRegistry, Root};
use postwarden_test_support::tree::{snapshot, Tree};

use super::*;

/// A home with one file to change, and its state folder (three folders deep, none existing).
struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    state: PathBuf,
    prefs: PathBuf,
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let home = root.join("home");
    fs::create_dir_all(home.join("profile")).unwrap();
    let prefs = home.join("profile/prefs.js");
    fs::write(&prefs, b"original \xc3\xbc\r\n").unwrap();
    Home {
        state: home.join(".local/state/postwarden"),
        _dir: dir,
        root,
        home,
        prefs,
    }
}

impl Home {
    fn open(&self) -> Journal {
        Journal::open_for_write(&self.state, &self.home).unwrap()
    }

    fn tree(&self) -> Tree {
        snapshot(&self.root)
    }
}

#[test]
fn restore_puts_back_originals_and_removes_what_was_created() {
    let h = home();
    let before = h.tree();
    let created = h.home.join("etc/thunderbird/policies/policies.json");

    let mut j = h.open();
    j.record_files(&[&h.prefs, &created]).unwrap();
    fs::write(&h.prefs, b"changed").unwrap();
    fs::write(&created, b"{}").unwrap();
    j.record_files(&[&h.prefs]).unwrap(); // a second record keeps the first backup
    fs::write(&h.prefs, b"changed again").unwrap();
    drop(j);

    let done = h.open().restore(None).unwrap();
    assert!(done.contains(&Restored::PutBack(h.prefs.clone())));
    assert!(done.contains(&Restored::Removed(created)));
    before.assert_same(&h.tree(), "restore is exact");
}

#[test]
fn a_pass_commits_its_records_once_and_creates_the_state_folder_whole() {
    let h = home();
    let other = h.home.join("profile/user.js");
    let mut j = h.open();
    assert!(!h.state.exists());
    j.record_files(&[&h.prefs, &other]).unwrap();
    let file = read_file(&h.state).unwrap().unwrap();
    assert_eq!(file.entries.len(), 2, "{:?}", file.entries);
    assert_eq!(
        file.own_dirs,
        vec![
            h.home.join(".local"),
            h.home.join(".local/state"),
            h.state.clone()
        ],
        "the journal knows every folder it created, from its first commit"
    );
    assert!(h.state.join(LOCK_FILE).is_file());
    let strays: Vec<_> = fs::read_dir(&h.home)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".postwarden"))
        .collect();
    assert!(
        strays.is_empty(),
        "the staging folder was renamed into place"
    );
}

#[cfg(unix)]
#[test]
fn state_folders_and_backups_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let h = home();
    fs::set_permissions(&h.prefs, fs::Permissions::from_mode(0o644)).unwrap();
    let mut j = h.open();
    j.record_files(&[&h.prefs]).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&h.home.join(".local")), 0o700);
    assert_eq!(mode(&h.state), 0o700);
    let backup = fs::read_dir(h.state.join(BACKUPS))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&backup), 0o600);
    assert_eq!(mode(&h.state.join(FILE)), 0o600);
}

#[test]
fn a_second_writer_waits_for_the_lock() {
    let h = home();
    let mut j = h.open();
    j.record_files(&[&h.prefs]).unwrap();
    let err = StateLock::acquire(&h.state, std::time::Duration::from_millis(20)).unwrap_err();
    assert!(matches!(err, JournalError::Busy { .. }), "{err}");
    drop(j);
    assert!(
        StateLock::acquire(&h.state, std::time::Duration::from_millis(20))
            .unwrap()
            .is_some()
    );
}

#[test]
fn leftovers_of_a_killed_pass_are_removed_under_the_lock() {
    let h = home();
    let mut j = h.open();
    j.record_files(&[&h.prefs]).unwrap();
    drop(j);
    // What kills leave: a temp file beside a recorded file and in the state folder, and a
    // backup written before its journal commit.
    let beside = h.home.join("profile/.prefs.js.postwarden-99-aaaaaa.tmp");
    let journal_tmp = h.state.join(".journal.json.postwarden-99-bbbbbb.tmp");
    let orphan = h.state.join(BACKUPS).join("0007-user.js");
    for p in [&beside, &journal_tmp, &orphan] {
        fs::write(p, b"x").unwrap();
    }
    let j = h.open();
    for p in [&beside, &journal_tmp, &orphan] {
        assert!(!p.exists(), "{} is left", p.display());
    }
    assert_eq!(j.file.entries.len(), 1, "the referenced backup stays");
    assert_eq!(fs::read_dir(h.state.join(BACKUPS)).unwrap().count(), 1);
}

#[test]
fn a_dead_runs_staging_folder_is_removed_a_live_ones_kept() {
    let h = home();
    let dead = h.home.join(".postwarden-new-99999");
    fs::create_dir_all(dead.join("state/postwarden/backups")).unwrap();
    fs::write(dead.join("state/postwarden").join(LOCK_FILE), b"").unwrap();
    let live = h.home.join(".postwarden-new-88888");
    fs::create_dir_all(live.join("state/postwarden")).unwrap();
    let held = StateLock::create_in(&live.join("state/postwarden")).unwrap();

    let _j = h.open();
    assert!(!dead.exists(), "a staging folder nobody holds is removed");
    assert!(
        live.exists(),
        "one whose lock is held is another run's, in progress"
    );
    drop(held);
}

#[test]
fn a_restore_killed_after_retiring_the_folder_is_finished_by_the_next_run() {
    let h = home();
    let before = h.tree();
    let mut j = h.open();
    j.record_files(&[&h.prefs]).unwrap();
    fs::write(&h.prefs, b"changed").unwrap();
    drop(j);
    // Do restore's work up to its commit point by hand: files back, folder renamed aside.
    fs::write(&h.prefs, b"original \xc3\xbc\r\n").unwrap();
    let trash = h.home.join(".postwarden-trash-99-0");
    fs::rename(&h.state, &trash).unwrap();

    let again = h.open();
    assert!(!trash.exists());
    assert!(again.restore(None).unwrap().is_empty());
    before.assert_same(&h.tree(), "the killed restore was finished exactly");
}

#[test]
fn restore_is_idempotent_when_run_again_part_way() {
    let h = home();
    let before = h.tree();
    let created = h.home.join("new/dir/file");
    let mut j = h.open();
    j.record_files(&[&h.prefs, &created]).unwrap();
    fs::write(&h.prefs, b"changed").unwrap();
    fs::write(&created, b"new").unwrap();
    drop(j);
    // A restore that died after undoing the newest entries only.
    fs::remove_file(&created).unwrap();
    fs::remove_dir(h.home.join("new/dir")).unwrap();
    let done = h.open().restore(None).unwrap();
    assert!(done.contains(&Restored::PutBack(h.prefs.clone())));
    before.assert_same(&h.tree(), "exact after resuming");
}

#[test]
fn a_state_folder_that_existed_is_kept_with_only_the_lock_added() {
    let h = home();
    fs::create_dir_all(&h.state).unwrap();
    let mut j = h.open();
    j.record_files(&[&h.prefs]).unwrap();
    assert!(read_file(&h.state).unwrap().unwrap().own_dirs.is_empty());
    drop(j);
    h.open().restore(None).unwrap();
    let left: Vec<_> = fs::read_dir(&h.state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from(LOCK_FILE)]);
}

#[test]
fn registry_changes_are_put_back_and_created_keys_removed() {
    let h = home();
    let mut reg = MemRegistry::new();
    let existing = KeyPath::new(Root::CurrentUser, r"Software\Microsoft\Office\16.0\Outlook");
    reg.set(&existing, "Kept", &RegValue::Binary(vec![b'a', 0, 0, 0]))
        .unwrap();
    let before = reg.dump();

    let mut j = h.open();
    let policy = KeyPath::new(
        Root::CurrentUser,
        r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup",
    );
    j.record_registry_values(
        &reg,
        &[
            (policy.clone(), "modifyaccounts".into()),
            (existing.clone(), "Kept".into()),
        ],
    )
    .unwrap();
    reg.set(&policy, "modifyaccounts", &RegValue::Dword(1))
        .unwrap();
    reg.set(&existing, "Kept", &RegValue::Sz("changed".into()))
        .unwrap();
    j.record_registry_values(&reg, &[(existing.clone(), "kept".into())])
        .unwrap(); // names ignore case
    reg.delete_value(&existing, "Kept").unwrap();
    drop(j);

    let err = h.open().restore(None).unwrap_err();
    assert!(matches!(err, JournalError::NeedsRegistry { .. }), "{err}");
    let done = h.open().restore(Some(&mut reg)).unwrap();
    assert_eq!(reg.dump(), before);
    assert!(done.contains(&Restored::RemovedKey(
        r"HKEY_CURRENT_USER\Software\Policies".into()
    )));
    assert!(!h.state.exists());
}

#[test]
fn restore_without_journal_does_nothing() {
    let h = home();
    assert!(h.open().restore(None).unwrap().is_empty());
}

#[test]
fn a_corrupt_journal_is_an_error_naming_the_file() {
    let h = home();
    fs::create_dir_all(&h.state).unwrap();
    fs::write(h.state.join(FILE), b"{not json").unwrap();
    let err = Journal::open_for_write(&h.state, &h.home).unwrap_err();
    assert!(
        err.to_string()
            .contains("journal.json: not a valid Postwarden journal (line 1, column 2"),
        "{err}"
    );
}

#[test]
fn a_file_in_the_state_folder_does_not_record_the_folder_twice() {
    // The Thunderbird store keeps its lock-ownership table in the machine's state folder.
    let h = home();
    let table = h.state.join("thunderbird-locks.json");
    let mut j = h.open();
    j.record_files(&[&table]).unwrap();
    fs::write(&table, b"{}").unwrap();
    drop(j);
    let done = h.open().restore(None).unwrap();
    assert_eq!(
        done,
        vec![Restored::Removed(table)],
        "only the file; the folders go with the journal"
    );
    assert!(!h.home.join(".local").exists());
}
