//! The background task that keeps the snapshot fresh.
//!
//! [`poll_once`] is one poll, easy to test on its own; [`Poller::run`] is the loop around it:
//! the interval, publishing, status, and stopping when told to.

mod join;
mod poll;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use join::GpuTable;
pub use poll::{PollOutcome, poll_once};

use crate::exporter::ExporterFamily;
use crate::prometheus::Client;
use crate::snapshot::{Gpu, PollStatus, QueryFailure, Snapshot, Store};

/// Polls Prometheus on an interval and publishes what it finds.
#[derive(Debug)]
pub struct Poller {
    client: Client,
    family: &'static ExporterFamily,
    node_labels: Vec<String>,
    interval: Duration,
    store: Arc<Store>,
}

impl Poller {
    /// A poller that publishes into `store`.
    pub fn new(
        client: Client,
        family: &'static ExporterFamily,
        node_labels: Vec<String>,
        interval: Duration,
        store: Arc<Store>,
    ) -> Self {
        Poller {
            client,
            family,
            node_labels,
            interval,
            store,
        }
    }

    /// Polls until `cancel` fires: once at once, then every interval.
    ///
    /// A poll runs to completion before the next tick is awaited, so polls never overlap, and
    /// a tick missed while a slow poll ran is delayed rather than fired in a burst.
    ///
    /// Known shortcoming: while Prometheus is down the loop keeps polling at the normal
    /// interval; there is no backoff.
    pub async fn run(self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let span = tracing::info_span!("poller", family = self.family.name);
        async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.poll_and_publish() => {}
                }
            }
            tracing::debug!("poller stopped");
        }
        .instrument(span)
        .await
    }

    /// Runs one poll and records its result in the store.
    pub async fn poll_and_publish(&self) {
        let started = Instant::now();
        let outcome = poll_once(&self.client, self.family, &self.node_labels).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;

        let previous = self.store.status();
        let status = match outcome {
            PollOutcome::Joined { gpus, failures } => {
                self.publish(&previous, gpus, failures, elapsed_ms).await
            }
            PollOutcome::Failed {
                failures,
                unreachable,
            } => self.record_failure(&previous, failures, unreachable),
        };
        log_transition(&previous, &status, elapsed_ms);
        self.store.set_status(status);
    }

    /// Publishes what a poll found, even when some of its queries failed.
    ///
    /// Known shortcoming: the readings of a failed query are `None` in the new snapshot, not
    /// the values the previous snapshot had, so a single timed-out query blanks that metric
    /// for one interval.
    async fn publish(
        &self,
        previous: &PollStatus,
        gpus: Vec<Gpu>,
        failures: Vec<QueryFailure>,
        elapsed_ms: u64,
    ) -> PollStatus {
        let now = SystemTime::now();
        let finished = Instant::now();
        let generation = self.store.next_generation();

        // Rendering and compressing 8,000 GPUs takes tens of milliseconds: keep it off the
        // runtime threads that serve requests. A panic in it loses this poll, nothing else.
        let build = move || Snapshot::new(generation, now, finished, gpus, failures);
        let snapshot = match tokio::task::spawn_blocking(build).await {
            Ok(snapshot) => snapshot,
            Err(error) => return self.failed_build(previous, &error),
        };
        tracing::debug!(
            generation,
            gpus = snapshot.gpus.len(),
            nodes = snapshot.node_count,
            failed_queries = snapshot.failures.len(),
            elapsed_ms,
            render_ms = finished.elapsed().as_millis() as u64,
            "published snapshot"
        );

        let last_error = summarize(&snapshot.failures).or_else(|| no_gpus(&snapshot, self.family));
        self.store.publish(snapshot);
        PollStatus {
            reachable: Some(true),
            last_success_at: Some(now),
            last_error,
        }
    }

    fn failed_build(&self, previous: &PollStatus, error: &tokio::task::JoinError) -> PollStatus {
        tracing::error!(error = %error, "building a snapshot failed; the previous one is still served");
        PollStatus {
            reachable: Some(true),
            last_success_at: previous.last_success_at,
            last_error: Some("building the snapshot from the poll's answers failed".to_owned()),
        }
    }

    fn record_failure(
        &self,
        previous: &PollStatus,
        failures: Vec<QueryFailure>,
        unreachable: bool,
    ) -> PollStatus {
        PollStatus {
            reachable: Some(!unreachable),
            last_success_at: previous.last_success_at,
            last_error: summarize(&failures),
        }
    }
}

/// One line for the health endpoint: the first failure, and how many others there were.
fn summarize(failures: &[QueryFailure]) -> Option<String> {
    let first = failures.first()?;
    let text = format!("{}: {}", first.metric, first.reason);
    Some(match failures.len() {
        1 => text,
        n => format!("{text} (and {} more failed queries)", n - 1),
    })
}

/// A poll that finds no GPU at all is far more often a wrong Prometheus URL, or an exporter
/// that is not scraped, than a cluster without GPUs; say so rather than report health `ok`.
fn no_gpus(snapshot: &Snapshot, family: &ExporterFamily) -> Option<String> {
    snapshot.gpus.is_empty().then(|| {
        format!(
            "prometheus has no series of any {}_* metric: is the exporter scraped by this prometheus?",
            family.name
        )
    })
}

/// Logs changes of health rather than every poll, so that an outage of an hour is two WARN
/// lines and not seven hundred.
fn log_transition(previous: &PollStatus, current: &PollStatus, elapsed_ms: u64) {
    match (&previous.last_error, &current.last_error) {
        (_, Some(error)) if previous.last_error.as_ref() != Some(error) => {
            tracing::warn!(error = %error, reachable = current.reachable, elapsed_ms, "poll failed");
        }
        (Some(_), None) => tracing::info!(elapsed_ms, "poll recovered"),
        _ => {}
    }
}
