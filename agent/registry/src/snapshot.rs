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
