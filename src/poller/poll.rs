//! One poll: every query of a family, concurrently, joined into GPUs.

use futures::future::join_all;

use super::join::GpuTable;
use crate::exporter::ExporterFamily;
use crate::prometheus::{Client, QueryError, Sample};
use crate::snapshot::{Gpu, QueryFailure};

/// What one poll found.
#[derive(Debug)]
pub enum PollOutcome {
    /// At least one query answered; `failures` lists those that did not.
    Joined {
        /// The GPUs the answered queries describe.
        gpus: Vec<Gpu>,
        /// Queries that failed; empty for a complete poll.
        failures: Vec<QueryFailure>,
    },
    /// Every query failed, so there is nothing new to publish.
    Failed {
        /// Why each query failed.
        failures: Vec<QueryFailure>,
        /// True when no query got an answer from Prometheus at all.
        unreachable: bool,
    },
}

/// Runs every query of `family` at once and joins what comes back.
///
/// The queries are independent, so one slow metric costs one query timeout, not the sum.
pub async fn poll_once(
    client: &Client,
    family: &ExporterFamily,
    node_labels: &[String],
) -> PollOutcome {
    let queries = family
        .metric_names()
        .map(|metric| async move { (metric, client.query(metric).await) });
    let answers = join_all(queries).await;

    let mut table = GpuTable::new(family, node_labels);
    let mut failures = Vec::new();
    let mut unreachable = true;
    for (metric, answer) in answers {
        unreachable &= matches!(&answer, Err(e) if e.is_unreachable());
        let decoded = answer
            .as_ref()
            .map_err(|e| failure(metric, e))
            .and_then(|answer| answer.samples().map_err(|e| failure(metric, &e)));
        match decoded {
            Ok(samples) => add(&mut table, family, metric, &samples),
            Err(failed) => failures.push(failed),
        }
    }

    if failures.len() == family.metric_names().count() {
        return PollOutcome::Failed {
            failures,
            unreachable,
        };
    }
    if table.unidentified() > 0 {
        tracing::warn!(
            series = table.unidentified(),
            uuid_label = family.uuid_label,
            "series without a usable gpu uuid were left out"
        );
    }
    PollOutcome::Joined {
        gpus: table.into_gpus(),
        failures,
    }
}

fn add(table: &mut GpuTable<'_>, family: &ExporterFamily, metric: &str, samples: &[Sample<'_>]) {
    if metric == family.info.name {
        table.add_info(samples);
        return;
    }
    let value_metric = family
        .values
        .iter()
        .find(|m| m.name == metric)
        .expect("every queried name comes from the family's table");
    table.add_values(value_metric, samples);
}

fn failure(metric: &str, error: &QueryError) -> QueryFailure {
    QueryFailure {
        metric: metric.to_owned(),
        reason: error.to_string(),
    }
}
