//! Where the poller publishes and the handlers read, without locks.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use super::Snapshot;

/// How the latest poll went, which can differ from what the latest snapshot says: a poll in
/// which every query failed publishes no snapshot, only a new status.
#[derive(Debug, Clone, Default)]
pub struct PollStatus {
    /// False when the latest poll got no answer from Prometheus; `None` before the first poll.
    pub reachable: Option<bool>,
    /// When the latest poll that published a snapshot finished.
    pub last_success_at: Option<SystemTime>,
    /// What went wrong in the latest poll, if anything did.
    pub last_error: Option<String>,
}

impl PollStatus {
    /// True when the latest poll ran every query successfully.
    pub fn healthy(&self) -> bool {
        self.reachable == Some(true) && self.last_error.is_none()
    }
}

/// The latest snapshot and poll status, each behind its own atomic pointer, and a channel
/// that tells stream subscribers a new generation exists.
///
/// Readers take a cheap `Arc` clone and work on it; the poller swaps in a new value whole.
/// Neither ever waits for the other. The channel holds only the latest generation, so a
/// subscriber that falls behind skips to the newest snapshot instead of queueing old ones.
#[derive(Debug)]
pub struct Store {
    snapshot: ArcSwapOption<Snapshot>,
    status: ArcSwap<PollStatus>,
    generations: watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            snapshot: ArcSwapOption::empty(),
            status: ArcSwap::default(),
            generations: watch::Sender::new(0),
        }
    }
}

impl Store {
    /// An empty store: no snapshot yet, no poll yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver that wakes when a snapshot is published after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generations.subscribe()
    }

    /// The latest snapshot, if any poll has published one.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// The latest poll's status.
    pub fn status(&self) -> Arc<PollStatus> {
        self.status.load_full()
    }

    /// The generation the next published snapshot should carry.
    pub fn next_generation(&self) -> u64 {
        self.snapshot
            .load()
            .as_ref()
            .map_or(1, |snapshot| snapshot.generation + 1)
    }

    /// Makes `snapshot` the one every new request sees.
    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.generation;
        self.snapshot.store(Some(Arc::new(snapshot)));
        self.generations.send_replace(generation);
    }

    /// Records how the latest poll went.
    pub fn set_status(&self, status: PollStatus) {
        self.status.store(Arc::new(status));
    }
}
