//! What the service serves when Prometheus answers badly, against a fake Prometheus that
//! answers each query as the test says: every failure a real one cannot be made to produce
//! on demand.

mod support;

use std::time::Duration;

use gpu_monitoring_api::exporter::{NVIDIA_SMI, Query};
use serde_json::{Value, json};
use support::fake_prometheus::{FakeGpu, FakePrometheus, Reply, Series, UP, vector_document};
use support::{Service, eventually};

const UTILIZATION: &str = "nvidia_smi_utilization_gpu_ratio";
const TEMPERATURE: &str = "nvidia_smi_temperature_gpu";
const POWER: &str = "nvidia_smi_power_draw_watts";
const MEMORY_USED: &str = "nvidia_smi_memory_used_bytes";

/// Short timings against the fake.
fn settings(url: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{url}\"\nquery_timeout = \"300ms\"\n\
         [poller]\ninterval = \"400ms\"\nstale_after = \"2s\"\n"
    )
}

/// Two GPUs on one node, every query answered.
async fn healthy_fake() -> (FakePrometheus, Vec<FakeGpu>) {
    let fake = FakePrometheus::start().await;
    let gpus = vec![FakeGpu::numbered(0, 1), FakeGpu::numbered(1, 1)];
    fake.serve_gpus(&gpus);
    (fake, gpus)
}

/// One series per GPU of `metric`, labelled as `serve_gpus` labels them.
fn series_of(gpus: &[FakeGpu], values: &[&str]) -> Vec<Series> {
    gpus.iter()
        .zip(values)
        .map(|(gpu, value)| {
            let labels = [
                ("uuid", gpu.uuid.as_str()),
                ("node", gpu.node.as_str()),
                ("job", "nvidia_gpu_exporter"),
                ("instance", gpu.node.as_str()),
            ];
            Series::new(&labels, value)
        })
        .collect()
}

async fn metrics_where(service: &Service, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(15), what, || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        accept(&body).then_some(body)
    })
    .await
}

async fn partial(service: &Service) -> Value {
    metrics_where(service, "a partial snapshot", |b| {
        b["snapshot"]["complete"] == json!(false)
    })
    .await
}

async fn complete(service: &Service) -> Value {
    metrics_where(service, "a complete snapshot with GPUs", |b| {
        b["snapshot"]["complete"] == json!(true)
            && b["data"]["gpus"].as_array().is_some_and(|g| !g.is_empty())
    })
    .await
}

fn errors(body: &Value) -> &Vec<Value> {
    body["snapshot"]["errors"]
        .as_array()
        .expect("snapshot.errors")
}

fn readings(body: &Value, field: &str) -> Vec<Value> {
    body["data"]["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .map(|gpu| gpu[field].clone())
        .collect()
}

#[tokio::test]
async fn connection_refused_before_any_answer_leaves_nothing_to_serve_and_says_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let service = Service::start(&settings(&url)).await;

    let health = eventually(Duration::from_secs(10), "a failed poll", || async {
        let (status, body) = service.get("/api/health").await;
        (status == 503 && body["data"]["prometheus"]["reachable"] == json!(false)).then_some(body)
    })
    .await;

    let reason = health["data"]["prometheus"]["last_error"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("cannot reach prometheus"), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    let (status, metrics) = service.get("/api/v1/gpu/metrics").await;
    assert_eq!(status, 503);
    assert_eq!(metrics["error"]["code"], json!("no_data"));
}

#[tokio::test]
async fn a_failed_query_keeps_its_last_known_values_and_says_since_when() {
    let (fake, gpus) = healthy_fake().await;
    fake.set(TEMPERATURE, Reply::vector(&series_of(&gpus, &["61", "47"])));
    let service = Service::start(&settings(&fake.url())).await;
    complete(&service).await;

    fake.set(
        TEMPERATURE,
        Reply::error(503, "unavailable", "too many queries"),
    );
    let body = partial(&service).await;

    assert_eq!(
        readings(&body, "temperature_celsius"),
        [json!(61.0), json!(47.0)]
    );
    let failures = errors(&body);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["metric"], json!(TEMPERATURE));
    let reason = failures[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("503") && reason.contains("too many queries"),
        "{reason}"
    );
    let since = failures[0]["since"].as_str().expect("since");
    humantime::parse_rfc3339(since).expect("since is RFC 3339");

    let later = metrics_where(&service, "a later partial snapshot", |b| {
        b["snapshot"]["generation"].as_u64()
            > body["snapshot"]["generation"].as_u64().map(|g| g + 1)
    })
    .await;
    assert_eq!(errors(&later)[0]["since"], json!(since), "since stays put");

    let (status, health) = service.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["data"]["status"], json!("degraded"));
}

