//! [`Watcher`]: which keys below a set of roots changed, as soon as they change.
//!
//! `RegNotifyChangeKeyValue` only says "something below this key changed", once per arming. The
//! watcher runs one dedicated thread that waits on an event per notification plus a stop event
//! (`WaitForMultipleObjects`). When a notification fires it re-arms it first and then re-reads
//! the subtree, so a change made while it reads is not lost (it fires the re-armed
//! notification), and diffs the subtree against the previous read
//! ([`SubtreeWatch`](crate::snapshot::SubtreeWatch)) to name the keys that changed.
//!
//! Each root has two notifications, each on its own event:
//!
//! - the *tree*: subtree, `REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET`, on the root, or
//!   on its nearest existing ancestor while the root does not exist (policy keys appear only
//!   when first written);
//! - the *guard*: `REG_NOTIFY_CHANGE_NAME` on the tree key's parent, without subtree. It fires
//!   when the tree key itself is deleted or re-created, which a notification on a deleted key
//!   does not reliably report (older Win32 documentation says it does not; Wine 8 does not),
//!   and which would otherwise leave the watcher armed on a dead key forever.
//!
//! Both use `REG_NOTIFY_THREAD_AGNOSTIC`, and a separate event each so that only the one that
//! fired is re-armed (re-arming a pending registration is not needed and its effect differs
//! between Windows and Wine). With the stop event, `WaitForMultipleObjects`' limit of 64 handles
//! allows [`MAX_ROOTS`] roots per watcher.

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use windows_registry::Key;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_INVALID_PARAMETER, ERROR_KEY_DELETED, HANDLE, WAIT_FAILED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Registry::{
    RegNotifyChangeKeyValue, RegQueryInfoKeyW, REG_NOTIFY_CHANGE_LAST_SET, REG_NOTIFY_CHANGE_NAME,
    REG_NOTIFY_THREAD_AGNOSTIC,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, ResetEvent, SetEvent, WaitForMultipleObjects, WaitForSingleObject, INFINITE,
};

use super::{open_read, win32_error, WinRegistry};
use crate::snapshot::SubtreeWatch;
use crate::{KeyPath, RegError};

/// The most roots one [`Watcher`] watches: two events per root and the stop event must fit in
/// `WaitForMultipleObjects`' 64 handles.
pub const MAX_ROOTS: usize = 31;

/// How many times one refresh retries when the key it wants to watch vanishes under it.
const ATTEMPTS: usize = 8;

/// How long a root whose refresh failed waits before it is retried, in milliseconds.
const RETRY_MS: u32 = 250;

const TREE_FILTER: u32 =
    REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET | REG_NOTIFY_THREAD_AGNOSTIC;
const GUARD_FILTER: u32 = REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_THREAD_AGNOSTIC;

/// Keys below `root` (the root included) that were created, deleted, or whose values changed.
///
/// If the subtree could not be read (access denied below the root, say), `keys` is just the
/// root: something may have changed, and reading it will show the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub root: KeyPath,
    pub keys: BTreeSet<KeyPath>,
}

