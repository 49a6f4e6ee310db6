//! Response bodies rendered once per snapshot, whole and per node.
//!
//! Every GPU endpoint's `data` is serialized and compressed here, when the snapshot is built,
//! never per request. The unfiltered answer is kept whole; each node's share is kept too, so
//! that a request filtered to a few nodes joins a few fragments: its cost follows what it
//! returns, not the size of the cluster.

use std::collections::HashMap;

use serde::Serialize;

use super::fragment::Fragment;
use super::model::{Gpu, GpuId, GpuStatus, NodeName};
use super::summary::NodeSummary;

/// One endpoint's `data`, whole and per node.
#[derive(Debug)]
pub struct View {
    /// `data` of the unfiltered answer.
    pub whole: Fragment,
    /// Per node, in the snapshot's node order: that node's items, comma-separated.
    pub per_node: Vec<Fragment>,
}

/// The rendered views of one snapshot.
#[derive(Debug)]
pub struct Rendered {
    /// `/api/v1/gpu/metrics`: items are GPU objects.
    pub metrics: View,
    /// `/api/v1/gpu/utilization`: items are `{uuid, node, utilization_ratio}`.
    pub utilization: View,
    /// `/api/v1/gpu/nodes`: items are node summaries, one per node.
    pub nodes: View,
    /// Per node: sum and count of the utilization readings, for filtered averages.
    utilization_sums: Vec<(f64, usize)>,
    /// Position of each named node in the per-node vectors.
    positions: HashMap<NodeName, usize>,
}

#[derive(Serialize)]
struct UtilizationItem<'a> {
    uuid: &'a GpuId,
    node: Option<&'a NodeName>,
    status: GpuStatus,
    utilization_ratio: Option<f64>,
}

impl Rendered {
    /// Renders every view of GPUs already sorted and grouped as `nodes` describes.
    pub(super) fn new(gpus: &[Gpu], nodes: &[NodeSummary], average: Option<f64>) -> Self {
        let groups: Vec<&[Gpu]> = gpus.chunk_by(|a, b| a.node == b.node).collect();
        let metrics_parts: Vec<_> = groups.iter().map(|g| items(g.iter())).collect();
        let utilization_parts: Vec<_> = groups
            .iter()
            .map(|g| items(g.iter().map(utilization_item)))
            .collect();
        let node_parts: Vec<_> = nodes.iter().map(|n| items(std::iter::once(n))).collect();

        Rendered {
            metrics: View::wrapped(metrics_parts, b"{\"gpus\":[", b"]}".to_vec()),
            utilization: View::wrapped(utilization_parts, b"{\"gpus\":[", average_tail(average)),
            nodes: View::wrapped(node_parts, b"{\"nodes\":[", b"]}".to_vec()),
            utilization_sums: groups.iter().map(|g| utilization_sum(g)).collect(),
            positions: positions(nodes),
        }
    }

    /// Where the node named `name` is in the per-node vectors.
    pub fn position(&self, name: &NodeName) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// Mean utilization over the GPUs of the nodes at `positions` that report one.
    pub fn utilization_average(&self, positions: &[usize]) -> Option<f64> {
        let (sum, count) = positions
            .iter()
            .map(|&i| self.utilization_sums[i])
            .fold((0.0, 0), |(s, c), (ps, pc)| (s + ps, c + pc));
        (count > 0).then(|| super::model::round(sum / count as f64))
    }
}

impl View {
    /// `head`, the nodes' fragments separated by commas, and `tail`, joined in one copy.
    fn wrapped(per_node: Vec<Fragment>, head: &'static [u8], tail: Vec<u8>) -> Self {
        let (head, comma, tail) = (
            Fragment::literal(head),
            Fragment::literal(&b","[..]),
            Fragment::literal(tail),
        );
        let separated = per_node
            .iter()
            .enumerate()
            .flat_map(|(i, node)| [(i > 0).then_some(&comma), Some(node)])
            .flatten();
        let parts = std::iter::once(&head)
            .chain(separated)
            .chain(std::iter::once(&tail));
        View {
            whole: Fragment::join(parts),
            per_node,
        }
    }
}

/// `],"average_ratio":…}`, the end of a utilization `data`.
pub fn average_tail(average: Option<f64>) -> Vec<u8> {
    let value = serde_json::to_string(&average).expect("an f64 option serializes");
    format!("],\"average_ratio\":{value}}}").into_bytes()
}

fn items<T: Serialize>(items: impl Iterator<Item = T>) -> Fragment {
    let mut json = Vec::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            json.push(b',');
        }
        serde_json::to_writer(&mut json, &item).expect("snapshot types serialize");
    }
    Fragment::new(json)
}

fn utilization_item(gpu: &Gpu) -> UtilizationItem<'_> {
    UtilizationItem {
        uuid: &gpu.uuid,
        node: gpu.node.as_ref(),
        status: gpu.status,
        utilization_ratio: gpu.utilization_ratio,
    }
}

fn utilization_sum(gpus: &[Gpu]) -> (f64, usize) {
    gpus.iter()
        .filter_map(|g| g.utilization_ratio)
        .fold((0.0, 0), |(s, c), u| (s + u, c + 1))
}

fn positions(nodes: &[NodeSummary]) -> HashMap<NodeName, usize> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| Some((node.name.clone()?, i)))
        .collect()
}
