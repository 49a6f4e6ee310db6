//! One poll: every query of a family, concurrently, joined into GPUs.

use std::borrow::Borrow;
use std::time::Duration;

use futures::future::join_all;

use super::join::{GpuTable, Joined};
use crate::exporter::{ExporterFamily, Query, Reading};
use crate::prometheus::{Answer, Client, QueryError, Vector};

/// A query of the poll that failed, or answered with a warning that it may be incomplete.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which query.
    pub query: Query,
    /// Why, in one line.
    pub reason: String,
    /// True when the answer was used all the same: Prometheus warned that it may lack
    /// series, but what it has is real.
    pub used: bool,
}

/// What one poll found.
#[derive(Debug)]
pub enum PollOutcome {
    /// At least one query answered; `failures` lists those that did not, or did in part.
    Joined {
        /// The GPUs and targets the answered queries describe.
        joined: Joined,
        /// Queries that failed or warned; empty for a complete poll.
        failures: Vec<Failure>,
    },
    /// Every query failed, so there is nothing new to publish.
    Failed {
        /// Why each query failed.
        failures: Vec<Failure>,
        /// True when no query got an answer from Prometheus at all.
        unreachable: bool,
    },
}

impl PollOutcome {
    /// The readings whose query brought nothing usable.
    pub fn lost_readings(failures: &[Failure]) -> Vec<Reading> {
        failures
            .iter()
            .filter(|f| !f.used)
            .filter_map(|f| match f.query {
                Query::Value(metric) => Some(metric.reading),
                _ => None,
            })
            .collect()
    }

    /// True when the info query answered in full, so that a GPU it does not list really is
    /// gone rather than merely unanswered.
    pub fn info_complete(failures: &[Failure]) -> bool {
        !failures.iter().any(|f| matches!(f.query, Query::Info))
    }
}

/// Runs every query of `family` at once and joins what comes back.
///
/// The queries are independent, so one slow metric costs one query timeout, not the sum. A
/// transient failure is retried once, after a short random pause so that many replicas of
/// this service do not retry in step.
pub async fn poll_once(
    client: &Client,
    family: &'static ExporterFamily,
    node_labels: &[String],
    window: Duration,
) -> PollOutcome {
    let queries = family.queries().map(|query| async move {
        let promql = family.promql(query, window);
        (query, ask(client, &promql).await)
    });
    let answers = join_all(queries).await;

    let unreachable = answers
        .iter()
        .all(|(_, answer)| matches!(answer, Err(e) if e.is_unreachable()));
    let mut failures = Vec::new();
    let Some(joined) = join_as_decoded(family, node_labels, &answers, &mut failures) else {
        return PollOutcome::Failed {
            failures,
            unreachable,
        };
    };
    if joined.unidentified > 0 {
        tracing::warn!(
            series = joined.unidentified,
            uuid_label = family.uuid_label,
            "series without a usable gpu uuid were left out"
        );
    }
    PollOutcome::Joined { joined, failures }
}

/// Decodes the answers one at a time and joins each as it comes, recording the queries that
/// failed or warned; `None` when no query answered.
fn join_as_decoded(
    family: &ExporterFamily,
    node_labels: &[String],
    answers: &[(Query, Result<Answer, QueryError>)],
    failures: &mut Vec<Failure>,
) -> Option<Joined> {
    let info = answers
        .iter()
        .filter(|(query, _)| query.is_info())
        .find_map(|(query, answer)| accept(family, *query, answer, failures))
        .map(|(_, vector)| vector);
    let others = answers
        .iter()
        .filter(|(query, _)| !query.is_info())
        .filter_map(|(query, answer)| accept(family, *query, answer, failures));
    join_in_order(family, node_labels, info.as_ref(), others)
}

async fn ask(client: &Client, promql: &str) -> Result<Answer, QueryError> {
    match client.query(promql).await {
        Err(error) if error.is_transient() => {
            let pause = Duration::from_millis(fastrand::u64(50..=250));
            tracing::debug!(error = %error, query = promql, pause_ms = pause.as_millis() as u64, "retrying a query");
            tokio::time::sleep(pause).await;
            client.query(promql).await
        }
        answered => answered,
    }
}

/// The vector if the query answered, recording a failure if it did not or warned.
fn accept<'a>(
    family: &ExporterFamily,
    query: Query,
    answer: &'a Result<Answer, QueryError>,
    failures: &mut Vec<Failure>,
) -> Option<(Query, Vector<'a>)> {
    let failure = |reason: String, used| Failure {
        query,
        reason,
        used,
    };
    let vector = match answer {
        Ok(answer) => answer.vector().map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match vector {
        Ok(vector) => {
            if !vector.warnings.is_empty() {
                let reason = format!(
                    "prometheus answered in part: {}",
                    vector.warnings.join("; ")
                );
                failures.push(failure(reason, true));
            }
            Some((query, vector))
        }
        Err(reason) => {
            tracing::debug!(query = family.label(query), error = %reason, "query failed");
            failures.push(failure(reason, false));
            None
        }
    }
}

/// Joins answers that are already decoded: what a poll does, for callers that hold every
/// answer at once, such as benchmarks and the fuzz target.
pub fn join_answers(
    family: &ExporterFamily,
    node_labels: &[String],
    decoded: &[(Query, Vector<'_>)],
) -> Joined {
    let info = decoded
        .iter()
        .find(|(query, _)| query.is_info())
        .map(|(_, vector)| vector);
    let others = decoded
        .iter()
        .filter(|(query, _)| !query.is_info())
        .map(|(query, vector)| (*query, vector));
    join_in_order(family, node_labels, info, others).unwrap_or_default()
}

/// Joins the info answer, then every other answer in turn; `None` when there was none.
///
/// The info answer goes first, since it settles which of duplicate series counts, and is
/// borrowed to the end because the join keeps its labels. Every other answer can be dropped
/// as soon as it is joined: with thousands of GPUs each decoded answer holds tens of
/// megabytes of label maps, and a poll that held all of them at once would set the
/// service's peak memory.
fn join_in_order<'i, 'r, V: Borrow<Vector<'r>>>(
    family: &ExporterFamily,
    node_labels: &[String],
    info: Option<&'i Vector<'i>>,
    others: impl IntoIterator<Item = (Query, V)>,
) -> Option<Joined> {
    let mut table = GpuTable::new(family, node_labels);
    let mut answered = usize::from(info.is_some());
    if let Some(vector) = info {
        table.add_info(&vector.samples);
    }
    for (query, vector) in others {
        table.add(query, &vector.borrow().samples);
        answered += 1;
    }
    (answered > 0).then(|| table.finish())
}
