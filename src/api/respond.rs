//! Turning pre-rendered fragments into a response: negotiation, revalidation, envelope.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::AppState;
use super::body::{self, Encoding, Piece};
use super::cache::{Validators, negotiate};
use super::envelope::SnapshotMeta;
use crate::snapshot::{NodeName, Snapshot};

/// What a GPU endpoint answers, before encoding.
#[derive(Debug)]
pub struct Answer {
    /// Names the view in the ETag.
    pub view: &'static str,
    /// The node filter, which gets its own ETag.
    pub nodes: Option<Vec<NodeName>>,
    /// `data`, as fragments rendered at publish time and short literals.
    pub data: Vec<Piece>,
    /// The envelope's `message`.
    pub message: String,
}

/// Answers `request` with `answer` from `snapshot`: a 304 when the client's copy is current,
/// else the envelope in the best encoding the client accepts.
///
/// Per request this writes only the envelope's last few hundred bytes (message, freshness);
/// `data` is shared with every other request for the same snapshot.
pub fn respond(
    state: &AppState,
    snapshot: &Snapshot,
    request: &HeaderMap,
    answer: Answer,
) -> Response {
    let encoding = negotiate(request);
    let validators = Validators::new(
        snapshot.generation,
        answer.view,
        answer.nodes.as_deref(),
        encoding,
        (snapshot.collected_at, &snapshot.last_modified),
        until_next_poll(state, snapshot),
    );

    let mut response = if validators.not_modified(request) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        full(state, snapshot, answer, encoding)
    };
    validators.apply(response.headers_mut());
    response
}

fn full(state: &AppState, snapshot: &Snapshot, answer: Answer, encoding: Encoding) -> Response {
    let meta = SnapshotMeta::of(snapshot, state);
    let pieces = body::envelope(answer.data, &answer.message, &meta);

    let mut response = Response::new(axum::body::Body::new(body::encode(&pieces, encoding)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if encoding == Encoding::Gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Time until the poll after this snapshot's is due, zero when overdue.
pub fn until_next_poll(state: &AppState, snapshot: &Snapshot) -> Duration {
    (snapshot.collected_instant + state.poll_interval).saturating_duration_since(Instant::now())
}
