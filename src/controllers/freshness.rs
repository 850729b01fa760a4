//! A reconcile never acts on a cache older than its own last write.
//!
//! Every write of a dbops object (its metadata or its status) returns the
//! object's new `resourceVersion`; the reconcile records it here. A later
//! reconcile of the same object whose cached copy is older is put off until
//! the watch delivers that write (it is requeued; the watch event usually wakes
//! it first). Without this, the reconcile that follows a status write reads a
//! cache without it, and sends the same vendor create a second time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

tokio::task_local! {
    /// The resourceVersion the current reconcile's last write returned.
    static LAST_WRITE: RefCell<Option<String>>;
}

/// How soon a reconcile put off for a lagging cache looks again.
pub const CATCH_UP_RETRY: Duration = Duration::from_millis(100);

/// After this long a recorded write no longer holds reconciles back, even if
/// the cache never shows it (the object was deleted, or its resourceVersions
/// cannot be compared): the cache is then the best there is.
const WRITE_MEMORY: Duration = Duration::from_secs(10);

/// Above this many remembered writes, expired ones are dropped on insert.
const PRUNE_ABOVE: usize = 256;

/// Runs one reconcile, returning its output and the resourceVersion of the
/// last write it made to its object (recorded with [`wrote`]).
pub async fn scope<F: Future>(reconcile: F) -> (F::Output, Option<String>) {
    LAST_WRITE
        .scope(RefCell::new(None), async {
            let out = reconcile.await;
            let last = LAST_WRITE.with(|w| w.borrow_mut().take());
            (out, last)
        })
        .await
}

/// Records that the current reconcile wrote its object, which now has
/// `resource_version`. Outside a reconcile scope it does nothing.
pub fn wrote(resource_version: Option<&str>) {
    if let Some(rv) = resource_version {
        let _ = LAST_WRITE.try_with(|w| *w.borrow_mut() = Some(rv.to_string()));
    }
}

/// Whether a cache holding `cached` has seen the write that returned
/// `written`: `None` when the two cannot be compared. Kubernetes documents
/// resourceVersions as opaque; every API server in use gives etcd revisions,
/// which compare as integers, and anything else is compared for equality only.
pub fn caught_up(cached: &str, written: &str) -> Option<bool> {
    if cached == written {
        return Some(true);
    }
    match (cached.parse::<u64>(), written.parse::<u64>()) {
        (Ok(cached), Ok(written)) => Some(cached >= written),
        _ => None,
    }
}

/// The last write of each object whose cache may not have caught up yet.
#[derive(Default)]
pub struct Writes {
    last: Mutex<HashMap<String, (String, Instant)>>,
}

impl Writes {
    /// Remembers that object `key` was written and now has `resource_version`.
    pub fn record(&self, key: &str, resource_version: String) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() > PRUNE_ABOVE {
            last.retain(|_, (_, at)| now.duration_since(*at) < WRITE_MEMORY);
        }
        last.insert(key.to_string(), (resource_version, now));
    }

    /// Whether the cached copy of object `key`, at `cached`, predates the
    /// last write this process made to it. Forgets the write once it does not.
    pub fn is_stale(&self, key: &str, cached: Option<&str>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let Some((written, at)) = last.get(key) else {
            return false;
        };
        let stale = match cached.map(|c| caught_up(c, written)) {
            Some(Some(caught_up)) => !caught_up,
            // Not comparable: wait for the watch, but not for ever.
            Some(None) | None => true,
        } && at.elapsed() < WRITE_MEMORY;
        if !stale {
            last.remove(key);
        }
        stale
    }

    /// How many writes are remembered (for tests and the memory budget).
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_compare_as_etcd_revisions_or_for_equality() {
        assert_eq!(caught_up("100", "99"), Some(true));
        assert_eq!(caught_up("100", "100"), Some(true));
        assert_eq!(caught_up("99", "100"), Some(false));
        // Not numeric: only equality is known.
        assert_eq!(caught_up("abc", "abc"), Some(true));
        assert_eq!(caught_up("abc", "abd"), None);
    }

    #[test]
    fn a_cache_older_than_the_last_write_is_stale_until_it_catches_up() {
        let writes = Writes::default();
        assert!(!writes.is_stale("uid-1", Some("5")), "never written");
        writes.record("uid-1", "10".to_string());
        assert!(writes.is_stale("uid-1", Some("9")));
        assert!(writes.is_stale("uid-1", None));
        assert!(
            !writes.is_stale("uid-2", Some("9")),
            "other objects are not held"
        );
        assert!(!writes.is_stale("uid-1", Some("10")));
        assert!(writes.is_empty(), "forgotten once caught up");
        assert!(!writes.is_stale("uid-1", Some("9")));
    }

    #[tokio::test]
    async fn a_reconcile_scope_returns_its_last_write() {
        let ((), last) = scope(async {
            wrote(Some("7"));
            wrote(None);
            wrote(Some("8"));
        })
        .await;
        assert_eq!(last.as_deref(), Some("8"));
        let ((), none) = scope(async {}).await;
        assert_eq!(none, None);
        // Outside a scope nothing happens (and nothing panics).
        wrote(Some("9"));
    }
}
