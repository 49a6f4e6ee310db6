//! The HTTP API: every answer comes from the latest snapshot, never from Prometheus.
//!
//! [`router`] builds the whole application, middleware included, so that tests drive exactly
//! what production serves.

mod body;
mod cache;
mod envelope;
mod error;
mod gpu;
mod health;
mod params;
mod respond;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use envelope::{Envelope, ErrorBody, SnapshotMeta};
pub use error::{ApiError, panic_text};
pub use stream::Subscribers;

use crate::config::AllowedOrigins;
use crate::snapshot::Store;

/// What every handler can see: the store, and the settings the envelope reports.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Latest snapshot and poll status.
    pub store: Arc<Store>,
    /// `poller.interval`, reported in every envelope.
    pub poll_interval: Duration,
    /// `poller.stale_after`, against which each answer's age is judged.
    pub stale_after: Duration,
    /// Prometheus's base URL without credentials, for the health endpoint.
    pub prometheus_url: String,
    /// Open event streams.
    pub subscribers: Arc<Subscribers>,
    /// `server.max_stream_subscribers`.
    pub max_stream_subscribers: usize,
    /// Fires on shutdown, so that event streams end and connections can drain.
    pub shutdown: CancellationToken,
}

/// Settings of the HTTP layer itself.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Longest time one request may take.
    pub request_timeout: Duration,
    /// Origins CORS lets read responses.
    pub cors_allowed_origins: AllowedOrigins,
}

/// The whole application: routes, fallbacks and middleware.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let timeout = settings.request_timeout;
    let middleware = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(cors(&settings.cors_allowed_origins));

    let answered_at_once = Router::new()
        .route("/api/v1/gpu/metrics", get(gpu::metrics))
        .route("/api/v1/gpu/nodes", get(gpu::nodes))
        .route("/api/v1/gpu/nodes/{name}", get(gpu::node))
        .route("/api/v1/gpu/utilization", get(gpu::utilization))
        .route("/api/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_| async move {
                    ApiError::Timeout(timeout)
                }))
                .timeout(timeout),
        );

    // The stream is open for as long as the client stays, so the request timeout, which
    // was added above, does not apply to it.
    answered_at_once
        .route("/api/v1/gpu/stream", get(stream::stream))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// A DEBUG span per request carrying the route pattern, never the query string or headers,
/// which is where tokens would be.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::debug_span!("request", method = %request.method(), route)
}

/// Read-only API: GET and HEAD from the allowed origins, never with credentials.
fn cors(origins: &AllowedOrigins) -> CorsLayer {
    let allow_origin = match origins {
        AllowedOrigins::Any => AllowOrigin::any(),
        AllowedOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::HEAD,
            axum::http::Method::OPTIONS,
        ])
        .allow_credentials(false)
}
