//! A Prometheus behind TLS with a private CA: refused by default, trusted with `ca_file`, and
//! accepted unverified only with `insecure_skip_verify`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_prometheus::{FakeGpu, FakePrometheus, TestPki};
use support::{Service, eventually};

fn settings(url: &str, extra: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{url}\"\nquery_timeout = \"1s\"\n{extra}\n\
         [poller]\ninterval = \"1500ms\"\nstale_after = \"5s\"\n"
    )
}

async fn fake_behind_tls(pki: &TestPki) -> FakePrometheus {
    let fake = FakePrometheus::start_tls(pki).await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1)]);
    fake
}

async fn wait_for_a_complete_snapshot(service: &Service) {
    eventually(Duration::from_secs(15), "a complete snapshot", || async {
        let (status, body) = service.get("/api/v1/gpu/metrics").await;
        (status == 200 && body["snapshot"]["complete"] == json!(true)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_the_poll_with_a_tls_reason() {
    let pki = TestPki::generate();
    let fake = fake_behind_tls(&pki).await;
    let service = Service::start(&settings(&fake.url(), "")).await;

    let error = eventually(Duration::from_secs(15), "a failed poll", || async {
        let (_, body) = service.get("/api/health").await;
        body["data"]["prometheus"]["last_error"]
            .as_str()
            .map(str::to_owned)
    })
    .await;

    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(fake.seen().len(), 0, "no request passed the handshake");
}

#[tokio::test]
async fn a_ca_file_makes_a_private_ca_trusted() {
    let pki = TestPki::generate();
    let fake = fake_behind_tls(&pki).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write ca file");

    let extra = format!("ca_file = \"{}\"", ca_file.display());
    let service = Service::start(&settings(&fake.url(), &extra)).await;

    wait_for_a_complete_snapshot(&service).await;
    assert!(!fake.seen().is_empty());
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_certificate_nobody_vouches_for() {
    let pki = TestPki::generate();
    let fake = fake_behind_tls(&pki).await;
    let service = Service::start(&settings(&fake.url(), "insecure_skip_verify = true")).await;

    wait_for_a_complete_snapshot(&service).await;
    assert!(!fake.seen().is_empty());
}
