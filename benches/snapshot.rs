//! The poller's hot path, per cluster size: decoding Prometheus's answers, joining them per
//! GPU and building the snapshot, next to the floor for the same bytes (an untyped
//! `serde_json::Value` parse), and rendering the metrics body once built.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpu_monitoring_api::exporter::NVIDIA_SMI;
use gpu_monitoring_api::poller::GpuTable;
use gpu_monitoring_api::prometheus::decode;
use gpu_monitoring_api::snapshot::Snapshot;

const SIZES: [usize; 3] = [16, 800, 8_000];
const GPUS_PER_NODE: usize = 8;

/// One `/api/v1/query` body per metric of the family, `gpus` series each, as Prometheus
/// writes them (labels from the scrape config included).
fn responses(gpus: usize) -> Vec<(&'static str, Vec<u8>)> {
    NVIDIA_SMI
        .metric_names()
        .map(|metric| (metric, response(metric, gpus).into_bytes()))
        .collect()
}

fn response(metric: &str, gpus: usize) -> String {
    let series: Vec<String> = (0..gpus).map(|i| series(metric, i)).collect();
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
        (i % 97) as f64 * 1.5
    )
}

fn build(bodies: &[(&'static str, Vec<u8>)]) -> Snapshot {
    let labels = ["node".to_owned(), "instance".to_owned()];
    let mut table = GpuTable::new(&NVIDIA_SMI, &labels);
    for (metric, body) in bodies {
        let samples = decode(body).expect("generated bodies are valid");
        if *metric == NVIDIA_SMI.info.name {
            table.add_info(&samples);
        } else {
            let value = NVIDIA_SMI.values.iter().find(|m| m.name == *metric);
            table.add_values(value.expect("metric from the table"), &samples);
        }
    }
    let now = tokio::time::Instant::now();
    Snapshot::new(1, SystemTime::now(), now, table.into_gpus(), vec![])
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
            |b, bodies| b.iter(|| build(black_box(bodies))),
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

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for gpus in SIZES {
        let snapshot = build(&responses(gpus));
        group.bench_with_input(
            BenchmarkId::new("gpu_metrics_json", gpus),
            &snapshot,
            |b, s| b.iter(|| serde_json::to_vec(black_box(&s.gpus)).expect("serializable")),
        );
    }
    group.finish();
}

criterion_group!(benches, snapshot_build, render);
criterion_main!(benches);
