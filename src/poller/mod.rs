//! The background task that keeps the snapshot fresh.
//!
//! [`poll_once`] is one poll, easy to test on its own; [`Poller::run`] is the loop around it:
//! the interval and its backoff, what is remembered between polls, publishing, status, and
//! stopping when told to.

mod join;
mod memory;
mod poll;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use join::{GpuTable, Joined, Seen, Target, TargetHealth};
pub use memory::{Ageing, Memory};
pub use poll::{Failure, PollOutcome, join_answers, poll_once};

use crate::exporter::ExporterFamily;
use crate::prometheus::Client;
use crate::snapshot::{Gpu, PollStatus, QueryFailure, Snapshot, Store};

/// The most a failing Prometheus stretches the interval by.
const MAX_BACKOFF: u32 = 8;

/// How a snapshot is made from what a poll found; a field so that tests can make it fail.
type Build = fn(u64, SystemTime, Instant, Vec<Gpu>, Vec<QueryFailure>) -> Snapshot;

/// Polls Prometheus on an interval and publishes what it finds.
#[derive(Debug)]
pub struct Poller {
    client: Client,
    family: &'static ExporterFamily,
    node_labels: Vec<String>,
    interval: Duration,
    ageing: Ageing,
    memory: Memory,
    store: Arc<Store>,
    build: Build,
}

impl Poller {
    /// A poller that publishes into `store`.
    pub fn new(
        client: Client,
        family: &'static ExporterFamily,
        node_labels: Vec<String>,
        interval: Duration,
        ageing: Ageing,
        store: Arc<Store>,
    ) -> Self {
        Poller {
            client,
            family,
            node_labels,
            interval,
            ageing,
            memory: Memory::new(family, ageing),
            store,
            build: Snapshot::new,
        }
    }

    /// Polls until `cancel` fires: once at once, then every interval.
    ///
    /// A poll runs to completion before the next is scheduled, so polls never overlap, and a
    /// slow poll delays the next one rather than causing a burst. While every query fails
    /// (Prometheus down, unreachable, or refusing everything because it is overloaded), the
    /// pause between polls doubles, up to [`MAX_BACKOFF`] intervals, with jitter so that
    /// many replicas do not return in step; the first answer brings the normal interval back.
    pub async fn run(mut self, cancel: CancellationToken) {
        let span = tracing::info_span!("poller", family = self.family.name);
        async move {
            let mut failed_polls = 0;
            let mut next = Instant::now();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
                let started = Instant::now();
                let failed = tokio::select! {
                    _ = cancel.cancelled() => break,
                    failed = self.guarded_poll() => failed,
                };
                failed_polls = if failed { failed_polls + 1 } else { 0 };
                next = started + pause(self.interval, failed_polls);
            }
            tracing::debug!("poller stopped");
        }
        .instrument(span)
        .await
    }

    /// One poll, with a panic anywhere in it caught: the previous snapshot stays served and
    /// the loop goes on. Returns whether every query of the poll failed.
    async fn guarded_poll(&mut self) -> bool {
        let poll = AssertUnwindSafe(self.poll_and_publish()).catch_unwind();
        let panic = match poll.await {
            Ok(failed) => return failed,
            Err(panic) => panic,
        };

        let detail = crate::api::panic_text(panic.as_ref());
        tracing::error!(
            panic = detail,
            "a poll panicked; the previous snapshot is still served"
        );
        let previous = self.store.status();
        self.store.set_status(PollStatus {
            reachable: previous.reachable,
            last_success_at: previous.last_success_at,
            last_error: Some("an internal error stopped the latest poll".to_owned()),
        });
        false
    }

    /// Runs one poll and records its result in the store; returns whether every query of it
    /// failed, so that nothing could be published.
    pub async fn poll_and_publish(&mut self) -> bool {
        let started = Instant::now();
        let window = self.ageing.missing_after;
        let outcome = poll_once(&self.client, self.family, &self.node_labels, window).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;

        let previous = self.store.status();
        let now = SystemTime::now();
        let failed = matches!(outcome, PollOutcome::Failed { .. });
        let status = match outcome {
            PollOutcome::Joined { joined, failures } => {
                let lost = PollOutcome::lost_readings(&failures);
                let census = PollOutcome::info_complete(&failures);
                let failures = self.dated(&failures, now);
                let gpus = self.memory.update(joined, &lost, census, now);
                self.publish(&previous, gpus, failures, elapsed_ms).await
            }
            PollOutcome::Failed {
                failures,
                unreachable,
            } => {
                let failures = self.dated(&failures, now);
                record_failure(&previous, &failures, unreachable)
            }
        };
        log_transition(&previous, &status, elapsed_ms);
        self.store.set_status(status);
        failed
    }

    /// The poll's failures as the snapshot reports them, each with the time its run of
    /// failing polls began.
    fn dated(&mut self, failures: &[Failure], now: SystemTime) -> Vec<QueryFailure> {
        let labels: Vec<&'static str> = failures
            .iter()
            .map(|f| self.family.label(f.query))
            .collect();
        self.memory.keep_failing(&labels);
        failures
            .iter()
            .zip(labels)
            .map(|(failure, metric)| QueryFailure {
                metric: metric.to_owned(),
                reason: failure.reason.clone(),
                since: Some(self.memory.failing(metric, now)),
            })
            .collect()
    }

    /// Publishes what a poll found, even when some of its queries failed.
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
        let build = self.build;
        let snapshot = match tokio::task::spawn_blocking(move || {
            build(generation, now, finished, gpus, failures)
        })
        .await
        {
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
}

