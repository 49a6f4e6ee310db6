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
mod request_line;
mod respond;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use envelope::{Envelope, ErrorBody, SnapshotMeta};
pub use error::{ApiError, panic_text};
pub use stream::Subscribers;

use request_line::RequestLineLimit;

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
    /// `server.max_concurrent_requests`.
    pub max_concurrent_requests: usize,
}

/// The longest request line, method and URI together, that is answered; longer ones get 414.
/// Dashboards send a path and a few short parameters, so this is generous, and it bounds
/// what one request can make the service parse and match.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

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
        .layer(cors(&settings.cors_allowed_origins))
        .layer(RequestLineLimit::new(MAX_REQUEST_LINE));

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
    let routes = answered_at_once
        .route("/api/v1/gpu/stream", get(stream::stream))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    // Shared behind one `Arc`: axum hands every request its own copy of the state, and the
    // state's URL and cancellation token are not free to clone.
    limit_concurrency(routes, settings.max_concurrent_requests)
        .layer(middleware)
        .with_state(Arc::new(state))
}

/// Answers requests beyond `max` in flight with 503 `overloaded` at once instead of queueing
/// them, so that a flood is refused cheaply rather than growing memory and latency for all.
///
/// One semaphore is shared by every route, since axum wraps each route separately. A request
/// holds its permit until its handler returns the response head, not while the body is
/// sent. So an open event stream does not count: it is answered at once and then only waits
/// for snapshots, and `server.max_stream_subscribers` bounds streams on its own. Counting
/// them would let idle subscribers crowd out the requests this limit is there to protect.
/// Time spent writing a body to a slow reader is not counted either; the bodies are
/// prerendered and shared, so that costs a connection, not memory per request.
fn limit_concurrency<S>(routes: Router<S>, max: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                ApiError::Overloaded(max)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(max)),
    )
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
///
/// Only an allowlist makes answers differ by `Origin`, so only then do they say `Vary:
/// Origin`; the preflight answer is the same for every request method and header asked for.
fn cors(origins: &AllowedOrigins) -> CorsLayer {
    let (allow_origin, vary) = match origins {
        AllowedOrigins::Any => (AllowOrigin::any(), vec![]),
        AllowedOrigins::List(list) => (
            AllowOrigin::list(list.iter().cloned()),
            vec![header::ORIGIN],
        ),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .vary(vary)
        // What a dashboard on another origin needs to revalidate and resume by itself: send
        // the conditional and resume headers, and read the validators and back-off hints.
        .allow_headers([
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::ETAG, header::LAST_MODIFIED, header::RETRY_AFTER])
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::HEAD,
            axum::http::Method::OPTIONS,
        ])
        .allow_credentials(false)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use axum::http::{StatusCode, header};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    fn get_request(uri: &str) -> Request {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    /// `/held` enters, says so, and answers only when released; `/quick` answers at once.
    fn held_and_quick(entered: Arc<Notify>, release: Arc<Notify>) -> Router {
        let held = move || async move {
            entered.notify_one();
            release.notified().await;
            "released"
        };
        let routes = Router::new()
            .route("/held", get(held))
            .route("/quick", get(|| async { "quick" }));
        limit_concurrency(routes, 1)
    }

    #[tokio::test]
    async fn a_request_beyond_the_limit_gets_503_overloaded_with_retry_after_until_one_ends() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let app = held_and_quick(Arc::clone(&entered), Arc::clone(&release));
        let in_flight = tokio::spawn(app.clone().oneshot(get_request("/held")));
        entered.notified().await;

        let shed = app
            .clone()
            .oneshot(get_request("/quick"))
            .await
            .expect("infallible");
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let body = to_bytes(shed.into_body(), 4096).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(r#""code":"overloaded""#), "{text}");

        release.notify_one();
        let held = in_flight.await.expect("task").expect("infallible");
        assert_eq!(held.status(), StatusCode::OK);
        let quick = app
            .oneshot(get_request("/quick"))
            .await
            .expect("infallible");
        assert_eq!(quick.status(), StatusCode::OK);
    }
}
