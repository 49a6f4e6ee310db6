//! Start-up and shutdown: binds the listener, runs the poller and the server, and drains both.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, HttpSettings};
use crate::config::Config;
use crate::exporter::NVIDIA_SMI;
use crate::poller::{Ageing, Poller};
use crate::prometheus::{self, Client};
use crate::snapshot::Store;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `server.listen`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the prometheus client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A bound, not yet running service. Binding first lets callers learn the real port
/// (`listen = "127.0.0.1:0"`) before any request is sent.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    http: http1::Builder,
    poller: Poller,
    shutdown_grace: Duration,
    cancel: CancellationToken,
}

impl Application {
    /// Binds the listener and wires the parts together.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;

        let client = prometheus_client(&config)?;
        let store = Arc::new(Store::new());
        let cancel = CancellationToken::new();
        let state = AppState {
            store: Arc::clone(&store),
            poll_interval: config.poller.interval,
            stale_after: config.poller.stale_after,
            prometheus_url: client.redacted_url().to_owned(),
            subscribers: Arc::default(),
            max_stream_subscribers: config.server.max_stream_subscribers,
            shutdown: cancel.clone(),
        };
        let settings = HttpSettings {
            request_timeout: config.server.request_timeout,
            cors_allowed_origins: config.server.cors_allowed_origins.clone(),
            max_concurrent_requests: config.server.max_concurrent_requests,
        };
        log_start(&config, &client);

        Ok(Application {
            router: api::router(state, &settings),
            http: http1(config.server.header_read_timeout),
            poller: Poller::new(
                client,
                &NVIDIA_SMI,
                config.poller.node_labels,
                config.poller.interval,
                Ageing {
                    gpu_stale_after: config.poller.gpu_stale_after,
                    missing_after: config.poller.missing_after,
                },
                store,
            ),
            listener,
            shutdown_grace: config.server.shutdown_grace,
            cancel,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// the poller finish, and returns; work still running after `server.shutdown_grace` is
    /// abandoned so that the process always exits in bounded time.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(address = %self.local_addr(), "listening");
        let cancel = self.cancel;
        let tracker = TaskTracker::new();

        tracker.spawn(self.poller.run(cancel.child_token()));
        tracker.spawn(serve(self.listener, self.router, self.http, cancel.clone()));
        tracker.close();

        shutdown.await;
        cancel.cancel();
        drain(tracker, self.shutdown_grace).await;
    }
}

/// The most bytes of request line and headers read before hyper answers 431 and closes the
/// connection. It has to exceed [`api::MAX_REQUEST_LINE`] by enough for ordinary headers, so
/// that an over-long URI still reaches the router and gets its 414 envelope; past it, nothing
/// a client sends before its headers end is buffered.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// HTTP/1.1 with keep-alive, as `axum::serve` speaks it, plus the limits it cannot set: a
/// deadline for the request head, so that a client trickling or never finishing its headers
/// does not hold a connection forever, and a bound on the bytes buffered for that head.
///
/// hyper starts the header deadline whenever it waits for a request, so it is also the time
/// a keep-alive connection may sit idle between requests.
fn http1(header_read_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
}

/// Accepts connections until `stop` fires, then stops accepting and lets each connection
/// finish the request it is answering; idle keep-alive connections close at once. Returns
/// when every connection has closed.
async fn serve(
    mut listener: TcpListener,
    router: axum::Router,
    http: http1::Builder,
    stop: CancellationToken,
) {
    let connections = GracefulShutdown::new();
    loop {
        // axum's accept retries, after a pause, errors such as running out of descriptors.
        let (stream, _) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = stop.cancelled() => break,
        };
        // A body goes out in several writes (the shared bytes, then this response's own
        // tail); with Nagle's algorithm the last small one waits for the client's delayed
        // ACK, some 40 ms, so small writes are sent at once.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot disable Nagle's algorithm on a connection");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        // Not fire-and-forget: `connections` watches it, and shutdown waits for it below.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection closed with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

async fn drain(tracker: TaskTracker, grace: Duration) {
    match tokio::time::timeout(grace, tracker.wait()).await {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "in-flight work did not finish within the shutdown grace period; exiting anyway"
        ),
    }
}

fn prometheus_client(config: &Config) -> Result<Client, reqwest::Error> {
    let settings = &config.prometheus;
    let options = prometheus::Options {
        max_response_bytes: settings.max_response_bytes,
        auth: settings.auth.clone(),
        ca_certificates: settings.ca_certificates.clone(),
        insecure_skip_verify: settings.insecure_skip_verify,
    };
    Client::with_options(&settings.url, settings.query_timeout, options)
}

fn log_start(config: &Config, client: &Client) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        prometheus = client.redacted_url(),
        interval = %humantime::format_duration(config.poller.interval),
        query_timeout = %humantime::format_duration(config.prometheus.query_timeout),
        stale_after = %humantime::format_duration(config.poller.stale_after),
        exporter = NVIDIA_SMI.name,
        "starting"
    );
    if config.prometheus.insecure_skip_verify {
        tracing::warn!(
            prometheus = client.redacted_url(),
            "prometheus.insecure_skip_verify is set: the server certificate is not verified, so anyone on the path can read the credentials and forge the data"
        );
    }
}
