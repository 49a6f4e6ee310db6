//! Synthetic nvidia_gpu_exporter pages at cluster scale, for `benches/load.sh`.
//!
//! Real clusters have one exporter per node; a load test of 1,000 nodes does not need 1,000
//! processes or ports, so this serves the nodes from a few targets (one port each) and
//! writes the node label into the page itself, to be kept with `honor_labels: true`.
//! Readings move a little on every scrape so that each poll publishes new data.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use tokio::net::TcpListener;

/// Command-line flags.
#[derive(Debug, Parser)]
struct Args {
    /// Port of the first target; target i listens on base-port + i, on 127.0.0.1.
    #[arg(long, default_value_t = 19935)]
    base_port: u16,
    /// Number of targets (ports).
    #[arg(long, default_value_t = 8)]
    targets: usize,
    /// Simulated nodes, spread over the targets.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: usize,
}

/// One target: which nodes it serves, and how many times it has been scraped.
struct Target {
    nodes: Vec<usize>,
    gpus_per_node: usize,
    scrapes: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut servers = tokio::task::JoinSet::new();
    for t in 0..args.targets {
        let target = Arc::new(Target {
            nodes: (t..args.nodes).step_by(args.targets).collect(),
            gpus_per_node: args.gpus_per_node,
            scrapes: AtomicU64::new(0),
        });
        let port = args.base_port + t as u16;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let app = Router::new()
            .route("/metrics", get(page))
            .with_state(target);
        servers.spawn(async move { axum::serve(listener, app).await });
    }
    eprintln!(
        "bench-exporter: {} GPUs on {} nodes from {} targets at 127.0.0.1:{}..",
        args.nodes * args.gpus_per_node,
        args.nodes,
        args.targets,
        args.base_port
    );
    while let Some(result) = servers.join_next().await {
        result??;
    }
    Ok(())
}

const GAUGES: [&str; 6] = [
    "nvidia_smi_utilization_gpu_ratio",
    "nvidia_smi_memory_used_bytes",
    "nvidia_smi_memory_total_bytes",
    "nvidia_smi_temperature_gpu",
    "nvidia_smi_power_draw_watts",
    "nvidia_smi_enforced_power_limit_watts",
];

async fn page(State(target): State<Arc<Target>>) -> String {
    let scrape = target.scrapes.fetch_add(1, Ordering::Relaxed);
    let mut text = String::with_capacity(target.nodes.len() * target.gpus_per_node * 1200);
    text.push_str("# TYPE nvidia_smi_gpu_info gauge\n");
    for (node, gpu) in gpus(&target) {
        let _ = writeln!(
            text,
            "nvidia_smi_gpu_info{{driver_version=\"590.48.01\",index=\"{gpu}\",name=\"NVIDIA H100 80GB HBM3\",node=\"gpu-node-{node:04}\",pci_bus_id=\"00000000:{:02X}:00.0\",uuid=\"{}\"}} 1",
            gpu * 16,
            uuid(node, gpu)
        );
    }
    for (m, metric) in GAUGES.iter().enumerate() {
        let _ = writeln!(text, "# TYPE {metric} gauge");
        for (node, gpu) in gpus(&target) {
            let wave = ((node * 7 + gpu * 3 + scrape as usize) % 100) as f64 / 100.0;
            let value = match m {
                0 => wave,
                1 => (wave * 80.0e9).round(),
                2 => 85_520_809_984.0,
                3 => 35.0 + wave * 40.0,
                4 => 70.0 + wave * 600.0,
                _ => 700.0,
            };
            let _ = writeln!(
                text,
                "{metric}{{node=\"gpu-node-{node:04}\",uuid=\"{}\"}} {value}",
                uuid(node, gpu)
            );
        }
    }
    text
}

fn gpus(target: &Target) -> impl Iterator<Item = (usize, usize)> + '_ {
    target
        .nodes
        .iter()
        .flat_map(move |&node| (0..target.gpus_per_node).map(move |gpu| (node, gpu)))
}

fn uuid(node: usize, gpu: usize) -> String {
    format!("6b1f2f7a-1b7e-4c1e-{node:04x}-{gpu:012x}")
}
