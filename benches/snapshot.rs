//! The hot paths, per cluster size, each beside a reference in the same run:
//! - building a snapshot from Prometheus's answers (decode, join, render, compress), beside
//!   an untyped `serde_json::Value` parse of the same bytes;
//! - serving one request from a built snapshot through the whole router (identity, gzip,
//!   304, one node), beside a router that answers the same bytes from memory.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use bytes::Bytes;
use gpu_monitoring_api::api::{self, AppState, HttpSettings};
use gpu_monitoring_api::config::AllowedOrigins;
use gpu_monitoring_api::snapshot::Store;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpu_monitoring_api::exporter::{NVIDIA_SMI, Query};
use gpu_monitoring_api::poller::{Ageing, Memory, join_answers};
use gpu_monitoring_api::prometheus::decode;
use gpu_monitoring_api::snapshot::Snapshot;

const SIZES: [usize; 3] = [16, 800, 8_000];
const GPUS_PER_NODE: usize = 8;

/// One `/api/v1/query` body per query of the family, `gpus` series each, as Prometheus
/// writes them (labels from the scrape config included), and `up` for every node.
fn responses(gpus: usize) -> Vec<(Query, Vec<u8>)> {
    NVIDIA_SMI
        .queries()
        .map(|query| (query, response(query, gpus).into_bytes()))
        .collect()
}

fn response(query: Query, gpus: usize) -> String {
    let series: Vec<String> = match query {
        Query::Targets => (0..gpus.div_ceil(GPUS_PER_NODE))
            .map(|node| target(node * GPUS_PER_NODE))
            .collect(),
        _ => (0..gpus)
            .map(|i| series(NVIDIA_SMI.label(query), i))
            .collect(),
    };
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

fn series(metric: &str, i: usize) -> String {
    let (node, index) = (i / GPUS_PER_NODE, i % GPUS_PER_NODE);
    let info = if metric.ends_with("_info") {
        format!(
            r#","name":"NVIDIA H100 80GB HBM3","driver_version":"590.48.01","index":"{index}","pci_bus_id":"00000000:{index:02X}:00.0""#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"metric":{{"__name__":"{metric}","instance":"10.0.{}.{}:9835","job":"nvidia-gpu-exporter","node":"gpu-node-{node:04}","uuid":"6b1f2f7a-1b7e-4c1e-9d7a-{i:012x}"{info}}},"value":[1796292000.123,"{}"]}}"#,
        node / 256,
        node % 256,
        if info.is_empty() {
            (i % 97) as f64 * 1.5
        } else {
            1_796_292_000.0
        }
    )
}

fn target(first_gpu: usize) -> String {
    let node = first_gpu / GPUS_PER_NODE;
    format!(
        r#"{{"metric":{{"__name__":"up","instance":"10.0.{}.{}:9835","job":"nvidia-gpu-exporter","node":"gpu-node-{node:04}"}},"value":[1796292000.123,"1"]}}"#,
        node / 256,
        node % 256,
    )
}

/// What one poll does with the answers: decode, join, merge with what the previous polls
/// knew, then sort, summarize, render and compress.
fn build(bodies: &[(Query, Vec<u8>)], memory: &mut Memory) -> Snapshot {
    let labels = ["node".to_owned(), "instance".to_owned()];
    let decoded: Vec<_> = bodies
        .iter()
        .map(|(query, body)| (*query, decode(body).expect("generated bodies are valid")))
        .collect();
    let joined = join_answers(&NVIDIA_SMI, &labels, &decoded);
    let gpus = memory.update(joined, &[], true, SystemTime::now());
    let now = tokio::time::Instant::now();
    Snapshot::new(1, SystemTime::now(), now, gpus, vec![])
}

fn memory() -> Memory {
    let ageing = Ageing {
        gpu_stale_after: std::time::Duration::from_secs(120),
        missing_after: std::time::Duration::from_secs(600),
    };
    Memory::new(&NVIDIA_SMI, ageing)
}

fn snapshot_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    for gpus in SIZES {
        let bodies = responses(gpus);
        let bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));

        group.bench_with_input(
            BenchmarkId::new("build_snapshot", gpus),
            &bodies,
            |b, bodies| {
                let mut memory = memory();
                b.iter(|| build(black_box(bodies), &mut memory))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("reference_untyped_json_parse", gpus),
            &bodies,
            |b, bodies| {
                b.iter(|| {
                    for (_, body) in bodies {
                        let value: serde_json::Value =
                            serde_json::from_slice(black_box(body)).expect("valid JSON");
                        black_box(value);
                    }
                })
            },
        );
    }
    group.finish();
}

