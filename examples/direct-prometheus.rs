//! A dashboard's alternative to this service, for `benches/load.sh`: every request queries
//! Prometheus, joins the answers and serializes them, as a backend without a cache would.
//! It reuses the service's own client and join, so the comparison measures the caching and
//! nothing else.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use gpu_monitoring_api::exporter::NVIDIA_SMI;
use gpu_monitoring_api::poller::{PollOutcome, poll_once};
use gpu_monitoring_api::prometheus::Client;

/// Command-line flags.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18082")]
    listen: String,
    /// Base URL of Prometheus.
    #[arg(long)]
    prometheus_url: url::Url,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.prometheus_url, Duration::from_secs(30))?;
    let app = Router::new()
        .route("/api/v1/gpu/metrics", get(metrics))
        .with_state(Arc::new(client));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics(State(client): State<Arc<Client>>) -> Response {
    let labels = ["node".to_owned(), "instance".to_owned()];
    match poll_once(&client, &NVIDIA_SMI, &labels, Duration::from_secs(600)).await {
        PollOutcome::Joined { joined, .. } => {
            let mut gpus: Vec<_> = joined.gpus.into_iter().map(|seen| seen.gpu).collect();
            gpus.sort_by(|a, b| (&a.node, a.index).cmp(&(&b.node, b.index)));
            let body = serde_json::json!({"success": true, "data": {"gpus": gpus}});
            axum::Json(body).into_response()
        }
        PollOutcome::Failed { .. } => StatusCode::BAD_GATEWAY.into_response(),
    }
}
