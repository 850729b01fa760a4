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
    /// What the current reconcile wrote.
    static LAST_WRITE: RefCell<Written>;
}

/// What one reconcile wrote: the resourceVersion its last write of its own
/// object returned. Secrets it writes go straight into `echoes`, before
/// their watch events can arrive.
#[derive(Default)]
struct Written {
    object: Option<String>,
    echoes: Option<std::sync::Arc<Writes>>,
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
/// last write it made to its own object (recorded with [`wrote`]). Secrets it
/// writes are recorded in `echoes` at once ([`wrote_secret`]).
pub async fn scope<F: Future>(
    echoes: std::sync::Arc<Writes>,
    reconcile: F,
) -> (F::Output, Option<String>) {
    let written = Written {
        object: None,
        echoes: Some(echoes),
    };
    LAST_WRITE
        .scope(RefCell::new(written), async {
            let out = reconcile.await;
            let last = LAST_WRITE.with(|w| w.borrow_mut().object.take());
            (out, last)
        })
        .await
}

/// Records that the current reconcile wrote its object, which now has
/// `resource_version`. Outside a reconcile scope it does nothing.
pub fn wrote(resource_version: Option<&str>) {
    if let Some(rv) = resource_version {
        let _ = LAST_WRITE.try_with(|w| w.borrow_mut().object = Some(rv.to_string()));
    }
}

/// The current reconcile's table of Secret echoes, if it has one.
fn echoes() -> Option<std::sync::Arc<Writes>> {
    LAST_WRITE
        .try_with(|w| w.borrow().echoes.clone())
        .ok()
        .flatten()
}

/// Says the current reconcile is about to write Secret `namespace/name`: its
/// watch event can arrive before the answer does, and is an echo too.
pub fn writing_secret(key: &str) {
    if let Some(echoes) = echoes() {
        echoes.record(key, String::new());
    }
}

/// Records that the current reconcile wrote Secret `namespace/name`, which
/// now has `resource_version` (`None`: the write failed, nothing to echo).
pub fn wrote_secret(key: &str, resource_version: Option<&str>) {
    if let Some(echoes) = echoes() {
        match resource_version {
            Some(rv) => echoes.record(key, rv.to_string()),
            None => echoes.forget(key),
        }
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

    /// Whether a watch event of `key` at `resource_version` is the echo of
    /// this process's own last write (forgotten once seen), or arrives while
    /// that write is still in flight (recorded with an empty version).
    pub fn is_echo(&self, key: &str, resource_version: Option<&str>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let Some((written, at)) = last.get(key) else {
            return false;
        };
        let in_flight = written.is_empty() && at.elapsed() < WRITE_MEMORY;
        let echo = in_flight || Some(written.as_str()) == resource_version;
        if echo && !in_flight {
            last.remove(key);
        }
        echo
    }

    /// Forgets `key` (a write that failed).
    pub fn forget(&self, key: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
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

    #[test]
    fn only_the_echo_of_the_last_write_is_an_echo() {
        let writes = Writes::default();
        writes.record("a/s", "5".to_string());
        assert!(
            !writes.is_echo("a/s", Some("4")),
            "someone else's older change"
        );
        assert!(!writes.is_echo("a/t", Some("5")), "another Secret");
        assert!(writes.is_echo("a/s", Some("5")));
        assert!(
            !writes.is_echo("a/s", Some("5")),
            "seen once, then forgotten"
        );
        assert!(!writes.is_echo("a/s", Some("6")), "a later change is news");
    }

    #[tokio::test]
    async fn a_reconcile_scope_returns_its_last_write() {
        let echoes = std::sync::Arc::new(Writes::default());
        let ((), last) = scope(echoes.clone(), async {
            wrote(Some("7"));
            wrote(None);
            writing_secret("a/s");
            assert!(echoes.is_echo("a/s", Some("3")), "in flight");
            wrote_secret("a/s", Some("3"));
            assert!(echoes.is_echo("a/s", Some("3")), "recorded at once");
            writing_secret("a/t");
            wrote_secret("a/t", None);
            assert!(
                !echoes.is_echo("a/t", Some("4")),
                "a failed write echoes nothing"
            );
            wrote(Some("8"));
        })
        .await;
        assert_eq!(last.as_deref(), Some("8"));
        let ((), none) = scope(echoes, async {}).await;
        assert_eq!(none, None);
        // Outside a scope nothing happens (and nothing panics).
        wrote(Some("9"));
    }
}
