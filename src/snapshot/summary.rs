//! Per-node summaries, derived from the sorted GPU list when a snapshot is built.

use serde::Serialize;

use super::model::{Gpu, GpuId, NodeName, round};

/// What `/api/v1/gpu/nodes` reports for one node.
///
/// Sums and maxima cover only the GPUs that report the reading; when none does, the field is
/// `null` rather than a 0 that would read as "idle" or "cold".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSummary {
    /// Node name; `null` gathers the GPUs whose series carried no node label.
    pub name: Option<NodeName>,
    /// Whether any exporter on the node is up: `false` when all of them are down (its GPUs
    /// are then its last known ones), `null` when unknown.
    pub exporter_up: Option<bool>,
    /// GPUs on the node.
    pub gpu_count: usize,
    /// Their uuids, in the snapshot's order.
    pub gpus: Vec<GpuId>,
    /// Distinct product names, sorted.
    pub models: Vec<String>,
    /// Mean utilization over the GPUs that report it.
    pub utilization_avg_ratio: Option<f64>,
    /// Sum of memory in use.
    pub memory_used_bytes: Option<u64>,
    /// Sum of memory installed.
    pub memory_total_bytes: Option<u64>,
    /// Sum of power drawn.
    pub power_draw_watts: Option<f64>,
    /// Sum of power limits.
    pub power_limit_watts: Option<f64>,
    /// Hottest GPU's temperature.
    pub temperature_max_celsius: Option<f64>,
}

/// Groups GPUs, already sorted by node, into one summary per node.
pub(super) fn by_node(sorted: &[Gpu]) -> Vec<NodeSummary> {
    sorted
        .chunk_by(|a, b| a.node == b.node)
        .map(summarize)
        .collect()
}

fn summarize(gpus: &[Gpu]) -> NodeSummary {
    let mut models: Vec<String> = gpus.iter().filter_map(|g| g.name.clone()).collect();
    models.sort();
    models.dedup();

    NodeSummary {
        name: gpus[0].node.clone(),
        exporter_up: exporter_up(gpus),
        gpu_count: gpus.len(),
        gpus: gpus.iter().map(|g| g.uuid.clone()).collect(),
        models,
        utilization_avg_ratio: mean(gpus.iter().filter_map(|g| g.utilization_ratio)),
        memory_used_bytes: sum_bytes(gpus.iter().filter_map(|g| g.memory_used_bytes)),
        memory_total_bytes: sum_bytes(gpus.iter().filter_map(|g| g.memory_total_bytes)),
        power_draw_watts: sum(gpus.iter().filter_map(|g| g.power_draw_watts)),
        power_limit_watts: sum(gpus.iter().filter_map(|g| g.power_limit_watts)),
        temperature_max_celsius: gpus
            .iter()
            .filter_map(|g| g.temperature_celsius)
            .reduce(f64::max),
    }
}

/// Up when any exporter is, down when every known one is down.
fn exporter_up(gpus: &[Gpu]) -> Option<bool> {
    let known = gpus.iter().filter_map(|g| g.exporter_up);
    known.reduce(|any_up, up| any_up || up)
}

/// Mean of the values, `None` when there are none.
pub(super) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (total, count) = values.fold((0.0, 0usize), |(t, c), v| (t + v, c + 1));
    (count > 0).then(|| round(total / count as f64))
}

fn sum(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.reduce(|a, b| a + b).map(round)
}

fn sum_bytes(values: impl Iterator<Item = u64>) -> Option<u64> {
    values.reduce(u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(node: &str, id: &str, util: Option<f64>, power: Option<f64>) -> Gpu {
        let mut gpu = Gpu::new(GpuId::parse(id).expect("id"));
        gpu.node = Some(NodeName::parse(node).expect("node"));
        gpu.utilization_ratio = util;
        gpu.power_draw_watts = power;
        gpu.name = Some("L40S".into());
        gpu
    }

    #[test]
    fn readings_a_gpu_lacks_are_left_out_of_averages_and_sums() {
        let gpus = [
            gpu("a", "1", Some(0.5), Some(100.0)),
            gpu("a", "2", None, Some(50.25)),
            gpu("a", "3", Some(1.0), None),
        ];

        let nodes = by_node(&gpus);

        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].utilization_avg_ratio, Some(0.75));
        assert_eq!(nodes[0].power_draw_watts, Some(150.25));
        assert_eq!(nodes[0].models, vec!["L40S".to_owned()]);
    }

    #[test]
    fn a_reading_no_gpu_reports_is_null_not_zero() {
        let nodes = by_node(&[gpu("a", "1", None, None)]);

        assert_eq!(nodes[0].utilization_avg_ratio, None);
        assert_eq!(nodes[0].power_draw_watts, None);
        assert_eq!(nodes[0].temperature_max_celsius, None);
    }

    #[test]
    fn sorted_gpus_split_into_one_summary_per_node() {
        let gpus = [
            gpu("a", "1", None, None),
            gpu("a", "2", None, None),
            gpu("b", "3", None, None),
        ];

        let nodes = by_node(&gpus);

        let counts: Vec<_> = nodes.iter().map(|n| n.gpu_count).collect();
        assert_eq!(counts, [2, 1]);
    }
}
