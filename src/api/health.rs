//! Health for people and dashboards, and the two Kubernetes probes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;

use super::envelope::{Envelope, ErrorBody, answer, timestamp};
use super::params::NoParams;
use super::{ApiError, AppState};
use crate::snapshot::{PollStatus, Snapshot, StatusCounts};

/// The service's verdict on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fresh data from a complete poll.
    Ok,
    /// Data is served, but the latest poll failed or was partial, or the data is stale.
    Degraded,
    /// Nothing to serve yet.
    Unavailable,
}

#[derive(Serialize)]
struct Health<'a> {
    status: Status,
    prometheus: PrometheusHealth<'a>,
    gpus: Option<StatusCounts>,
}

#[derive(Serialize)]
struct PrometheusHealth<'a> {
    url: &'a str,
    reachable: Option<bool>,
    last_success_at: Option<String>,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
struct Probe {
    status: &'static str,
}

/// `GET /api/health`: 200 while there is data to serve, 503 before.
///
/// Unlike the other endpoints it carries `data` even when unavailable, because there the
/// data is the diagnosis: whether Prometheus is reachable and what the last error was.
pub async fn health(State(state): State<Arc<AppState>>, _: NoParams) -> Response {
    let snapshot = state.store.snapshot();
    let poll = state.store.status();
    let status = verdict(snapshot.as_deref(), &poll, &state);

    let data = Health {
        status,
        prometheus: PrometheusHealth {
            url: &state.prometheus_url,
            reachable: poll.reachable,
            last_success_at: poll.last_success_at.map(timestamp),
            last_error: poll.last_error.as_deref(),
        },
        gpus: snapshot.as_deref().map(|s| s.statuses),
    };
    match status {
        Status::Ok => answer(&state, snapshot.as_deref(), data, OK.to_owned()),
        Status::Degraded => answer(&state, snapshot.as_deref(), data, DEGRADED.to_owned()),
        Status::Unavailable => unavailable(data),
    }
}

const OK: &str = "serving fresh data from complete polls";
const DEGRADED: &str = "serving data, but the latest poll failed, was partial, or the data is \
     stale, or no GPU has live readings";

/// 503 with the diagnosis in `data` and the same error as every other endpoint gives then.
fn unavailable(data: Health<'_>) -> Response {
    let error = ApiError::NoData;
    let envelope = Envelope {
        success: false,
        data: Some(data),
        message: error.to_string(),
        error: Some(ErrorBody {
            code: error.code(),
            message: error.to_string(),
        }),
        snapshot: None,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(envelope)).into_response()
}

fn verdict(snapshot: Option<&Snapshot>, poll: &PollStatus, state: &AppState) -> Status {
    let Some(snapshot) = snapshot else {
        return Status::Unavailable;
    };
    let stale =
        Instant::now().saturating_duration_since(snapshot.collected_instant) > state.stale_after;
    // Polls that succeed while every exporter is down or failing bring no live reading at
    // all; that is no more "ok" than a poll that fails.
    let counts = snapshot.statuses;
    let nothing_live = counts.ok == 0 && counts.stale + counts.missing > 0;
    if poll.healthy() && snapshot.complete() && !stale && !nothing_live {
        Status::Ok
    } else {
        Status::Degraded
    }
}

/// `GET /livez`: 200 for as long as the process can answer at all.
pub async fn livez(State(state): State<Arc<AppState>>, _: NoParams) -> Response {
    let probe = Probe { status: "alive" };
    answer(&state, None, probe, "alive".to_owned())
}

/// `GET /readyz`: 200 once there is a snapshot to serve, so that Kubernetes sends no traffic
/// to a replica that could only answer 503.
pub async fn readyz(State(state): State<Arc<AppState>>, _: NoParams) -> Result<Response, ApiError> {
    let snapshot = state.store.snapshot().ok_or(ApiError::NoData)?;
    let probe = Probe { status: "ready" };
    Ok(answer(&state, Some(&snapshot), probe, "ready".to_owned()))
}
