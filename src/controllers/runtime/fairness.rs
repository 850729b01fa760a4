//! Fairness between namespaces: a controller runs at most `concurrency`
//! reconciles at once, and when more are waiting the free places go round
//! the namespaces in turn, not first come first served. One namespace that
//! cold-starts a thousand objects then holds up a new object of another
//! namespace by one turn, not by a thousand reconciles.
//!
//! kube-runtime's controller dispatches every due object (its own limit is
//! off, see `watch::drive`); each reconcile waits here for its place.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A place to run, held for the length of one reconcile.
#[must_use]
pub struct Permit {
    gate: Arc<FairGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Places to run, handed out round-robin over keys (namespaces).
pub struct FairGate {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// Waiters by key, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Keys with waiters, in the order their turn comes.
    turns: VecDeque<String>,
}

impl FairGate {
    /// A gate with `places` places (at least one).
    pub fn new(places: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: places.max(1),
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a place for a reconcile of `key`. Dropping the future
    /// before it resolves gives up its turn (and a place handed to it).
    pub async fn admit(self: &Arc<Self>, key: &str) -> Permit {
        let receiver = {
            let mut state = self.state();
            if state.free > 0 && state.turns.is_empty() {
                state.free -= 1;
                return Permit { gate: self.clone() };
            }
            let (sender, receiver) = oneshot::channel();
            let queue = state.waiting.entry(key.to_string()).or_default();
            queue.push_back(sender);
            if queue.len() == 1 {
                state.turns.push_back(key.to_string());
            }
            receiver
        };
        let mut waiting = Waiting {
            gate: self.clone(),
            receiver: Some(receiver),
        };
        let handed = match waiting.receiver.as_mut() {
            Some(receiver) => receiver.await.is_ok(),
            None => false,
        };
        waiting.receiver = None;
        if !handed {
            // The gate dropped its sender without a place (it never does
            // while it exists): take one the ordinary way.
            return Box::pin(self.admit(key)).await;
        }
        Permit { gate: self.clone() }
    }

    /// Hands a freed place to the next key in turn, or keeps it.
    fn release(&self) {
        let mut state = self.state();
        loop {
            let Some(key) = state.turns.pop_front() else {
                state.free += 1;
                return;
            };
            let Some(queue) = state.waiting.get_mut(&key) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&key);
            } else {
                state.turns.push_back(key);
            }
            if let Some(sender) = next
                && sender.send(()).is_ok()
            {
                return;
            }
            // That waiter gave up: the next one gets the place.
        }
    }

    /// How many reconciles wait for a place now.
    pub fn waiting(&self) -> usize {
        self.state().waiting.values().map(VecDeque::len).sum()
    }
}

/// A waiter's side: gives back a place that was handed to it after it
/// stopped waiting.
struct Waiting {
    gate: Arc<FairGate>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn places_go_round_the_namespaces_in_turn() {
        let gate = FairGate::new(1);
        let first = gate.admit("busy").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Ten reconciles of one namespace queue up, then one of another.
        for i in 0..10 {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = gate.admit("busy").await;
                order.lock().unwrap().push(format!("busy{i}"));
            }));
            tokio::task::yield_now().await;
        }
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = g.admit("quiet").await;
            o.lock().unwrap().push("quiet".to_string());
        }));
        while gate.waiting() < 11 {
            tokio::task::yield_now().await;
        }
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 11);
        let quiet = order.iter().position(|o| o == "quiet").unwrap();
        assert!(
            quiet <= 1,
            "the other namespace waits one turn, not behind all ten: {order:?}"
        );
        // Within a namespace, first come first served.
        let busy: Vec<&String> = order.iter().filter(|o| o.starts_with("busy")).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("busy{i}")).collect();
        assert_eq!(busy, expected.iter().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn never_more_at_once_than_places() {
        let gate = FairGate::new(3);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _p = gate.admit(&format!("ns{}", i % 4)).await;
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Every place came back.
        let all: Vec<Permit> = futures::future::join_all((0..3).map(|_| gate.admit("x"))).await;
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_place() {
        let gate = FairGate::new(1);
        let held = gate.admit("a").await;
        let abandoned = tokio::time::timeout(Duration::from_millis(20), gate.admit("b")).await;
        assert!(abandoned.is_err(), "no place while one is held");
        assert_eq!(gate.waiting(), 1, "its sender stays queued until its turn");
        drop(held);
        // The place skips the abandoned waiter and is free again.
        let again = tokio::time::timeout(Duration::from_millis(200), gate.admit("c")).await;
        assert!(again.is_ok(), "the place came back");
        assert_eq!(gate.waiting(), 0);
    }
}
