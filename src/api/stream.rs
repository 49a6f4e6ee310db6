//! `GET /api/v1/gpu/stream`: Server-Sent Events, one per snapshot generation.
//!
//! An event is the same envelope a GET would return, framed as SSE and assembled from the
//! fragments the snapshot rendered at publish time, so a thousand subscribers share one
//! rendering. A subscriber is only ever offered the newest snapshot: one that reads slowly
//! skips generations rather than queueing them, and nothing is buffered per subscriber
//! beyond the event being written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

use super::body::envelope;
use super::envelope::SnapshotMeta;
use super::gpu::{View, answer};
use super::params::Params;
use super::{ApiError, AppState};
use crate::snapshot::{NodeName, Snapshot};

/// Comment lines keep proxies from closing a stream that has had no event for a while.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Counts open streams against `server.max_stream_subscribers`.
#[derive(Debug, Default)]
pub struct Subscribers {
    open: AtomicUsize,
}

impl Subscribers {
    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A place among the subscribers, given back when the stream is dropped.
#[derive(Debug)]
struct Slot(Arc<Subscribers>);

impl Slot {
    fn take(subscribers: &Arc<Subscribers>, limit: usize) -> Option<Slot> {
        let taken = subscribers
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        taken.ok().map(|_| Slot(Arc::clone(subscribers)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `?view=metrics|nodes|utilization&node=a,b`; `Last-Event-ID` resumes without a repeat.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&["view", "node"])?;
    let view = View::parse(params.single("view")?)?;
    let nodes = params.nodes()?;
    let slot = Slot::take(&state.subscribers, state.max_stream_subscribers)
        .ok_or(ApiError::TooManySubscribers(state.max_stream_subscribers))?;

    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let subscription = Subscription::new(state, view, nodes, last_event, slot);

    let mut response = Response::new(Body::from_stream(subscription.into_stream()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One subscriber's position: what it has been sent, and what wakes it.
struct Subscription {
    state: Arc<AppState>,
    view: View,
    nodes: Option<Vec<NodeName>>,
    last_sent: Option<u64>,
    generations: watch::Receiver<u64>,
    keepalive: Interval,
    _slot: Slot,
}

impl Subscription {
    fn new(
        state: Arc<AppState>,
        view: View,
        nodes: Option<Vec<NodeName>>,
        last_event: Option<u64>,
        slot: Slot,
    ) -> Self {
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Subscription {
            generations: state.store.subscribe(),
            state,
            view,
            nodes,
            last_sent: last_event,
            keepalive,
            _slot: slot,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        let frames = futures::stream::unfold(self, |mut sub| async move {
            let frames = sub.next_frames().await?;
            Some((futures::stream::iter(frames.into_iter().map(Ok)), sub))
        });
        futures::StreamExt::flatten(frames)
    }

    /// Waits for the next thing to send: the newest snapshot if it is one this subscriber
    /// has not had, else a keep-alive comment. `None` ends the stream (shutdown).
    async fn next_frames(&mut self) -> Option<Vec<Bytes>> {
        loop {
            if let Some(snapshot) = self.unsent() {
                self.last_sent = Some(snapshot.generation);
                return Some(self.event(&snapshot));
            }
            tokio::select! {
                _ = self.state.shutdown.cancelled() => return None,
                changed = self.generations.changed() => changed.ok()?,
                _ = self.keepalive.tick() => return Some(vec![Bytes::from_static(b": keep-alive\n\n")]),
            }
        }
    }

    fn unsent(&mut self) -> Option<Arc<Snapshot>> {
        self.generations.mark_unchanged();
        let snapshot = self.state.store.snapshot()?;
        let newer = self
            .last_sent
            .is_none_or(|sent| snapshot.generation != sent);
        newer.then_some(snapshot)
    }

    /// `id:`, `event:` and one `data:` line holding the envelope, whose JSON has no newline.
    fn event(&self, snapshot: &Snapshot) -> Vec<Bytes> {
        let answer = answer(snapshot, self.view, self.nodes.clone());
        let meta = SnapshotMeta::of(snapshot, &self.state);
        let pieces = envelope(answer.data, &answer.census.to_string(), &meta);

        let head = format!("id: {}\nevent: snapshot\ndata: ", snapshot.generation);
        let mut frames = Vec::with_capacity(pieces.len() + 2);
        frames.push(Bytes::from(head));
        frames.extend(pieces.iter().map(|p| p.raw().clone()));
        frames.push(Bytes::from_static(b"\n\n"));
        frames
    }
}
