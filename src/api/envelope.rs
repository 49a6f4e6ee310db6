//! The one JSON shape of every response, and the per-request freshness it reports.

use std::time::SystemTime;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::time::Instant;

use super::AppState;
use crate::snapshot::{QueryFailure, Snapshot};

/// `{"success", "data", "message", "error", "snapshot"}`.
///
/// `snapshot` describes the data in `data`; it is `null` when the response carries no data
/// from a snapshot (errors, and everything before the first poll succeeds).
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T> {
    /// True for an answer, false for an error.
    pub success: bool,
    /// The answer.
    pub data: Option<T>,
    /// A one-line summary for people.
    pub message: String,
    /// What went wrong, on failure.
    pub error: Option<ErrorBody>,
    /// Where the data came from and how old it is.
    pub snapshot: Option<SnapshotMeta<'a>>,
}

/// `error` of a failed response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code, such as `not_found`.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// `snapshot` of a response: generation, time, and freshness at the moment of answering.
#[derive(Debug, Serialize)]
pub struct SnapshotMeta<'a> {
    /// Snapshots published so far; this one is the latest.
    pub generation: u64,
    /// When the poll that made it finished, RFC 3339 in UTC.
    pub collected_at: &'a str,
    /// Seconds since then, at the moment of this response.
    pub age_seconds: f64,
    /// Whether that age is past `poller.stale_after`.
    pub stale: bool,
    /// `poller.interval` in seconds.
    pub poll_interval_seconds: f64,
    /// Whether every query of that poll succeeded.
    pub complete: bool,
    /// The queries of that poll that failed.
    pub errors: &'a [QueryFailure],
}

impl<'a> SnapshotMeta<'a> {
    /// Describes `snapshot` as seen now.
    pub fn of(snapshot: &'a Snapshot, state: &AppState) -> Self {
        let age = Instant::now().saturating_duration_since(snapshot.collected_instant);
        SnapshotMeta {
            generation: snapshot.generation,
            collected_at: &snapshot.collected_at_text,
            age_seconds: (age.as_secs_f64() * 1000.0).round() / 1000.0,
            stale: age > state.stale_after,
            poll_interval_seconds: state.poll_interval.as_secs_f64(),
            complete: snapshot.complete(),
            errors: &snapshot.failures,
        }
    }
}

/// RFC 3339 with milliseconds, in UTC: `2026-12-03T10:00:00.123Z`.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// A 200 answer with data drawn from `snapshot`.
pub fn answer<T: Serialize>(
    state: &AppState,
    snapshot: Option<&Snapshot>,
    data: T,
    message: String,
) -> Response {
    let envelope = Envelope {
        success: true,
        data: Some(data),
        message,
        error: None,
        snapshot: snapshot.map(|s| SnapshotMeta::of(s, state)),
    };
    (StatusCode::OK, Json(envelope)).into_response()
}

/// A failure: no data, an error code and message, and the matching status.
pub fn failure(status: StatusCode, code: &'static str, message: String) -> Response {
    let envelope: Envelope<'_, ()> = Envelope {
        success: false,
        data: None,
        message: message.clone(),
        error: Some(ErrorBody { code, message }),
        snapshot: None,
    };
    (status, Json(envelope)).into_response()
}