fn serve(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("serve");
    for gpus in SIZES {
        let app = service(build(&responses(gpus), &mut memory()));
        let plain = runtime.block_on(body_of(&app, request(&[])));
        let gzipped = runtime.block_on(body_of(&app, request(&[("accept-encoding", "gzip")])));
        let etag = runtime.block_on(etag_of(&app));
        let reference = reference(plain.clone());

        let one_node = "/api/v1/gpu/metrics?node=gpu-node-0000";
        let cases = [
            Case::new("metrics_identity", &app, METRICS, &[]),
            Case::new(
                "metrics_gzip",
                &app,
                METRICS,
                &[("accept-encoding", "gzip")],
            ),
            Case::new("metrics_304", &app, METRICS, &[("if-none-match", &etag)]),
            Case::new("metrics_one_node", &app, one_node, &[]),
            Case::new("reference_same_bytes", &reference, METRICS, &[]),
        ];
        for case in &cases {
            group.bench_function(BenchmarkId::new(case.name, gpus), |b| {
                b.to_async(&runtime).iter(|| case.run())
            });
        }
        assert!(gzipped.len() < plain.len(), "gzip is smaller");
    }
    group.finish();
}

const METRICS: &str = "/api/v1/gpu/metrics";

/// One request to time: which router, which URI, which headers.
struct Case<'a> {
    name: &'static str,
    router: &'a Router,
    uri: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl<'a> Case<'a> {
    fn new(
        name: &'static str,
        router: &'a Router,
        uri: &'static str,
        headers: &[(&'static str, &str)],
    ) -> Self {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Case {
            name,
            router,
            uri,
            headers,
        }
    }

    async fn run(&self) -> usize {
        let mut builder = Request::get(self.uri);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder.body(Body::empty()).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        drain(response).await
    }
}

fn service(snapshot: Snapshot) -> Router {
    let store = Arc::new(Store::new());
    store.publish(snapshot);
    let state = AppState {
        store,
        poll_interval: Duration::from_secs(5),
        stale_after: Duration::from_secs(15),
        prometheus_url: "http://prometheus:9090/".into(),
        subscribers: Arc::default(),
        max_stream_subscribers: 10,
        shutdown: CancellationToken::new(),
    };
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(10),
        cors_allowed_origins: AllowedOrigins::Any,
        max_concurrent_requests: 64,
    };
    api::router(state, &settings)
}

/// The limit for any handler: the same bytes, already in memory, through the same stack.
fn reference(body: Bytes) -> Router {
    Router::new().route(
        "/api/v1/gpu/metrics",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    )
}

fn request(headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get("/api/v1/gpu/metrics");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::empty()).expect("request")
}

async fn body_of(app: &Router, request: Request<Body>) -> Bytes {
    let response = app.clone().oneshot(request).await.expect("infallible");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

async fn etag_of(app: &Router) -> String {
    let response = app.clone().oneshot(request(&[])).await.expect("infallible");
    response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn drain(response: axum::response::Response) -> usize {
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame
            .expect("infallible")
            .into_data()
            .map_or(0, |d| d.len());
    }
    total
}

criterion_group!(benches, snapshot_build, serve);
criterion_main!(benches);
