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
    /// What the envelope's `message` counts. Kept as numbers so that a 304, which has no
    /// body, formats nothing.
    pub census: Census,
}

/// How many GPUs on how many nodes an answer covers: "8 GPUs on 2 nodes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// GPUs in the answer.
    pub gpus: usize,
    /// Named nodes in the answer.
    pub nodes: usize,
}

impl std::fmt::Display for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} GPU{} on {} node{}",
            self.gpus,
            plural(self.gpus),
            self.nodes,
            plural(self.nodes)
        )
    }
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
        &snapshot.tag,
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
    let pieces = body::envelope(answer.data, &answer.census.to_string(), &meta);

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
