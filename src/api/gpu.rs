//! The GPU endpoints: metrics, per-node summaries, one node, utilization.
//!
//! Each handler only picks fragments the snapshot rendered when it was published; none
//! serializes or compresses the GPU list.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::params::Params;
use super::respond::{Answer, respond};
use super::{ApiError, AppState};
use crate::snapshot::{Fragment, NodeName, Snapshot, View, average_tail};

/// `GET /api/v1/gpu/metrics[?node=a,b]`: every GPU with every reading.
pub async fn metrics(
    State(state): State<AppState>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&["node"])?;
    let nodes = params.nodes()?;
    let snapshot = latest(&state)?;

    let view = &snapshot.rendered.metrics;
    let answer = match nodes {
        None => whole(&snapshot, "metrics", view),
        Some(names) => {
            let at = positions(&snapshot, &names);
            let data = select(view, &at, b"{\"gpus\":[", b"]}".to_vec());
            filtered(&snapshot, "metrics", names, &at, data)
        }
    };
    Ok(respond(&state, &snapshot, &headers, answer))
}

/// `GET /api/v1/gpu/utilization[?node=a,b]`: the light view for busy dashboards.
pub async fn utilization(
    State(state): State<AppState>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&["node"])?;
    let nodes = params.nodes()?;
    let snapshot = latest(&state)?;

    let view = &snapshot.rendered.utilization;
    let answer = match nodes {
        None => whole(&snapshot, "utilization", view),
        Some(names) => {
            let at = positions(&snapshot, &names);
            let tail = average_tail(snapshot.rendered.utilization_average(&at));
            let data = select(view, &at, b"{\"gpus\":[", tail);
            filtered(&snapshot, "utilization", names, &at, data)
        }
    };
    Ok(respond(&state, &snapshot, &headers, answer))
}

/// `GET /api/v1/gpu/nodes`: one summary per node.
pub async fn nodes(
    State(state): State<AppState>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    let snapshot = latest(&state)?;

    let answer = whole(&snapshot, "nodes", &snapshot.rendered.nodes);
    Ok(respond(&state, &snapshot, &headers, answer))
}

/// `GET /api/v1/gpu/nodes/{name}`: one node's summary, 404 for a node the snapshot lacks.
pub async fn node(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    let snapshot = latest(&state)?;
    let unknown = || ApiError::UnknownNode(super::error::abbreviate(&name));
    let name = NodeName::parse(&name).map_err(|_| unknown())?;
    let at = snapshot.rendered.position(&name).ok_or_else(unknown)?;

    let data = vec![
        Fragment::literal(&b"{\"node\":"[..]),
        snapshot.rendered.nodes.per_node[at].clone(),
        Fragment::literal(&b"}"[..]),
    ];
    let answer = filtered(&snapshot, "node", vec![name], &[at], data);
    Ok(respond(&state, &snapshot, &headers, answer))
}

fn latest(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.store.snapshot().ok_or(ApiError::NoData)
}

fn whole(snapshot: &Snapshot, view: &'static str, rendered: &View) -> Answer {
    Answer {
        view,
        nodes: None,
        data: vec![rendered.whole.clone()],
        message: summary(snapshot.gpus.len(), snapshot.node_count),
    }
}

fn filtered(
    snapshot: &Snapshot,
    view: &'static str,
    names: Vec<NodeName>,
    at: &[usize],
    data: Vec<Fragment>,
) -> Answer {
    let gpus = at.iter().map(|&i| snapshot.nodes[i].gpu_count).sum();
    Answer {
        view,
        nodes: Some(names),
        data,
        message: summary(gpus, at.len()),
    }
}

/// Positions of the named nodes the snapshot has; names it lacks select nothing.
fn positions(snapshot: &Snapshot, names: &[NodeName]) -> Vec<usize> {
    let mut at: Vec<usize> = names
        .iter()
        .filter_map(|name| snapshot.rendered.position(name))
        .collect();
    at.sort_unstable();
    at
}

/// `head`, the chosen nodes' fragments separated by commas, `tail`.
fn select(view: &View, at: &[usize], head: &'static [u8], tail: Vec<u8>) -> Vec<Fragment> {
    let mut data = Vec::with_capacity(at.len() * 2 + 2);
    data.push(Fragment::literal(head));
    for (n, &i) in at.iter().enumerate() {
        if n > 0 {
            data.push(Fragment::literal(&b","[..]));
        }
        data.push(view.per_node[i].clone());
    }
    data.push(Fragment::literal(tail));
    data
}

/// "8 GPUs on 2 nodes".
fn summary(gpus: usize, nodes: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!("{} on {}", plural(gpus, "GPU"), plural(nodes, "node"))
}
