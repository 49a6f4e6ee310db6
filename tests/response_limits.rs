//! Answers too large or cut off: refused early, reported per metric, and the rest still served.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_prometheus::{FakeGpu, FakePrometheus, Reply, Series, vector_document};
use support::{Service, eventually};

const MIB: u64 = 1024 * 1024;

/// Short timings against the fake, and a 1 MiB limit on answers.
fn settings(url: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{url}\"\nquery_timeout = \"300ms\"\nmax_response_bytes = \"1MiB\"\n\
         [poller]\ninterval = \"500ms\"\nstale_after = \"2s\"\n"
    )
}

async fn errors_for(service: &Service, metrics: &[&str]) -> Value {
    eventually(Duration::from_secs(15), "those metrics to fail", || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        let errors = body["snapshot"]["errors"].as_array()?;
        let failed: Vec<_> = errors.iter().filter_map(|e| e["metric"].as_str()).collect();
        let all = metrics.iter().all(|m| failed.contains(m));
        all.then_some(body)
    })
    .await
}

fn reason<'a>(body: &'a Value, metric: &str) -> &'a str {
    body["snapshot"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["metric"] == metric)
        .and_then(|e| e["reason"].as_str())
        .expect("a reason for the metric")
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused_without_reading_it_all() {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1), FakeGpu::numbered(1, 1)]);
    let total = 256 * MIB;
    fake.set("nvidia_smi_temperature_gpu", Reply::Endless { total });
    let announced = " ".repeat(2 * MIB as usize);
    fake.set("nvidia_smi_power_draw_watts", Reply::raw(200, &announced));
    let service = Service::start(&settings(&fake.url())).await;

    let body = errors_for(
        &service,
        &["nvidia_smi_temperature_gpu", "nvidia_smi_power_draw_watts"],
    )
    .await;

    for metric in ["nvidia_smi_temperature_gpu", "nvidia_smi_power_draw_watts"] {
        let reason = reason(&body, metric);
        assert!(
            reason.contains("larger than prometheus.max_response_bytes (1048576 bytes)"),
            "{reason}"
        );
    }
    let streamed = fake.bytes_streamed();
    let requests = fake.count("nvidia_smi_temperature_gpu") as u64;
    assert!(
        streamed < total / 4 && streamed < requests * 8 * MIB,
        "{streamed} bytes streamed over {requests} requests"
    );
    assert_eq!(body["data"]["gpus"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_body_cut_off_mid_way_fails_only_its_metric_with_a_clear_reason() {
    let fake = FakePrometheus::start().await;
    let gpus = [FakeGpu::numbered(0, 1), FakeGpu::numbered(1, 1)];
    fake.serve_gpus(&gpus);
    let series = [Series::new(&[("uuid", &gpus[0].uuid)], "50")];
    let body = bytes::Bytes::from(vector_document(&series, &[]).to_string());
    let sent = body.len() / 2;
    fake.set("nvidia_smi_temperature_gpu", Reply::CutOff { body, sent });
    let service = Service::start(&settings(&fake.url())).await;

    let body = errors_for(&service, &["nvidia_smi_temperature_gpu"]).await;

    let reason = reason(&body, "nvidia_smi_temperature_gpu");
    assert!(
        reason.contains(&format!("broke off after {sent} bytes")),
        "{reason}"
    );
    assert_eq!(body["snapshot"]["errors"].as_array().map(Vec::len), Some(1));
    let served = body["data"]["gpus"].as_array().expect("gpus");
    assert_eq!(served.len(), 2);
    assert_eq!(served[0]["power_draw_watts"], json!(300.0), "{served:?}");
}
