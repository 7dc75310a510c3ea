//! A registry several owners use in turn: a session and the store it builds for each pass, or
//! a test that inspects what a run wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{KeyPath, RegError, RegValue, Registry};

/// A cloneable handle on one registry; every operation locks it for its duration.
#[derive(Debug, Default)]
pub struct Shared<R>(Arc<Mutex<R>>);

impl<R> Clone for Shared<R> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<R> Shared<R> {
    pub fn new(registry: R) -> Shared<R> {
        Shared(Arc::new(Mutex::new(registry)))
    }

    /// The registry itself, e.g. to read a `MemRegistry`'s dump in a test.
    pub fn lock(&self) -> MutexGuard<'_, R> {
        // A panic while holding the lock leaves a registry whose every operation completed or
        // did not start (each is one call), so the data stays usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<R: Registry> Registry for Shared<R> {
    fn get(&self, key: &KeyPath, name: &str) -> Result<Option<RegValue>, RegError> {
        self.lock().get(key, name)
    }

    fn set(&mut self, key: &KeyPath, name: &str, value: &RegValue) -> Result<(), RegError> {
        self.lock().set(key, name, value)
    }

    fn delete_value(&mut self, key: &KeyPath, name: &str) -> Result<(), RegError> {
        self.lock().delete_value(key, name)
    }

    fn exists(&self, key: &KeyPath) -> Result<bool, RegError> {
        self.lock().exists(key)
    }

    fn subkeys(&self, key: &KeyPath) -> Result<Vec<String>, RegError> {
        self.lock().subkeys(key)
    }

    fn values(&self, key: &KeyPath) -> Result<BTreeMap<String, RegValue>, RegError> {
        self.lock().values(key)
    }

    fn delete_key_if_empty(&mut self, key: &KeyPath) -> Result<bool, RegError> {
        self.lock().delete_key_if_empty(key)
    }
}
