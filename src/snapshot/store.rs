//! Where the poller publishes and the handlers read, without locks.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

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

/// The latest snapshot and poll status, each behind its own atomic pointer.
///
/// Readers take a cheap `Arc` clone and work on it; the poller swaps in a new value whole.
/// Neither ever waits for the other.
#[derive(Debug, Default)]
pub struct Store {
    snapshot: ArcSwapOption<Snapshot>,
    status: ArcSwap<PollStatus>,
}

impl Store {
    /// An empty store: no snapshot yet, no poll yet.
    pub fn new() -> Self {
        Self::default()
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
        self.snapshot.store(Some(Arc::new(snapshot)));
    }

    /// Records how the latest poll went.
    pub fn set_status(&self, status: PollStatus) {
        self.status.store(Arc::new(status));
    }
}
