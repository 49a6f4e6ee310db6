//! Test harness: a real Prometheus, exporter pages for it to scrape, and the service.
#![allow(dead_code)]

pub mod fake_prometheus;
pub mod prometheus;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use figment::providers::{Format, Toml};
use gpu_monitoring_api::Application;
use gpu_monitoring_api::config::{self, Config};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `page` at `/metrics` on a free loopback port, like one node's exporter.
pub async fn serve_exporter_page(page: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let addr = listener.local_addr().expect("exporter address");
    let app = Router::new().route("/metrics", get(move || async move { page }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An exporter page whose content a test can change, and which can die.
pub struct ExporterPage {
    pub addr: SocketAddr,
    page: std::sync::Arc<std::sync::Mutex<String>>,
    stop: CancellationToken,
}

impl ExporterPage {
    /// Serves `page` at `/metrics` on a free loopback port.
    pub async fn serve(page: &str) -> ExporterPage {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let addr = listener.local_addr().expect("exporter address");
        let shared = std::sync::Arc::new(std::sync::Mutex::new(page.to_owned()));
        let current = std::sync::Arc::clone(&shared);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let page = current.lock().expect("page lock").clone();
                async move { page }
            }),
        );
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        ExporterPage {
            addr,
            page: shared,
            stop,
        }
    }

    /// From the next scrape on, the page reads `page`.
    pub fn set(&self, page: &str) {
        *self.page.lock().expect("page lock") = page.to_owned();
    }

    /// The exporter dies: its port refuses connections from now on.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A configuration from the built-in defaults with `overrides` (TOML) on top.
pub fn config(overrides: &str) -> Config {
    let figment = config::defaults().merge(Toml::string(overrides));
    Config::from_figment(&figment, None).expect("test configuration is valid")
}

/// The service, running in this test's runtime on a free port until dropped.
pub struct Service {
    pub base: String,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Service {
    /// Starts the service with `listen = "127.0.0.1:0"` and the given overrides.
    /// The listen address is a layer of its own, so that `overrides` may have a `[server]`
    /// table too.
    pub async fn start(overrides: &str) -> Service {
        let figment = config::defaults()
            .merge(Toml::string(overrides))
            .merge(Toml::string("[server]\nlisten = \"127.0.0.1:0\"\n"));
        let config = Config::from_figment(&figment, None).expect("test configuration is valid");
        let app = Application::bind(config).await.expect("service binds");
        let addr = app.local_addr();
        let base = format!("http://{addr}");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(app.run_until(async move { stopped.cancelled().await }));
        Service { base, addr, stop }
    }

    /// GETs `path` and returns the status and the parsed JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("service answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body arrives");
        let body = serde_json::from_slice(&bytes).expect("body is JSON");
        (status, body)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Calls `probe` until it returns `Some`, or panics after `limit` saying what was awaited.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lines the binary writes to stderr.
pub type LogLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Reads the binary's log until its "listening" line and returns the address it names.
pub async fn listening_address(logs: &mut LogLines) -> String {
    let address = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = logs.next_line().await.expect("log line") {
            if let Some((_, rest)) = line.split_once("address=") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    });
    address
        .await
        .expect("the service logs its address in time")
        .expect("a listening line")
}

/// Sends SIGTERM to the binary, as Kubernetes does to stop a pod.
pub async fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success(), "kill -TERM {pid}");
}