#[tokio::test]
async fn error_statuses_are_reported_with_prometheus_own_reason_and_transient_ones_retried() {
    let cases = [
        (400, "bad_data", false),
        (422, "bad_data", false),
        (422, "execution", true),
        (429, "unavailable", true),
        (500, "internal", true),
        (503, "unavailable", true),
    ];
    for (status, error_type, transient) in cases {
        let (fake, _) = healthy_fake().await;
        fake.set(
            POWER,
            Reply::error(status, error_type, "the reason prometheus gave"),
        );
        let service = Service::start(&settings(&fake.url())).await;

        let body = partial(&service).await;

        let failure = &errors(&body)[0];
        assert_eq!(failure["metric"], json!(POWER));
        let reason = failure["reason"].as_str().expect("reason");
        assert!(reason.contains(&status.to_string()), "{status}: {reason}");
        assert!(
            reason.contains(&format!("{error_type}: the reason prometheus gave")),
            "{reason}"
        );
        assert_eq!(body["data"]["gpus"].as_array().map(Vec::len), Some(2));

        let asked = |query: &str| fake.count(query);
        eventually(Duration::from_secs(15), "a few polls", || async {
            (asked(TEMPERATURE) >= 4).then_some(())
        })
        .await;
        let (power, other) = (asked(POWER), asked(TEMPERATURE));
        if transient {
            assert!(
                power + 2 >= 2 * other,
                "{status} {error_type}: {power} tries in {other} polls"
            );
        } else {
            assert!(
                power <= other + 1,
                "{status} {error_type}: {power} tries in {other} polls"
            );
        }
    }
}

#[tokio::test]
async fn a_query_slower_than_the_timeout_fails_alone_and_is_retried_once() {
    let (fake, _) = healthy_fake().await;
    let slow = Reply::vector(&[]).after(Duration::from_secs(2));
    fake.set(MEMORY_USED, slow);
    let service = Service::start(&settings(&fake.url())).await;

    let body = partial(&service).await;

    let failure = &errors(&body)[0];
    assert_eq!(failure["metric"], json!(MEMORY_USED));
    assert_eq!(failure["reason"], json!("no answer within 300ms"));
    assert_eq!(readings(&body, "utilization_ratio").len(), 2);
    eventually(Duration::from_secs(15), "a few polls", || async {
        (fake.count(TEMPERATURE) >= 3).then_some(())
    })
    .await;
    assert!(fake.count(MEMORY_USED) + 2 >= 2 * fake.count(TEMPERATURE));
}

#[tokio::test]
async fn a_body_that_is_not_json_fails_its_query_with_a_reason() {
    let (fake, _) = healthy_fake().await;
    fake.set(
        UTILIZATION,
        Reply::raw(200, "<html><body>502 Bad Gateway</body></html>"),
    );
    let service = Service::start(&settings(&fake.url())).await;

    let body = partial(&service).await;

    let reason = errors(&body)[0]["reason"]
        .as_str()
        .expect("reason")
        .to_owned();
    assert!(
        reason.starts_with("response is not a Prometheus API document"),
        "{reason}"
    );
    assert_eq!(
        readings(&body, "utilization_ratio"),
        [json!(null), json!(null)]
    );
}

