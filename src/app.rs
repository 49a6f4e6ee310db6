//! Start-up and shutdown: binds the listener, runs the poller and the server, and drains both.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, HttpSettings};
use crate::config::Config;
use crate::exporter::NVIDIA_SMI;
use crate::poller::Poller;
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
        };
        log_start(&config, &client);

        Ok(Application {
            router: api::router(state, &settings),
            poller: Poller::new(
                client,
                &NVIDIA_SMI,
                config.poller.node_labels,
                config.poller.interval,
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
        let stop = cancel.clone();
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        tracker.spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(error = %error, "http server failed");
            }
        });
        tracker.close();

        shutdown.await;
        cancel.cancel();
        drain(tracker, self.shutdown_grace).await;
    }
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
