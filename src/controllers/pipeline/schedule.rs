//! When a snapshot schedule runs, and which of its snapshots go (issue #26,
//! `DatabaseSnapshotSchedule`): the pure core. A schedule is a cron
//! expression (UTC, five fields) or an interval. After downtime a schedule
//! takes one catch-up run (the latest slot it missed), never a burst; runs
//! never overlap; retention keeps the newest snapshots within bounds and
//! never deletes the newest one that is Ready.
//!
//! Work in progress: the kind and its controller do not exist yet.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How often a schedule runs.
#[derive(Clone, Debug)]
pub enum Cadence {
    Cron(Box<croner::Cron>),
    Every(Duration),
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CadenceError {
    #[error("set exactly one of schedule and interval")]
    NotExactlyOne,
    #[error("schedule {0:?} is not a five-field cron expression")]
    BadCron(String),
    #[error("interval must be at least 1m")]
    TooShort,
}

/// The cadence of `schedule` (cron) or `interval` (pure).
pub fn cadence(
    schedule: Option<&str>,
    interval: Option<Duration>,
) -> Result<Cadence, CadenceError> {
    match (schedule, interval) {
        (Some(expression), None) => {
            let five_fields = expression.split_whitespace().count() == 5;
            let parsed = croner::Cron::new(expression).parse();
            match parsed {
                Ok(cron) if five_fields => Ok(Cadence::Cron(Box::new(cron))),
                _ => Err(CadenceError::BadCron(expression.to_string())),
            }
        }
        (None, Some(every)) if every >= Duration::from_secs(60) => Ok(Cadence::Every(every)),
        (None, Some(_)) => Err(CadenceError::TooShort),
        _ => Err(CadenceError::NotExactlyOne),
    }
}

fn to_chrono(t: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.as_second(), 0)
}

fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    Timestamp::from_second(t.timestamp()).ok()
}

/// The first slot strictly after `after` (pure).
pub fn next_slot(cadence: &Cadence, anchor: Timestamp, after: Timestamp) -> Option<Timestamp> {
    match cadence {
        Cadence::Cron(cron) => {
            let next = cron.find_next_occurrence(&to_chrono(after)?, false).ok()?;
            from_chrono(next)
        }
        Cadence::Every(every) => {
            let step = i64::try_from(every.as_secs()).ok()?.max(1);
            let since = after.as_second() - anchor.as_second();
            let k = if since < 0 { 0 } else { since / step + 1 };
            Timestamp::from_second(anchor.as_second() + k * step).ok()
        }
    }
}

/// Most slots looked at to find the latest missed one (a minutely cron
/// misses 43,200 in a month): past that, the latest is estimated from the
/// last ones seen, and the run is still one.
const MOST_SLOTS: usize = 100_000;

/// The run due at `now`, if any (pure): the latest slot in `(since, now]`,
/// where `since` is the last run or, before the first, the schedule's
/// creation (`anchor`, itself the first slot of an interval schedule). One
/// run however many slots were missed.
pub fn due(
    cadence: &Cadence,
    anchor: Timestamp,
    last_run: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    if let (Cadence::Every(_), None) = (cadence, last_run)
        && anchor <= now
    {
        // An interval schedule runs at once, then every interval; a slot
        // missed since still makes only one run.
        let latest = latest_slot(cadence, anchor, anchor, now);
        return Some(latest.unwrap_or(anchor));
    }
    let since = last_run.unwrap_or(anchor);
    latest_slot(cadence, anchor, since, now)
}

fn latest_slot(
    cadence: &Cadence,
    anchor: Timestamp,
    since: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    if let Cadence::Every(every) = cadence {
        let step = i64::try_from(every.as_secs()).ok()?.max(1);
        let k = (now.as_second() - anchor.as_second()).div_euclid(step);
        let slot = Timestamp::from_second(anchor.as_second() + k * step).ok()?;
        return (slot > since && slot <= now).then_some(slot);
    }
    let mut latest = None;
    let mut at = since;
    for _ in 0..MOST_SLOTS {
        match next_slot(cadence, anchor, at) {
            Some(slot) if slot <= now => {
                latest = Some(slot);
                at = slot;
            }
            _ => break,
        }
    }
    latest
}