#[tokio::test]
async fn warnings_infos_and_partial_answers_are_used_but_make_the_snapshot_incomplete() {
    let (fake, gpus) = healthy_fake().await;
    let document = |extra: &[(&str, Value)]| {
        Reply::json(
            200,
            vector_document(&series_of(&gpus, &["0.5", "0.25"]), extra),
        )
    };
    let cases = [
        (
            vec![("warnings", json!(["store 10.0.0.1 unreachable"]))],
            "warning: store 10.0.0.1 unreachable",
        ),
        (
            vec![("infos", json!(["metric might not be a counter"]))],
            "info: metric might not be a counter",
        ),
        (
            vec![("isPartial", json!(true))],
            "the answer is marked partial (isPartial)",
        ),
    ];
    let service = Service::start(&settings(&fake.url())).await;
    for (extra, said) in cases {
        fake.set(UTILIZATION, document(&extra));

        let body = metrics_where(&service, said, |b| {
            b["snapshot"]["errors"].to_string().contains(said)
        })
        .await;

        assert_eq!(body["snapshot"]["complete"], json!(false));
        assert_eq!(
            readings(&body, "utilization_ratio"),
            [json!(0.5), json!(0.25)]
        );
        assert_eq!(errors(&body)[0]["metric"], json!(UTILIZATION));
    }
}

#[tokio::test]
async fn sample_values_parse_as_prometheus_writes_them_and_non_finite_ones_are_null() {
    let (fake, gpus) = healthy_fake().await;
    fake.set(
        POWER,
        Reply::vector(&series_of(&gpus, &["1e+02", "0x1p+8"])),
    );
    fake.set(
        UTILIZATION,
        Reply::vector(&series_of(&gpus, &["0x1p-2", "NaN"])),
    );
    fake.set(
        TEMPERATURE,
        Reply::vector(&series_of(&gpus, &["+Inf", "-Inf"])),
    );
    let service = Service::start(&settings(&fake.url())).await;

    let body = complete(&service).await;

    assert_eq!(
        readings(&body, "power_draw_watts"),
        [json!(100.0), json!(256.0)]
    );
    assert_eq!(
        readings(&body, "utilization_ratio"),
        [json!(0.25), json!(null)]
    );
    assert_eq!(
        readings(&body, "temperature_celsius"),
        [json!(null), json!(null)]
    );
    assert_eq!(readings(&body, "anomalies"), [json!([]), json!([])]);
}

#[tokio::test]
async fn implausible_values_are_null_and_listed_instead_of_spiking_averages() {
    let (fake, gpus) = healthy_fake().await;
    fake.set(
        UTILIZATION,
        Reply::vector(&series_of(&gpus, &["4294967295", "0.5"])),
    );
    fake.set(
        TEMPERATURE,
        Reply::vector(&series_of(&gpus, &["9223372036854775807", "52"])),
    );
    fake.set(
        POWER,
        Reply::vector(&series_of(&gpus, &["-5", "not-a-number"])),
    );
    let service = Service::start(&settings(&fake.url())).await;

    let body = complete(&service).await;

    assert_eq!(
        readings(&body, "utilization_ratio"),
        [json!(null), json!(0.5)]
    );
    assert_eq!(
        readings(&body, "temperature_celsius"),
        [json!(null), json!(52.0)]
    );
    assert_eq!(
        readings(&body, "power_draw_watts"),
        [json!(null), json!(null)]
    );
    let dropped = |gpu: usize| -> Vec<Value> {
        body["data"]["gpus"][gpu]["anomalies"]
            .as_array()
            .expect("anomalies")
            .iter()
            .map(|a| json!([a["reading"], a["value"]]))
            .collect()
    };
    assert_eq!(
        dropped(0),
        [
            json!(["utilization_ratio", "4294967295"]),
            json!(["temperature_celsius", "9223372036854776000"]),
            json!(["power_draw_watts", "-5"]),
        ]
    );
    assert_eq!(dropped(1), [json!(["power_draw_watts", "not-a-number"])]);

    let (_, utilization) = service.get("/api/v1/gpu/utilization").await;
    assert_eq!(utilization["data"]["average_ratio"], json!(0.5));
}

