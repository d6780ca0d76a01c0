//! [`Slot`]: a value read on every request and replaced whole on reload
//! (the API key, the TLS identity).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Holds the current `T`. Readers get an `Arc` and keep what they got even
/// if a reload swaps the value a moment later.
pub struct Slot<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Slot<T> {
    pub fn new(value: T) -> Slot<T> {
        Slot {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        // A writer only assigns an Arc, so a poisoned lock still holds a
        // whole value.
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the value for every later reader.
    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.current.write() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Slot(..)")
    }
}

/// Locks `mutex`, recovering the guard if a holder panicked: every value
/// behind our mutexes is left whole between statements, so it stays usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