/// A snapshot a schedule made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub name: String,
    pub taken_at: Timestamp,
    pub ready: bool,
    /// Its creation failed for good (it will never be Ready).
    pub failed: bool,
}

/// Whether a new run may start (pure): runs never overlap, so the newest
/// snapshot must be Ready or failed.
pub fn may_start(taken: &[Taken]) -> bool {
    taken
        .iter()
        .max_by_key(|t| t.taken_at)
        .is_none_or(|newest| newest.ready || newest.failed)
}

/// The snapshots retention deletes (pure), oldest first: those beyond the
/// newest `last`, and those older than `within`; never the newest Ready one,
/// and never one still being made.
pub fn to_prune(
    taken: &[Taken],
    last: Option<u32>,
    within: Option<Duration>,
    now: Timestamp,
) -> Vec<String> {
    let mut sorted: Vec<&Taken> = taken.iter().collect();
    sorted.sort_by_key(|t| std::cmp::Reverse(t.taken_at));
    let newest_ready = sorted.iter().find(|t| t.ready).map(|t| t.name.clone());
    let cutoff = within
        .and_then(|w| SignedDuration::try_from(w).ok())
        .and_then(|w| now.checked_sub(w).ok());
    let mut out: Vec<(Timestamp, String)> = sorted
        .iter()
        .enumerate()
        .filter(|(rank, t)| {
            let beyond_count = last.is_some_and(|last| *rank >= last as usize);
            let too_old = cutoff.is_some_and(|cutoff| t.taken_at < cutoff);
            let settled = t.ready || t.failed;
            (beyond_count || too_old) && settled && Some(&t.name) != newest_ready.as_ref()
        })
        .map(|(_, t)| (t.taken_at, t.name.clone()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, name)| name).collect()
}

