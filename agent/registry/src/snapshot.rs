//! Subtree snapshots and their difference. `RegNotifyChangeKeyValue` says only that something
//! below a watched key changed; diffing a snapshot taken before with one taken after names the
//! keys that changed.

use std::collections::{BTreeMap, BTreeSet};

use crate::{KeyPath, RegError, RegValue, Registry};

/// Every key below a root (the root included) with its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub keys: BTreeMap<KeyPath, BTreeMap<String, RegValue>>,
}

impl Snapshot {
    /// Reads `root` and everything below it. A root that does not exist gives an empty snapshot.
    pub fn read(registry: &dyn Registry, root: &KeyPath) -> Result<Snapshot, RegError> {
        let mut snap = Snapshot::default();
        if !registry.exists(root)? {
            return Ok(snap);
        }
        let mut stack = vec![root.clone()];
        while let Some(key) = stack.pop() {
            let values = registry
                .values(&key)?
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect();
            for sub in registry.subkeys(&key)? {
                stack.push(key.join(&sub));
            }
            snap.keys.insert(key, values);
        }
        Ok(snap)
    }

    /// The keys that were added, removed, or whose values differ between `self` and `newer`.
    pub fn changed_keys(&self, newer: &Snapshot) -> BTreeSet<KeyPath> {
        let mut changed = BTreeSet::new();
        for (key, values) in &self.keys {
            if newer.keys.get(key) != Some(values) {
                changed.insert(key.clone());
            }
        }
        for key in newer.keys.keys() {
            if !self.keys.contains_key(key) {
                changed.insert(key.clone());
            }
        }
        changed
    }
}

/// The key to arm a change notification on for `root`: `root` itself if it exists, otherwise
/// its nearest existing ancestor (at worst the hive root, which always exists). A notification
/// on a key that does not exist cannot be armed, and policy keys often appear only when first
/// written.
pub fn watch_target(registry: &dyn Registry, root: &KeyPath) -> Result<KeyPath, RegError> {
    for key in root.ancestors() {
        if registry.exists(&key)? {
            return Ok(key);
        }
    }
    Ok(KeyPath::new(root.root, ""))
}

/// The platform-independent half of watching one subtree. After every notification, in this
/// order (re-arming before re-reading, so no change between the two is lost):
///
/// 1. [`SubtreeWatch::retarget`]: where the notification must be armed now;
/// 2. the caller (re-)arms its notification there;
/// 3. [`SubtreeWatch::rescan`]: the keys that changed since the previous rescan;
/// 4. if [`SubtreeWatch::target_is_stale`] (the root appeared or vanished between 1 and 3),
///    start again at 1.
#[derive(Debug, Clone)]
pub struct SubtreeWatch {
    root: KeyPath,
    target: Option<KeyPath>,
    snapshot: Snapshot,
}

impl SubtreeWatch {
    /// A watch of `root` with no target chosen yet and an empty snapshot: the first
    /// [`SubtreeWatch::rescan`] names every key that exists (callers usually ignore it).
    pub fn new(root: KeyPath) -> SubtreeWatch {
        SubtreeWatch {
            root,
            target: None,
            snapshot: Snapshot::default(),
        }
    }

    /// The watched root.
    pub fn root(&self) -> &KeyPath {
        &self.root
    }

    /// The key chosen by the last [`SubtreeWatch::retarget`].
    pub fn target(&self) -> Option<&KeyPath> {
        self.target.as_ref()
    }

    /// The subtree as the last [`SubtreeWatch::rescan`] read it.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Chooses the key to arm the notification on ([`watch_target`]) and returns it.
    pub fn retarget(&mut self, registry: &dyn Registry) -> Result<&KeyPath, RegError> {
        Ok(self.target.insert(watch_target(registry, &self.root)?))
    }

    /// Re-reads the subtree and returns the keys below the root (the root included) that were
    /// added, removed or whose values changed since the previous rescan. On error the previous
    /// snapshot is kept, so the next successful rescan still names every change.
    pub fn rescan(&mut self, registry: &dyn Registry) -> Result<BTreeSet<KeyPath>, RegError> {
        let newer = Snapshot::read(registry, &self.root)?;
        let changed = self.snapshot.changed_keys(&newer);
        self.snapshot = newer;
        Ok(changed)
    }

