//! What every emulated vendor API is built on, written once: the state
//! container (one lock, saved to and loaded from the state file), record
//! sequence numbers and creation order.
//!
//! A vendor module keeps only its routes, its wire models and its rules.

use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A vendor's model state behind one lock. Every request of the vendor holds
/// the lock for the whole of its change, so requests apply one at a time.
#[derive(Default)]
pub struct Store<S>(Mutex<S>);

impl<S> Store<S> {
    /// The state, locked. A handler that panicked while holding it leaves the
    /// state as it was at the panic; the emulator goes on serving it.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A part of the emulator's state that the state file holds.
pub trait Persistent: Send + Sync {
    /// The whole state, as the state file holds it.
    fn save(&self) -> Result<Value, serde_json::Error>;
    /// Replaces the state with one read from the state file.
    fn load(&self, saved: Value) -> Result<(), serde_json::Error>;
}

impl<S: Serialize + DeserializeOwned + Send> Persistent for Store<S> {
    fn save(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(&*self.lock())
    }

    fn load(&self, saved: Value) -> Result<(), serde_json::Error> {
        *self.lock() = serde_json::from_value(saved)?;
        Ok(())
    }
}

/// Numbers records in creation order (saved as a bare number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sequence(u64);

impl Sequence {
    /// The next number: 1 for the first record, never repeated.
    pub fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// `items` sorted by their sequence number, oldest first.
pub fn oldest_first<T>(items: impl IntoIterator<Item = T>, seq: impl Fn(&T) -> u64) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort_by_key(|item| seq(item));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Model {
        next_seq: Sequence,
        names: Vec<String>,
    }

    #[test]
    fn a_store_saves_and_loads_its_whole_state() {
        let store = Store::<Model>::default();
        {
            let mut model = store.lock();
            assert_eq!(model.next_seq.next(), 1);
            assert_eq!(model.next_seq.next(), 2);
            model.names.push("a".into());
        }
        let saved = store.save().unwrap();
        // The sequence is saved as a bare number, as the state file always held it.
        assert_eq!(saved, serde_json::json!({ "next_seq": 2, "names": ["a"] }));

        let other = Store::<Model>::default();
        other.load(saved).unwrap();
        assert_eq!(other.lock().names, ["a"]);
        assert_eq!(other.lock().next_seq.next(), 3);
        // A state of the wrong shape is refused and leaves the state alone.
        assert!(other.load(serde_json::json!({ "names": 7 })).is_err());
        assert_eq!(other.lock().names, ["a"]);
    }

    #[test]
    fn a_store_survives_a_panic_while_locked() {
        let store = std::sync::Arc::new(Store::<Model>::default());
        let held = store.clone();
        let _ = std::thread::spawn(move || {
            held.lock().names.push("before".into());
            let _guard = held.lock();
            panic!("handler bug");
        })
        .join();
        assert_eq!(store.lock().names, ["before"]);
    }

    #[test]
    fn oldest_first_orders_by_sequence() {
        let items = vec![(3, "c"), (1, "a"), (2, "b")];
        let sorted = oldest_first(items, |(seq, _)| *seq);
        assert_eq!(sorted, [(1, "a"), (2, "b"), (3, "c")]);
    }
}