/// The name of the snapshot of the run at `at` (pure): the schedule's name
/// and the run's time, so a retried run finds the snapshot it made.
pub fn snapshot_name(schedule: &str, at: Timestamp) -> String {
    let stamp = at.strftime("%Y%m%d-%H%M").to_string();
    let base: String = schedule.chars().take(253 - stamp.len() - 1).collect();
    format!("{base}-{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_cadence_is_a_cron_expression_or_an_interval() {
        assert!(matches!(
            cadence(Some("0 3 * * *"), None),
            Ok(Cadence::Cron(_))
        ));
        assert!(matches!(
            cadence(None, Some(Duration::from_secs(3600))),
            Ok(Cadence::Every(_))
        ));
        assert_eq!(
            cadence(Some("every night"), None).unwrap_err(),
            CadenceError::BadCron("every night".into())
        );
        assert_eq!(
            cadence(Some("0 0 3 * * *"), None).unwrap_err().to_string(),
            "schedule \"0 0 3 * * *\" is not a five-field cron expression"
        );
        assert_eq!(
            cadence(None, None).unwrap_err(),
            CadenceError::NotExactlyOne
        );
        assert_eq!(
            cadence(None, Some(Duration::from_secs(30))).unwrap_err(),
            CadenceError::TooShort
        );
    }

    #[test]
    fn a_nightly_schedule_runs_once_a_night_and_catches_up_once() {
        let nightly = cadence(Some("0 3 * * *"), None).unwrap();
        let created = at("2026-12-01T12:00:00Z");
        assert_eq!(
            due(&nightly, created, None, at("2026-12-02T02:59:00Z")),
            None
        );
        assert_eq!(
            due(&nightly, created, None, at("2026-12-02T03:00:30Z")),
            Some(at("2026-12-02T03:00:00Z"))
        );
        let ran = Some(at("2026-12-02T03:00:00Z"));
        assert_eq!(
            due(&nightly, created, ran, at("2026-12-02T15:00:00Z")),
            None
        );
        // Down for five nights: one run, for the latest night missed.
        assert_eq!(
            due(&nightly, created, ran, at("2026-12-07T09:00:00Z")),
            Some(at("2026-12-07T03:00:00Z"))
        );
        assert_eq!(
            next_slot(&nightly, created, at("2026-12-07T09:00:00Z")),
            Some(at("2026-12-08T03:00:00Z"))
        );
    }

    #[test]
    fn an_interval_schedule_runs_at_once_then_every_interval() {
        let hourly = cadence(None, Some(Duration::from_secs(3600))).unwrap();
        let created = at("2026-12-01T12:00:00Z");
        assert_eq!(due(&hourly, created, None, created), Some(created));
        let ran = Some(created);
        assert_eq!(due(&hourly, created, ran, at("2026-12-01T12:59:59Z")), None);
        assert_eq!(
            due(&hourly, created, ran, at("2026-12-01T13:00:01Z")),
            Some(at("2026-12-01T13:00:00Z"))
        );
        // A restart mid-interval takes nothing extra; downtime takes one.
        let ran = Some(at("2026-12-01T13:00:00Z"));
        assert_eq!(due(&hourly, created, ran, at("2026-12-01T13:30:00Z")), None);
        assert_eq!(
            due(&hourly, created, ran, at("2026-12-01T18:10:00Z")),
            Some(at("2026-12-01T18:00:00Z"))
        );
        assert_eq!(
            next_slot(&hourly, created, at("2026-12-01T18:10:00Z")),
            Some(at("2026-12-01T19:00:00Z"))
        );
    }

    fn taken(name: &str, at_: &str, ready: bool) -> Taken {
        Taken {
            name: name.into(),
            taken_at: at(at_),
            ready,
            failed: false,
        }
    }

    #[test]
    fn runs_never_overlap() {
        assert!(may_start(&[]));
        let running = [
            taken("a", "2026-12-01T01:00:00Z", true),
            taken("b", "2026-12-02T01:00:00Z", false),
        ];
        assert!(!may_start(&running));
        let mut failed = running.clone();
        failed[1].failed = true;
        assert!(may_start(&failed));
    }

    #[test]
    fn retention_keeps_the_newest_within_bounds_and_always_one_ready() {
        let now = at("2026-12-31T00:00:00Z");
        let all = [
            taken("d1", "2026-11-01T03:00:00Z", true),
            taken("d2", "2026-12-20T03:00:00Z", true),
            taken("d3", "2026-12-28T03:00:00Z", true),
            taken("d4", "2026-12-29T03:00:00Z", true),
            taken("d5", "2026-12-30T03:00:00Z", false),
        ];
        let month = Some(Duration::from_secs(30 * 86400));
        // At most 3, none older than 30 days; d5 is still being made.
        assert_eq!(to_prune(&all, Some(3), month, now), ["d1", "d2"]);
        assert_eq!(to_prune(&all, None, month, now), ["d1"]);
        assert_eq!(to_prune(&all, Some(10), None, now), Vec::<String>::new());
        // Everything too old: the newest Ready one stays.
        let old = [
            taken("o1", "2026-01-01T03:00:00Z", true),
            taken("o2", "2026-02-01T03:00:00Z", true),
        ];
        assert_eq!(to_prune(&old, Some(7), month, now), ["o1"]);
    }

    #[test]
    fn snapshot_names_carry_the_schedule_and_the_run() {
        assert_eq!(
            snapshot_name("shop-nightly", at("2026-12-02T03:00:00Z")),
            "shop-nightly-20261202-0300"
        );
        assert!(snapshot_name(&"x".repeat(300), at("2026-12-02T03:00:00Z")).len() <= 253);
    }
}