#[tokio::test]
async fn duplicate_series_of_one_gpu_count_once_and_the_newest_wins() {
    let fake = FakePrometheus::start().await;
    let gpu = FakeGpu::numbered(0, 1);
    fake.serve_gpus(std::slice::from_ref(&gpu));
    let now = support::fake_prometheus::now_seconds();
    let pod = |name: &str, extra: &[(&str, &str)], value: String| {
        let mut labels = vec![
            ("uuid", gpu.uuid.as_str()),
            ("node", gpu.node.as_str()),
            ("job", "nvidia_gpu_exporter"),
            ("instance", gpu.node.as_str()),
            ("pod", name),
        ];
        labels.extend_from_slice(extra);
        Series::new(&labels, &value)
    };
    let name = [("name", "NVIDIA L40S")];
    let info = [
        pod("old", &name, (now - 60.0).to_string()),
        pod("new", &name, now.to_string()),
    ];
    fake.set(NVIDIA_SMI.info.query, Reply::vector(&info));
    let power = [pod("new", &[], "300".into()), pod("old", &[], "100".into())];
    fake.set(POWER, Reply::vector(&power));
    let service = Service::start(&settings(&fake.url())).await;

    let body = complete(&service).await;

    assert_eq!(readings(&body, "power_draw_watts"), [json!(300.0)]);
    let (_, nodes) = service.get("/api/v1/gpu/nodes").await;
    assert_eq!(nodes["data"]["nodes"][0]["gpu_count"], json!(1));
    assert_eq!(nodes["data"]["nodes"][0]["power_draw_watts"], json!(300.0));
}

#[tokio::test]
async fn an_exporter_whose_collection_fails_or_is_old_has_its_gpus_marked_stale() {
    let (fake, gpus) = healthy_fake().await;
    let service = Service::start(&settings(&fake.url())).await;
    complete(&service).await;
    let target = |name: &str, value: &str| {
        let labels = [
            ("__name__", name),
            ("node", gpus[0].node.as_str()),
            ("job", "nvidia_gpu_exporter"),
            ("instance", gpus[0].node.as_str()),
        ];
        Series::new(&labels, value)
    };

    fake.set(
        UP,
        Reply::vector(&[
            target("up", "1"),
            target("nvidia_smi_last_collect_success", "0"),
        ]),
    );
    let failed = metrics_where(&service, "stale GPUs", |b| {
        readings(b, "status")[0] == json!("stale")
    })
    .await;
    assert_eq!(
        readings(&failed, "status"),
        [json!("stale"), json!("stale")]
    );

    fake.set(UP, Reply::vector(&[target("up", "1")]));
    complete(&service).await;
    let ok = metrics_where(&service, "GPUs ok again", |b| {
        readings(b, "status")[0] == json!("ok")
    })
    .await;
    assert_eq!(readings(&ok, "status"), [json!("ok"), json!("ok")]);

    let an_hour_ago = (support::fake_prometheus::now_seconds() - 3600.0).to_string();
    let old = target(
        "nvidia_smi_last_collect_success_timestamp_seconds",
        &an_hour_ago,
    );
    fake.set(UP, Reply::vector(&[target("up", "1"), old]));
    let old = metrics_where(&service, "stale GPUs", |b| {
        readings(b, "status")[0] == json!("stale")
    })
    .await;
    assert_eq!(readings(&old, "status"), [json!("stale"), json!("stale")]);
}

#[tokio::test]
async fn while_every_query_fails_polls_back_off_and_an_answer_restores_them() {
    let (fake, gpus) = healthy_fake().await;
    let refuse_all = || {
        for query in NVIDIA_SMI.queries() {
            let name = match query {
                Query::Targets => UP.to_owned(),
                _ => NVIDIA_SMI.promql(query, Duration::ZERO).into_owned(),
            };
            fake.set(&name, Reply::error(503, "unavailable", "overloaded"));
        }
    };
    refuse_all();
    let fast = format!(
        "[prometheus]\nurl = \"{}\"\nquery_timeout = \"50ms\"\n[poller]\ninterval = \"100ms\"\n",
        fake.url()
    );
    let service = Service::start(&fast).await;

    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every 100 ms, 3 s would be 30 polls (fewer with the retries); backing off to 200, 400,
    // then 800 ms between polls leaves at most 7.
    let polls = fake.count(TEMPERATURE) / 2;
    assert!(polls <= 8, "{polls} polls in 3 s while every query failed");
    let (status, _) = service.get("/api/v1/gpu/metrics").await;
    assert_eq!(status, 503);

    fake.serve_gpus(&gpus);
    complete(&service).await;
}