/// Watches subtrees of the registry on a dedicated thread and sends a [`Change`] for every
/// notification that changed something. Dropping it stops and joins the thread; the receiver
/// then disconnects (it also disconnects if the thread can no longer wait, which is the only
/// way the watcher gives up).
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `roots`, which need not exist yet. Returns once every notification is
    /// armed and every subtree has been read, so any change made after this returns is
    /// reported. Fails when a subtree cannot be read or a notification cannot be armed, and
    /// for more than [`MAX_ROOTS`] roots.
    pub fn spawn(roots: Vec<KeyPath>) -> Result<(Watcher, Receiver<Change>), RegError> {
        if let Some(extra) = roots.get(MAX_ROOTS) {
            return Err(RegError::Other {
                key: extra.to_string(),
                code: i64::from(ERROR_INVALID_PARAMETER),
                message: format!("a watcher watches at most {MAX_ROOTS} roots"),
            });
        }
        let stop = Arc::new(Event::new()?);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("registry-watcher".into())
            .spawn(move || run(roots, &thread_stop, &tx, &ready_tx))
            .map_err(|e| RegError::Other {
                key: String::new(),
                code: e.raw_os_error().map_or(-1, i64::from),
                message: format!("cannot start the watcher thread: {e}"),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok((
                Watcher {
                    stop,
                    thread: Some(thread),
                },
                rx,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(RegError::Other {
                    key: String::new(),
                    code: -1,
                    message: "the watcher thread panicked while starting".into(),
                })
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An auto-reset event.
#[derive(Debug)]
struct Event(HANDLE);

// SAFETY: an event handle is a kernel object handle; every thread of the process may use it.
unsafe impl Send for Event {}
// SAFETY: as above; SetEvent, ResetEvent and the waits are thread-safe.
unsafe impl Sync for Event {}

impl Event {
    fn new() -> Result<Event, RegError> {
        // SAFETY: no security attributes, auto-reset, initially not signaled, unnamed.
        let handle = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
        if handle.is_null() {
            // SAFETY: no preconditions.
            let code = unsafe { GetLastError() };
            return Err(RegError::Other {
                key: String::new(),
                code: i64::from(code),
                message: format!(
                    "CreateEventW: {}",
                    std::io::Error::from_raw_os_error(code as i32)
                ),
            });
        }
        Ok(Event(handle))
    }

    fn set(&self) {
        // SAFETY: `self.0` is a valid event handle until drop.
        unsafe { SetEvent(self.0) };
    }

    fn reset(&self) {
        // SAFETY: as above.
        unsafe { ResetEvent(self.0) };
    }

    /// Whether the event is signaled; consumes the signal.
    fn take(&self) -> bool {
        // SAFETY: as above; a zero timeout only polls.
        unsafe { WaitForSingleObject(self.0, 0) == WAIT_OBJECT_0 }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A notification: a key handle armed to signal `event`.
#[derive(Debug)]
struct Registration {
    event: Event,
    key: Option<(KeyPath, Key)>,
    subtree: bool,
    filter: u32,
}

/// What [`Registration::point_at`] did.
#[derive(Debug, PartialEq, Eq)]
enum Pointed {
    /// Already on that key: the notification stays as it is.
    Same,
    /// Opened a new handle (or closed it, for `None`): the notification must be armed.
    Moved,
    /// The key vanished before it could be opened.
    Missing,
}

impl Registration {
    fn new(subtree: bool, filter: u32) -> Result<Registration, RegError> {
        Ok(Registration {
            event: Event::new()?,
            key: None,
            subtree,
            filter,
        })
    }

    /// Closes the handle. A pending notification fires when its handle closes, so the event is
    /// reset afterwards: the next arming starts clean.
    fn close(&mut self) {
        if self.key.take().is_some() {
            self.event.reset();
        }
    }

    fn point_at(&mut self, path: Option<&KeyPath>) -> Result<Pointed, RegError> {
        if self.key.as_ref().map(|(p, _)| p) == path {
            match &self.key {
                // Deleted (and maybe re-created) under our handle since it was opened: a
                // notification on it would never fire again, so open the key anew.
                Some((_, key)) if is_deleted(key) => {}
                _ => return Ok(Pointed::Same),
            }
        }
        self.close();
        let Some(path) = path else {
            return Ok(Pointed::Moved);
        };
        match open_read(path)? {
            Some(key) => {
                self.key = Some((path.clone(), key));
                Ok(Pointed::Moved)
            }
            None => Ok(Pointed::Missing),
        }
    }

    /// Arms the notification (asynchronous, one shot). Without a key there is nothing to arm.
    fn arm(&self) -> Result<(), (KeyPath, u32)> {
        let Some((path, key)) = &self.key else {
            return Ok(());
        };
        // SAFETY: `key` is an open handle with KEY_NOTIFY (KEY_READ) and the event is valid;
        // both outlive the registration (closing either ends it).
        let code = unsafe {
            RegNotifyChangeKeyValue(
                key.as_raw(),
                i32::from(self.subtree),
                self.filter,
                self.event.0,
                1,
            )
        };
        match code {
            0 => Ok(()),
            code => Err((path.clone(), code)),
        }
    }
}

/// Whether the key behind an open handle has been deleted (the handle stays valid, but every
/// operation on it fails with `ERROR_KEY_DELETED`).
fn is_deleted(key: &Key) -> bool {
    // SAFETY: `key` is an open key handle; every optional out pointer is null.
    let code = unsafe {
        RegQueryInfoKeyW(
            key.as_raw(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    code == ERROR_KEY_DELETED
}

/// One watched root and its two notifications.
#[derive(Debug)]
struct Slot {
    watch: SubtreeWatch,
    tree: Registration,
    guard: Registration,
    /// The last refresh failed (and a conservative change was sent); retried on a timer.
    failing: bool,
}

impl Slot {
    fn new(root: KeyPath) -> Result<Slot, RegError> {
        Ok(Slot {
            watch: SubtreeWatch::new(root),
            tree: Registration::new(true, TREE_FILTER)?,
            guard: Registration::new(false, GUARD_FILTER)?,
            failing: false,
        })
    }

    /// After a notification fired (or at the start, or to retry): points both notifications at
    /// the right keys and re-arms those that fired or moved, *then* re-reads the subtree.
    /// Returns the keys that changed since the previous read.
    fn refresh(
        &mut self,
        registry: &WinRegistry,
        mut rearm_tree: bool,
        mut rearm_guard: bool,
    ) -> Result<BTreeSet<KeyPath>, RegError> {
        let mut changed = BTreeSet::new();
        for _ in 0..ATTEMPTS {
            let target = self.watch.retarget(registry)?.clone();
            match self.tree.point_at(Some(&target))? {
                Pointed::Same => {}
                Pointed::Moved => rearm_tree = true,
                Pointed::Missing => continue,
            }
            match self.guard.point_at(target.parent().as_ref())? {
                Pointed::Same => {}
                Pointed::Moved => rearm_guard = true,
                Pointed::Missing => continue,
            }
            for (rearm, registration) in [
                (&mut rearm_tree, &mut self.tree),
                (&mut rearm_guard, &mut self.guard),
            ] {
                if !*rearm {
                    continue;
                }
                match registration.arm() {
                    Ok(()) => *rearm = false,
                    // Deleted since it was opened (or since the last arming): re-open it.
                    Err((_, ERROR_KEY_DELETED)) => registration.close(),
                    Err((path, code)) => return Err(win32_error(&path, code)),
                }
            }
            if rearm_tree || rearm_guard {
                continue;
            }
            changed.extend(self.watch.rescan(registry)?);
            if !self.watch.target_is_stale() {
                return Ok(changed);
            }
        }
        Err(RegError::Other {
            key: self.watch.root().to_string(),
            code: i64::from(ERROR_KEY_DELETED),
            message: format!(
                "the keys to watch kept vanishing; gave up after {ATTEMPTS} attempts for now"
            ),
        })
    }
}

fn run(
    roots: Vec<KeyPath>,
    stop: &Event,
    tx: &Sender<Change>,
    ready: &SyncSender<Result<(), RegError>>,
) {
    let registry = WinRegistry::new();
    let mut slots = Vec::with_capacity(roots.len());
    for root in roots {
        let started = Slot::new(root).and_then(|mut slot| {
            // The first read is the baseline, not a change.
            slot.refresh(&registry, true, true)?;
            Ok(slot)
        });
        match started {
            Ok(slot) => slots.push(slot),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    if ready.send(Ok(())).is_err() {
        return;
    }

    // Handle i + 1 is slot i / 2's tree (i even) or guard (i odd) event. The events stay the
    // same for the watcher's life; only the keys they are armed on change.
    let handles: Vec<HANDLE> = std::iter::once(stop.0)
        .chain(slots.iter().flat_map(|s| [s.tree.event.0, s.guard.event.0]))
        .collect();
    loop {
        let timeout = if slots.iter().any(|s| s.failing) {
            RETRY_MS
        } else {
            INFINITE
        };
        // SAFETY: every handle is a valid event for as long as `slots` and `stop` live.
        let woke =
            unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, timeout) };
        if woke == WAIT_OBJECT_0 || woke == WAIT_FAILED {
            return;
        }
        // The wait consumed the signal of the lowest signaled event; poll the others so that a
        // busy root does not starve the ones after it.
        let first = (woke != WAIT_TIMEOUT).then(|| (woke - WAIT_OBJECT_0 - 1) as usize);
        for (i, slot) in slots.iter_mut().enumerate() {
            let tree_fired = first == Some(2 * i) || slot.tree.event.take();
            let guard_fired = first == Some(2 * i + 1) || slot.guard.event.take();
            if !(tree_fired || guard_fired || slot.failing) {
                continue;
            }
            let retrying = slot.failing;
            if retrying {
                // Start over: fresh handles, both armed.
                slot.tree.close();
                slot.guard.close();
            }
            let keys =
                match slot.refresh(&registry, tree_fired || retrying, guard_fired || retrying) {
                    Ok(keys) => {
                        slot.failing = false;
                        keys
                    }
                    // Already reported; keep retrying quietly.
                    Err(_) if retrying => continue,
                    Err(_) => {
                        slot.failing = true;
                        BTreeSet::from([slot.watch.root().clone()])
                    }
                };
            if keys.is_empty() {
                continue;
            }
            let change = Change {
                root: slot.watch.root().clone(),
                keys,
            };
            if tx.send(change).is_err() {
                // Nobody listens any more.
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RegValue, Registry, Root};

    #[test]
    fn a_handle_on_a_deleted_and_recreated_key_is_seen_as_deleted() {
        let path = KeyPath::new(
            Root::CurrentUser,
            r"Software\PostwardenTest\unit_is_deleted",
        );
        let _ = windows_registry::CURRENT_USER.remove_tree(&path.path);
        let mut registry = WinRegistry::new();
        registry.set(&path, "v", &RegValue::Dword(1)).unwrap();
        let key = open_read(&path).unwrap().unwrap();
        assert!(!is_deleted(&key));
        windows_registry::CURRENT_USER
            .remove_tree(&path.path)
            .unwrap();
        assert!(is_deleted(&key));
        registry.set(&path, "v", &RegValue::Dword(2)).unwrap();
        assert!(
            is_deleted(&key),
            "the old handle still names the deleted key"
        );

        let mut registration = Registration::new(true, TREE_FILTER).unwrap();
        assert_eq!(registration.point_at(Some(&path)).unwrap(), Pointed::Moved);
        assert_eq!(registration.point_at(Some(&path)).unwrap(), Pointed::Same);
        windows_registry::CURRENT_USER
            .remove_tree(&path.path)
            .unwrap();
        registry.set(&path, "v", &RegValue::Dword(3)).unwrap();
        assert_eq!(
            registration.point_at(Some(&path)).unwrap(),
            Pointed::Moved,
            "re-opened on the new key"
        );
        let _ = windows_registry::CURRENT_USER.remove_tree(&path.path);
    }
}