/// The pause from the start of one poll to the start of the next: the interval, or after
/// `failed` polls in a row in which every query failed, 2, 4, then 8 intervals, each
/// shortened by up to a quarter at random.
fn pause(interval: Duration, failed: u32) -> Duration {
    if failed == 0 {
        return interval;
    }
    let factor = 2u32.saturating_pow(failed).min(MAX_BACKOFF);
    let jitter = 0.75 + 0.25 * fastrand::f64();
    (interval * factor).mul_f64(jitter)
}

fn record_failure(
    previous: &PollStatus,
    failures: &[QueryFailure],
    unreachable: bool,
) -> PollStatus {
    PollStatus {
        reachable: Some(!unreachable),
        last_success_at: previous.last_success_at,
        last_error: summarize(failures),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;

    use super::*;
    use crate::exporter::NVIDIA_SMI;

    #[test]
    fn the_pause_doubles_while_polls_fail_up_to_eight_intervals_with_jitter() {
        let interval = Duration::from_secs(10);

        assert_eq!(pause(interval, 0), interval);
        for (polls, most) in [(1, 20), (2, 40), (3, 80), (4, 80), (40, 80)] {
            let pause = pause(interval, polls);
            let most = Duration::from_secs(most);
            assert!(
                pause <= most && pause >= most.mul_f64(0.75),
                "{polls}: {pause:?}"
            );
        }
    }

    /// A Prometheus whose every answer is an empty vector, enough for polls to publish.
    async fn empty_prometheus() -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let app = Router::new().route("/api/v1/query", get(move || async move { empty }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url::Url::parse(&format!("http://{addr}")).expect("url")
    }

    static BUILDS: AtomicUsize = AtomicUsize::new(0);

    /// Panics on the second snapshot it is asked to build, and builds the others.
    fn second_build_panics(
        generation: u64,
        at: SystemTime,
        instant: Instant,
        gpus: Vec<Gpu>,
        failures: Vec<QueryFailure>,
    ) -> Snapshot {
        if BUILDS.fetch_add(1, Ordering::SeqCst) == 1 {
            panic!("a bug while building the snapshot");
        }
        Snapshot::new(generation, at, instant, gpus, failures)
    }

    #[tokio::test]
    async fn a_panic_while_building_keeps_the_previous_snapshot_and_the_loop_going() {
        let client =
            Client::new(&empty_prometheus().await, Duration::from_secs(1)).expect("client");
        let store = Arc::new(Store::new());
        let ageing = Ageing {
            gpu_stale_after: Duration::from_secs(120),
            missing_after: Duration::from_secs(600),
        };
        let mut poller = Poller::new(
            client,
            &NVIDIA_SMI,
            vec!["node".into()],
            Duration::from_millis(50),
            ageing,
            Arc::clone(&store),
        );
        poller.build = second_build_panics;

        poller.guarded_poll().await;
        assert_eq!(store.snapshot().map(|s| s.generation), Some(1));

        poller.guarded_poll().await;
        assert_eq!(store.snapshot().map(|s| s.generation), Some(1));
        assert!(store.status().last_error.is_some());

        poller.guarded_poll().await;
        assert_eq!(store.snapshot().map(|s| s.generation), Some(2));
    }
}
