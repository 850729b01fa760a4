//! Kubernetes Events (`events.k8s.io/v1`), with repeats folded into a series.
//!
//! `kube::runtime::events::Recorder` keeps a full copy of every Event it
//! published for six minutes and scans them all on every publish: at 10,000
//! objects that is megabytes held and a quadratic cold start. This recorder
//! keeps, per recent Event, only a hash of what makes it the same Event, its
//! name and its count; the scan for expired entries runs at most once per
//! [`PRUNE_EVERY`], and the table is bounded ([`MAX_SERIES`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;

/// How long a published Event can grow into a series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often, at most, expired series are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// Most series remembered; past it the oldest half is forgotten (a repeat
/// then starts a new Event instead of counting on: nothing is lost).
pub const MAX_SERIES: usize = 4096;

/// One Event to publish about an object.
#[derive(Clone, Debug)]
pub struct Note<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: &'a str,
}

#[derive(Clone, Debug)]
struct Series {
    /// The Event object that counts this series.
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes Events as `controller` (and `instance`), folding repeats of the
/// same Event about the same object into the first one's series.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Table>,
}

struct Table {
    entries: HashMap<u64, Series>,
    pruned: Instant,
}

/// What makes two Events the same: the object, type, reason, action and note.
pub fn series_key(regarding: &ObjectReference, event: &Note<'_>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    regarding.uid.hash(&mut hasher);
    regarding.namespace.hash(&mut hasher);
    regarding.name.hash(&mut hasher);
    regarding.kind.hash(&mut hasher);
    matches!(event.type_, EventType::Warning).hash(&mut hasher);
    event.reason.hash(&mut hasher);
    event.action.hash(&mut hasher);
    event.note.hash(&mut hasher);
    hasher.finish()
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            series: Mutex::new(Table {
                entries: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// Series remembered now (for tests and the memory budget).
    pub fn remembered(&self) -> usize {
        self.table().entries.len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `event` about `regarding`: a new Event, or one more in the
    /// series of the same Event published within [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        event: &Note<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let key = series_key(regarding, event);
        let now = Instant::now();
        let repeat = self.repeat_of(key, now);
        if let Some(series) = repeat {
            let patch = serde_json::json!({
                "series": EventSeries {
                    count: series.count,
                    last_observed_time: MicroTime(Timestamp::now()),
                }
            });
            match events
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (Events expire): start over with a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let body = self.new_event(event, regarding, namespace);
        let name = body.metadata.name.clone().unwrap_or_default();
        events.create(&PostParams::default(), &body).await?;
        self.remember(key, name, now);
        Ok(())
    }

    /// The series `key` continues, with its count raised, if it is recent.
    fn repeat_of(&self, key: u64, now: Instant) -> Option<Series> {
        let mut table = self.table();
        if now.duration_since(table.pruned) >= PRUNE_EVERY {
            table
                .entries
                .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
            table.pruned = now;
        }
        let series = table.entries.get_mut(&key)?;
        if now.duration_since(series.last) >= SERIES_WINDOW {
            table.entries.remove(&key);
            return None;
        }
        series.count = series.count.saturating_add(1);
        series.last = now;
        // A series starts at 2: the first Event and this repeat.
        series.count = series.count.max(2);
        Some(series.clone())
    }

    fn remember(&self, key: u64, name: String, now: Instant) {
        let mut table = self.table();
        if table.entries.len() >= MAX_SERIES {
            // Forget the older half: bounded memory whatever the churn.
            let mut ages: Vec<Instant> = table.entries.values().map(|s| s.last).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            table.entries.retain(|_, s| s.last > cutoff);
        }
        table.entries.insert(
            key,
            Series {
                name,
                count: 1,
                last: now,
            },
        );
    }

    fn new_event(
        &self,
        event: &Note<'_>,
        regarding: &ObjectReference,
        namespace: &str,
    ) -> K8sEvent {
        let now = Timestamp::now();
        K8sEvent {
            action: Some(event.action.to_string()),
            reason: Some(event.reason.to_string()),
            note: Some(event.note.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("DatabaseProject".into()),
            namespace: Some("a".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn note(reason: &str, text: &str) -> Note<'static> {
        Note {
            type_: EventType::Warning,
            reason: Box::leak(reason.to_string().into_boxed_str()),
            action: "Reconcile",
            note: Box::leak(text.to_string().into_boxed_str()),
        }
    }

    #[test]
    fn the_same_event_about_the_same_object_is_one_series() {
        let a = series_key(&object("p"), &note("VendorUnavailable", "down"));
        assert_eq!(
            a,
            series_key(&object("p"), &note("VendorUnavailable", "down"))
        );
        assert_ne!(
            a,
            series_key(&object("q"), &note("VendorUnavailable", "down"))
        );
        assert_ne!(
            a,
            series_key(&object("p"), &note("VendorUnavailable", "up"))
        );
        assert_ne!(a, series_key(&object("p"), &note("Other", "down")));
    }

    #[tokio::test]
    async fn repeats_count_on_expired_ones_start_over_and_the_table_is_bounded() {
        // The client is never used by these table operations.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let recorder = Recorder::new(Client::try_from(config).unwrap(), "dbops", None);
        let now = Instant::now();
        assert!(recorder.repeat_of(1, now).is_none(), "first sight");
        recorder.remember(1, "p.1".into(), now);
        let series = recorder.repeat_of(1, now).unwrap();
        assert_eq!((series.name.as_str(), series.count), ("p.1", 2));
        assert_eq!(recorder.repeat_of(1, now).unwrap().count, 3);
        let later = now + SERIES_WINDOW;
        assert!(recorder.repeat_of(1, later).is_none(), "expired");
        assert_eq!(recorder.remembered(), 0);

        for key in 0..(MAX_SERIES as u64 + 10) {
            recorder.remember(key, format!("e{key}"), now + Duration::from_millis(key));
        }
        assert!(
            recorder.remembered() <= MAX_SERIES,
            "{}",
            recorder.remembered()
        );
        assert!(
            recorder.repeat_of(MAX_SERIES as u64 + 9, now).is_some(),
            "the newest are kept"
        );
    }
}
