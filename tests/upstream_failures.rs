//! What the service serves when Prometheus answers badly, against a fake Prometheus that
//! answers each query as the test says.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_prometheus::{FakeGpu, FakePrometheus, Reply};
use support::{Service, eventually};

/// Short timings against the fake.
fn settings(url: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{url}\"\nquery_timeout = \"300ms\"\n\
         [poller]\ninterval = \"500ms\"\nstale_after = \"2s\"\n"
    )
}

async fn snapshot_where(service: &Service, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), what, || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        accept(&body).then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_prometheus_error_document_is_reported_with_its_own_reason() {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1), FakeGpu::numbered(1, 1)]);
    fake.set(
        "nvidia_smi_temperature_gpu",
        Reply::error(400, "bad_data", "invalid parameter \"query\""),
    );
    let service = Service::start(&settings(&fake.url())).await;

    let body = snapshot_where(&service, "a partial snapshot", |b| {
        b["snapshot"]["complete"] == json!(false)
    })
    .await;

    let errors = body["snapshot"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["metric"], "nvidia_smi_temperature_gpu");
    let reason = errors[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("400") && reason.contains("bad_data"),
        "{reason}"
    );
    assert_eq!(body["data"]["gpus"].as_array().map(Vec::len), Some(2));
}
