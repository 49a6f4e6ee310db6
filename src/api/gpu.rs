//! The GPU endpoints: metrics, per-node summaries, utilization.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::envelope::answer;
use super::params::NoParams;
use super::{ApiError, AppState};
use crate::snapshot::{Gpu, GpuId, NodeName, NodeSummary, Snapshot};

#[derive(Serialize)]
struct GpuList<'a> {
    gpus: &'a [Gpu],
}

#[derive(Serialize)]
struct NodeList<'a> {
    nodes: &'a [NodeSummary],
}

#[derive(Serialize)]
struct Utilization<'a> {
    gpus: Vec<GpuUtilization<'a>>,
    average_ratio: Option<f64>,
}

#[derive(Serialize)]
struct GpuUtilization<'a> {
    uuid: &'a GpuId,
    node: Option<&'a NodeName>,
    utilization_ratio: Option<f64>,
}

/// `GET /api/v1/gpu/metrics`: every GPU with every reading.
pub async fn metrics(State(state): State<AppState>, _: NoParams) -> Result<Response, ApiError> {
    let snapshot = latest(&state)?;
    let data = GpuList {
        gpus: &snapshot.gpus,
    };
    Ok(ok(&state, &snapshot, data))
}

/// `GET /api/v1/gpu/nodes`: one summary per node.
pub async fn nodes(State(state): State<AppState>, _: NoParams) -> Result<Response, ApiError> {
    let snapshot = latest(&state)?;
    let data = NodeList {
        nodes: &snapshot.nodes,
    };
    Ok(ok(&state, &snapshot, data))
}

/// `GET /api/v1/gpu/utilization`: the light view for busy dashboards.
pub async fn utilization(State(state): State<AppState>, _: NoParams) -> Result<Response, ApiError> {
    let snapshot = latest(&state)?;
    let gpus = snapshot
        .gpus
        .iter()
        .map(|gpu| GpuUtilization {
            uuid: &gpu.uuid,
            node: gpu.node.as_ref(),
            utilization_ratio: gpu.utilization_ratio,
        })
        .collect();
    let data = Utilization {
        gpus,
        average_ratio: snapshot.utilization_avg_ratio,
    };
    Ok(ok(&state, &snapshot, data))
}

fn latest(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.store.snapshot().ok_or(ApiError::NoData)
}

fn ok(state: &AppState, snapshot: &Snapshot, data: impl Serialize) -> Response {
    answer(state, Some(snapshot), data, summary(snapshot))
}

/// "8 GPUs on 2 nodes".
fn summary(snapshot: &Snapshot) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{} on {}",
        plural(snapshot.gpus.len(), "GPU"),
        plural(snapshot.node_count, "node")
    )
}