    /// Whether the target no longer fits the last snapshot: the root was created while an
    /// ancestor was watched, or it vanished while it was watched itself. Either way the
    /// notification is armed on the wrong key, so retarget, re-arm and rescan again.
    pub fn target_is_stale(&self) -> bool {
        let root_exists = self.snapshot.keys.contains_key(&self.root);
        match &self.target {
            None => true,
            Some(target) => (target == &self.root) != root_exists,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemRegistry, Root};

    fn hkcu(path: &str) -> KeyPath {
        KeyPath::new(Root::CurrentUser, path)
    }

    #[test]
    fn the_watch_target_is_the_nearest_existing_key() {
        let mut r = MemRegistry::new();
        let root = hkcu(r"Software\Policies\Microsoft\Office\16.0\Outlook");
        assert_eq!(
            watch_target(&r, &root).unwrap(),
            hkcu(""),
            "hive root at worst"
        );
        r.set(&hkcu(r"Software\Policies"), "x", &RegValue::Dword(1))
            .unwrap();
        assert_eq!(watch_target(&r, &root).unwrap(), hkcu(r"Software\Policies"));
        r.set(&root, "y", &RegValue::Dword(1)).unwrap();
        assert_eq!(watch_target(&r, &root).unwrap(), root);
        assert_eq!(watch_target(&r, &hkcu("")).unwrap(), hkcu(""));
    }

    #[test]
    fn a_root_that_appears_and_vanishes_moves_the_target_and_is_reported() {
        let mut r = MemRegistry::new();
        let base = hkcu(r"Software\Test");
        r.set(&base, "unrelated", &RegValue::Dword(1)).unwrap();
        let root = base.join(r"Later\Deeper");
        let mut w = SubtreeWatch::new(root.clone());
        assert!(w.target_is_stale(), "no target chosen yet");

        // Start: the root does not exist; watch the nearest ancestor.
        assert_eq!(w.retarget(&r).unwrap(), &base);
        assert!(w.rescan(&r).unwrap().is_empty());
        assert!(!w.target_is_stale());

        // A change beside the root (the ancestor's notification fires) is not a change.
        r.set(&base.join("Sibling"), "v", &RegValue::Dword(1))
            .unwrap();
        assert_eq!(w.retarget(&r).unwrap(), &base);
        assert!(w.rescan(&r).unwrap().is_empty());

        // The root appears: the target moves to it and the new keys are named.
        r.set(&root.join("Sub"), "v", &RegValue::Dword(1)).unwrap();
        assert_eq!(w.retarget(&r).unwrap(), &root);
        assert_eq!(
            w.rescan(&r).unwrap(),
            BTreeSet::from([root.clone(), root.join("Sub")])
        );
        assert!(!w.target_is_stale());

        // The root vanishes: back to the ancestor, and every key that was there is named.
        r.delete_value(&root.join("Sub"), "v").unwrap();
        assert!(r.delete_key_if_empty(&root.join("Sub")).unwrap());
        assert!(r.delete_key_if_empty(&root).unwrap());
        assert_eq!(w.retarget(&r).unwrap(), &base.join("Later"));
        assert_eq!(
            w.rescan(&r).unwrap(),
            BTreeSet::from([root.clone(), root.join("Sub")])
        );
        assert!(!w.target_is_stale());
    }

    #[test]
    fn a_root_created_between_retarget_and_rescan_makes_the_target_stale() {
        let mut r = MemRegistry::new();
        let root = hkcu(r"Software\Test\Root");
        let mut w = SubtreeWatch::new(root.clone());
        assert_eq!(w.retarget(&r).unwrap(), &hkcu(""));
        // Created after the target was chosen but before the subtree was read.
        r.set(&root, "v", &RegValue::Sz("x".into())).unwrap();
        assert_eq!(w.rescan(&r).unwrap(), BTreeSet::from([root.clone()]));
        assert!(
            w.target_is_stale(),
            "armed on the hive root, the root exists now"
        );
        assert_eq!(w.retarget(&r).unwrap(), &root);
        assert!(w.rescan(&r).unwrap().is_empty());
        assert!(!w.target_is_stale());

        // Deleted after the target was chosen but before the subtree was read.
        r.delete_value(&root, "v").unwrap();
        assert!(r.delete_key_if_empty(&root).unwrap());
        assert_eq!(w.rescan(&r).unwrap(), BTreeSet::from([root.clone()]));
        assert!(w.target_is_stale(), "armed on a key that is gone");
    }

    #[test]
    fn value_changes_name_only_their_key() {
        let mut r = MemRegistry::new();
        let root = hkcu(r"Software\Test");
        r.set(&root.join(r"A\B"), "v", &RegValue::Dword(1)).unwrap();
        r.set(&root.join("C"), "v", &RegValue::Dword(1)).unwrap();
        let mut w = SubtreeWatch::new(root.clone());
        w.retarget(&r).unwrap();
        assert_eq!(
            w.rescan(&r).unwrap().len(),
            4,
            "the first rescan names everything"
        );
        r.set(&root.join(r"A\B"), "V", &RegValue::Dword(2)).unwrap();
        r.set(&hkcu(r"Software\Elsewhere"), "v", &RegValue::Dword(2))
            .unwrap();
        assert_eq!(w.rescan(&r).unwrap(), BTreeSet::from([root.join(r"A\B")]));
        assert!(w.rescan(&r).unwrap().is_empty(), "nothing changed since");
    }
}
