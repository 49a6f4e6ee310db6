//! The GPU endpoints: metrics, per-node summaries, one node, utilization.
//!
//! Each handler only picks fragments the snapshot rendered when it was published; none
//! serializes or compresses the GPU list.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::Response;

use super::body::Piece;
use super::params::Params;
use super::respond::{Answer, Census, respond};
use super::{ApiError, AppState};
use crate::snapshot::{NodeName, Snapshot, View as Rendering, average_tail};

/// The three views of the GPU data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every GPU with every reading.
    Metrics,
    /// One summary per node.
    Nodes,
    /// uuid, node and utilization per GPU, and their mean.
    Utilization,
}

impl View {
    /// `?view=`, default `metrics`.
    pub fn parse(value: Option<&str>) -> Result<View, ApiError> {
        match value {
            None | Some("metrics") => Ok(View::Metrics),
            Some("nodes") => Ok(View::Nodes),
            Some("utilization") => Ok(View::Utilization),
            Some(other) => Err(ApiError::BadParameter(format!(
                "query parameter \"view\" is {:?}; use metrics, nodes or utilization",
                super::error::abbreviate(other)
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            View::Metrics => "metrics",
            View::Nodes => "nodes",
            View::Utilization => "utilization",
        }
    }
}

/// `GET /api/v1/gpu/metrics[?node=a,b]`: every GPU with every reading.
pub async fn metrics(
    state: State<Arc<AppState>>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    filterable(state, params, request, View::Metrics).await
}

/// `GET /api/v1/gpu/utilization[?node=a,b]`: the light view for busy dashboards.
pub async fn utilization(
    state: State<Arc<AppState>>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    filterable(state, params, request, View::Utilization).await
}

/// `GET /api/v1/gpu/nodes`: one summary per node.
pub async fn nodes(
    State(state): State<Arc<AppState>>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    let snapshot = latest(&state)?;

    let answer = answer(&snapshot, View::Nodes, None);
    Ok(respond(&state, &snapshot, request.headers(), answer))
}

/// `GET /api/v1/gpu/nodes/{name}`: one node's summary, 404 for a node the snapshot lacks.
pub async fn node(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(name) =
        name.map_err(|_| ApiError::BadPath(super::error::abbreviate(request.uri().path())))?;
    params.allow(&[])?;
    let snapshot = latest(&state)?;
    let unknown = || ApiError::UnknownNode(super::error::abbreviate(&name));
    let name = NodeName::parse(&name).map_err(|_| unknown())?;
    let at = snapshot.rendered.position(&name).ok_or_else(unknown)?;

    let data = vec![
        Piece::text(b"{\"node\":"),
        Piece::Shared(snapshot.rendered.nodes.per_node[at].clone()),
        Piece::text(b"}"),
    ];
    let answer = filtered(&snapshot, "node", vec![name], &[at], data);
    Ok(respond(&state, &snapshot, request.headers(), answer))
}

async fn filterable(
    State(state): State<Arc<AppState>>,
    params: Params,
    request: Request,
    view: View,
) -> Result<Response, ApiError> {
    params.allow(&["node"])?;
    let nodes = params.nodes()?;
    let snapshot = latest(&state)?;

    let answer = answer(&snapshot, view, nodes);
    Ok(respond(&state, &snapshot, request.headers(), answer))
}

/// What `view` answers from `snapshot`, for every node or only the named ones.
pub fn answer(snapshot: &Snapshot, view: View, nodes: Option<Vec<NodeName>>) -> Answer {
    let rendered = &snapshot.rendered;
    let rendering = match view {
        View::Metrics => &rendered.metrics,
        View::Nodes => &rendered.nodes,
        View::Utilization => &rendered.utilization,
    };
    let Some(names) = nodes else {
        return Answer {
            view: view.name(),
            nodes: None,
            data: vec![Piece::Shared(rendering.whole.clone())],
            census: Census {
                gpus: snapshot.gpus.len(),
                nodes: snapshot.node_count,
            },
        };
    };

    let at = positions(snapshot, &names);
    let (head, tail): (&'static [u8], Vec<u8>) = match view {
        View::Metrics => (b"{\"gpus\":[", b"]}".to_vec()),
        View::Nodes => (b"{\"nodes\":[", b"]}".to_vec()),
        View::Utilization => (
            b"{\"gpus\":[",
            average_tail(rendered.utilization_average(&at)),
        ),
    };
    let data = select(rendering, &at, head, tail);
    filtered(snapshot, view.name(), names, &at, data)
}

fn latest(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.store.snapshot().ok_or(ApiError::NoData)
}

fn filtered(
    snapshot: &Snapshot,
    view: &'static str,
    names: Vec<NodeName>,
    at: &[usize],
    data: Vec<Piece>,
) -> Answer {
    let gpus = at.iter().map(|&i| snapshot.nodes[i].gpu_count).sum();
    Answer {
        view,
        nodes: Some(names),
        data,
        census: Census {
            gpus,
            nodes: at.len(),
        },
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
fn select(rendering: &Rendering, at: &[usize], head: &'static [u8], tail: Vec<u8>) -> Vec<Piece> {
    let mut data = Vec::with_capacity(at.len() * 2 + 2);
    data.push(Piece::text(head));
    for (n, &i) in at.iter().enumerate() {
        if n > 0 {
            data.push(Piece::text(b","));
        }
        data.push(Piece::Shared(rendering.per_node[i].clone()));
    }
    data.push(Piece::Literal(tail.into()));
    data
}
