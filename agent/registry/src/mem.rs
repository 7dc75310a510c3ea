//! An in-memory registry with the real one's rules: case-insensitive names, writes that create
//! missing keys, and optional write protection below chosen keys (the ACL of
//! `HKCU\Software\Policies` on Windows, which Wine does not enforce).

use std::collections::BTreeMap;

use crate::{KeyPath, RegError, RegValue, Registry};

#[derive(Debug, Clone, Default)]
struct MemKey {
    /// By folded name: (name as first written, value).
    values: BTreeMap<String, (String, RegValue)>,
}

/// An in-memory [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct MemRegistry {
    keys: BTreeMap<KeyPath, MemKey>,
    read_only: Vec<KeyPath>,
    writes: usize,
}

impl MemRegistry {
    pub fn new() -> MemRegistry {
        MemRegistry::default()
    }

    /// Refuses every write at or below `key` with [`RegError::AccessDenied`].
    pub fn deny_writes_below(&mut self, key: KeyPath) {
        self.read_only.push(key);
    }

    /// How many writes (sets, deletes) succeeded so far.
    pub fn writes(&self) -> usize {
        self.writes
    }

    fn check_write(&self, key: &KeyPath) -> Result<(), RegError> {
        if self.read_only.iter().any(|ro| key.is_within(ro)) {
            return Err(RegError::AccessDenied {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    fn create(&mut self, key: &KeyPath) {
        let mut missing: Vec<KeyPath> = key
            .ancestors()
            .filter(|k| !self.keys.contains_key(k))
            .collect();
        missing.reverse();
        for k in missing {
            self.keys.insert(k, MemKey::default());
        }
    }

    /// All keys and values, for comparing whole states in tests.
    pub fn dump(&self) -> BTreeMap<String, BTreeMap<String, RegValue>> {
        self.keys
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.values
                        .values()
                        .map(|(n, v)| (n.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect()
    }
}

impl Registry for MemRegistry {
    fn get(&self, key: &KeyPath, name: &str) -> Result<Option<RegValue>, RegError> {
        Ok(self
            .keys
            .get(key)
            .and_then(|k| k.values.get(&name.to_ascii_lowercase()))
            .map(|(_, v)| v.clone()))
    }

    fn set(&mut self, key: &KeyPath, name: &str, value: &RegValue) -> Result<(), RegError> {
        self.check_write(key)?;
        self.create(key);
        let k = self.keys.get_mut(key).expect("just created");
        let folded = name.to_ascii_lowercase();
        match k.values.get_mut(&folded) {
            Some(slot) => slot.1 = value.clone(),
            None => {
                k.values.insert(folded, (name.to_owned(), value.clone()));
            }
        }
        self.writes += 1;
        Ok(())
    }

    fn delete_value(&mut self, key: &KeyPath, name: &str) -> Result<(), RegError> {
        self.check_write(key)?;
        if let Some(k) = self.keys.get_mut(key) {
            if k.values.remove(&name.to_ascii_lowercase()).is_some() {
                self.writes += 1;
            }
        }
        Ok(())
    }

    fn exists(&self, key: &KeyPath) -> Result<bool, RegError> {
        Ok(key.path.is_empty() || self.keys.contains_key(key))
    }

    fn subkeys(&self, key: &KeyPath) -> Result<Vec<String>, RegError> {
        let mut names: Vec<String> = self
            .keys
            .keys()
            .filter(|k| k.parent().as_ref() == Some(key))
            .map(|k| k.path.rsplit('\\').next().unwrap_or_default().to_owned())
            .collect();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        Ok(names)
    }

    fn values(&self, key: &KeyPath) -> Result<BTreeMap<String, RegValue>, RegError> {
        Ok(self
            .keys
            .get(key)
            .map(|k| k.values.values().cloned().collect())
            .unwrap_or_default())
    }

    fn delete_key_if_empty(&mut self, key: &KeyPath) -> Result<bool, RegError> {
        let Some(k) = self.keys.get(key) else {
            return Ok(false);
        };
        if !k.values.is_empty() || !self.subkeys(key)?.is_empty() {
            return Ok(false);
        }
        self.check_write(key)?;
        self.keys.remove(key);
        self.writes += 1;
        Ok(true)
    }
}
