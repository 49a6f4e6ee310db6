//! The HTTP layer on hand-built snapshots, driven with `oneshot`: no network, no Prometheus,
//! and paused time so that ages and staleness are exact.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use gpu_monitoring_api::api::{self, AppState, HttpSettings};
use gpu_monitoring_api::config::AllowedOrigins;
use gpu_monitoring_api::snapshot::{
    Gpu, GpuId, GpuStatus, NodeName, PollStatus, QueryFailure, Snapshot, Store,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const STALE_AFTER: Duration = Duration::from_secs(15);

fn gpu(node: &str, id: &str, index: u32, utilization: Option<f64>) -> Gpu {
    let mut gpu = Gpu::new(GpuId::parse(id).expect("id"));
    gpu.node = Some(NodeName::parse(node).expect("node"));
    gpu.index = Some(index);
    gpu.name = Some("NVIDIA L40S".into());
    gpu.utilization_ratio = utilization;
    gpu
}

fn snapshot(generation: u64, failures: Vec<QueryFailure>) -> Snapshot {
    let gpus = vec![
        gpu("b", "0002", 0, Some(0.5)),
        gpu("a", "0001", 1, None),
        gpu("a", "0000", 0, Some(0.25)),
    ];
    Snapshot::new(
        generation,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_292_000_123),
        Instant::now(),
        gpus,
        failures,
    )
}

fn healthy() -> PollStatus {
    PollStatus {
        reachable: Some(true),
        last_success_at: Some(SystemTime::now()),
        last_error: None,
    }
}

fn app_with(store: Arc<Store>, origins: AllowedOrigins) -> Router {
    let state = AppState {
        store,
        poll_interval: Duration::from_secs(5),
        stale_after: STALE_AFTER,
        prometheus_url: "http://prometheus:9090/".into(),
        subscribers: Arc::default(),
        max_stream_subscribers: 2,
        shutdown: CancellationToken::new(),
    };
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(10),
        cors_allowed_origins: origins,
        max_concurrent_requests: 64,
    };
    api::router(state, &settings)
}

fn app(store: Arc<Store>) -> Router {
    app_with(store, AllowedOrigins::Any)
}

fn published(snapshot: Snapshot, status: PollStatus) -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.publish(snapshot);
    store.set_status(status);
    store
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let response = app.oneshot(request).await.expect("router is infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

async fn get(app: Router, uri: &str) -> (StatusCode, Value) {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let (status, _, body) = send(app, request).await;
    (
        status,
        serde_json::from_slice(&body).expect("JSON envelope"),
    )
}

#[tokio::test(start_paused = true)]
async fn gpus_are_served_sorted_by_node_then_index_in_the_envelope() {
    let app = app(published(snapshot(7, vec![]), healthy()));

    let (status, body) = get(app, "/api/v1/gpu/metrics").await;

    assert_eq!(status, StatusCode::OK);
    let uuids: Vec<_> = body["data"]["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .map(|g| g["uuid"].as_str().expect("uuid").to_owned())
        .collect();
    assert_eq!(uuids, ["GPU-0000", "GPU-0001", "GPU-0002"]);
    assert_eq!(body["success"], json!(true));
    assert_eq!(body["error"], json!(null));
    assert_eq!(body["message"], json!("3 GPUs on 2 nodes"));
    assert_eq!(
        body["snapshot"],
        json!({"generation": 7, "collected_at": "2026-12-03T10:00:00.123Z", "age_seconds": 0.0,
               "stale": false, "poll_interval_seconds": 5.0, "complete": true, "errors": []})
    );
}

#[tokio::test(start_paused = true)]
async fn age_is_exact_at_each_response_and_turns_stale_past_stale_after() {
    let store = published(snapshot(1, vec![]), healthy());

    tokio::time::advance(Duration::from_millis(1_400)).await;
    let (_, fresh) = get(app(store.clone()), "/api/v1/gpu/utilization").await;
    tokio::time::advance(STALE_AFTER).await;
    let (_, stale) = get(app(store.clone()), "/api/v1/gpu/utilization").await;
    let (status, health) = get(app(store), "/api/health").await;

    assert_eq!(fresh["snapshot"]["age_seconds"], json!(1.4));
    assert_eq!(fresh["snapshot"]["stale"], json!(false));
    assert_eq!(stale["snapshot"]["age_seconds"], json!(16.4));
    assert_eq!(stale["snapshot"]["stale"], json!(true));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["data"]["status"], json!("degraded"));
}

#[tokio::test(start_paused = true)]
async fn health_is_degraded_when_polls_succeed_but_no_gpu_has_live_readings() {
    let mut gpus = vec![gpu("a", "0000", 0, None), gpu("a", "0001", 1, None)];
    gpus[0].status = GpuStatus::Stale;
    gpus[1].status = GpuStatus::Missing;
    let dead = Snapshot::new(1, SystemTime::now(), Instant::now(), gpus, vec![]);
    let one_live = {
        let mut gpus = vec![gpu("a", "0000", 0, None), gpu("a", "0001", 1, Some(0.5))];
        gpus[0].status = GpuStatus::Stale;
        Snapshot::new(1, SystemTime::now(), Instant::now(), gpus, vec![])
    };

    let (code, dead) = get(app(published(dead, healthy())), "/api/health").await;
    let (_, live) = get(app(published(one_live, healthy())), "/api/health").await;

    assert_eq!(code, StatusCode::OK, "data is still served");
    assert_eq!(dead["data"]["status"], json!("degraded"));
    assert_eq!(
        dead["data"]["gpus"],
        json!({"ok": 0, "stale": 1, "missing": 1})
    );
    assert_eq!(live["data"]["status"], json!("ok"));
}

#[tokio::test(start_paused = true)]
async fn a_partial_poll_is_served_incomplete_with_its_errors_and_degrades_health() {
    let failure = QueryFailure {
        metric: "nvidia_smi_power_draw_watts".into(),
        reason: "no answer within 3s".into(),
        since: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_291_990_000)),
    };
    let status = PollStatus {
        last_error: Some("nvidia_smi_power_draw_watts: no answer within 3s".into()),
        ..healthy()
    };
    let store = published(snapshot(2, vec![failure]), status);

    let (_, nodes) = get(app(store.clone()), "/api/v1/gpu/nodes").await;
    let (code, health) = get(app(store), "/api/health").await;

    assert_eq!(nodes["snapshot"]["complete"], json!(false));
    assert_eq!(
        nodes["snapshot"]["errors"],
        json!([{"metric": "nvidia_smi_power_draw_watts", "reason": "no answer within 3s",
                "since": "2026-12-03T09:59:50.000Z"}])
    );
    assert_eq!(code, StatusCode::OK);
    assert_eq!(health["data"]["status"], json!("degraded"));
    assert_eq!(
        health["data"]["prometheus"]["last_error"],
        json!("nvidia_smi_power_draw_watts: no answer within 3s")
    );
}

#[tokio::test(start_paused = true)]
async fn node_summaries_and_the_utilization_view_come_from_the_snapshot() {
    let store = published(snapshot(3, vec![]), healthy());

    let (_, nodes) = get(app(store.clone()), "/api/v1/gpu/nodes").await;
    let (_, utilization) = get(app(store), "/api/v1/gpu/utilization").await;

    let node_a = &nodes["data"]["nodes"][0];
    assert_eq!(node_a["name"], json!("a"));
    assert_eq!(node_a["gpus"], json!(["GPU-0000", "GPU-0001"]));
    assert_eq!(node_a["utilization_avg_ratio"], json!(0.25));
    assert_eq!(node_a["power_draw_watts"], json!(null));
    assert_eq!(utilization["data"]["average_ratio"], json!(0.375));
    assert_eq!(
        utilization["data"]["gpus"][1],
        json!({"uuid": "GPU-0001", "node": "a", "status": "ok", "utilization_ratio": null})
    );
}

#[tokio::test]
async fn before_the_first_snapshot_data_endpoints_answer_503_and_health_explains() {
    let store = Arc::new(Store::new());
    store.set_status(PollStatus {
        reachable: Some(false),
        last_success_at: None,
        last_error: Some("nvidia_smi_gpu_info: cannot reach prometheus".into()),
    });

    for path in [
        "/api/v1/gpu/metrics",
        "/api/v1/gpu/nodes",
        "/api/v1/gpu/utilization",
        "/readyz",
    ] {
        let (status, body) = get(app(store.clone()), path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["success"], json!(false), "{path}");
        assert_eq!(body["data"], json!(null), "{path}");
        assert_eq!(body["error"]["code"], json!("no_data"), "{path}");
        assert_eq!(body["snapshot"], json!(null), "{path}");
    }

    let (status, health) = get(app(store.clone()), "/api/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["data"]["status"], json!("unavailable"));
    assert_eq!(health["success"], json!(false));
    assert_eq!(health["error"]["code"], json!("no_data"));
    assert_eq!(health["data"]["prometheus"]["reachable"], json!(false));
    assert_eq!(
        health["data"]["prometheus"]["url"],
        json!("http://prometheus:9090/")
    );
    let (status, _) = get(app(store), "/livez").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_query_parameters_get_error_envelopes() {
    let store = published(snapshot(1, vec![]), healthy());

    let (status, missing) = get(app(store.clone()), "/api/v1/gpus").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], json!("not_found"));
    assert_eq!(
        missing["error"]["message"],
        json!("no endpoint at /api/v1/gpus")
    );

    let post = Request::post("/api/v1/gpu/metrics")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(store.clone()), post).await;
    let body: Value = serde_json::from_slice(&body).expect("JSON envelope");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], json!("method_not_allowed"));
    assert_eq!(headers[header::ALLOW], "GET, HEAD");

    let long = format!("/{}", "x".repeat(7_000));
    let (status, missing) = get(app(store.clone()), &long).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = missing["error"]["message"].as_str().expect("message");
    assert!(message.len() < 200 && message.ends_with('…'), "{message}");

    let (status, probe) = get(app(store.clone()), "/livez?verbose=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(probe["error"]["code"], json!("bad_request"));

    let (status, bad) = get(app(store), "/api/v1/gpu/metrics?nodes=a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["code"], json!("bad_request"));
    assert!(
        bad["error"]["message"]
            .as_str()
            .expect("message")
            .contains("\"nodes\"")
    );
}

#[tokio::test]
async fn head_returns_the_headers_of_get_and_no_body() {
    let store = published(snapshot(1, vec![]), healthy());

    let head = Request::head("/api/v1/gpu/metrics")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(store), head).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(body.is_empty());
}

#[tokio::test]
async fn cors_allows_listed_origins_only_and_never_credentials() {
    let store = published(snapshot(1, vec![]), healthy());
    let listed = AllowedOrigins::List(vec!["https://grafana.example".parse().expect("origin")]);
    let from = |origin: &str| {
        Request::get("/api/v1/gpu/metrics")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .expect("request")
    };

    let (_, allowed, _) = send(
        app_with(store.clone(), listed.clone()),
        from("https://grafana.example"),
    )
    .await;
    let (_, refused, _) = send(
        app_with(store.clone(), listed),
        from("https://evil.example"),
    )
    .await;
    let (_, any, _) = send(app(store.clone()), from("https://anywhere.example")).await;

    assert_eq!(
        allowed[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://grafana.example"
    );
    assert!(!refused.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    assert_eq!(any[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(!any.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));

    // A shared cache must not hand one origin's answer to another when the answer names
    // the origin; with `*` the answer is the same for all.
    let varies = |headers: &header::HeaderMap| {
        headers.get_all(header::VARY).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("origin"))
        })
    };
    assert!(varies(&allowed) && varies(&refused));
    assert!(!varies(&any));

    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/gpu/metrics")
        .header(header::ORIGIN, "https://anywhere.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .expect("request");
    let (status, headers, _) = send(app(store), preflight).await;
    assert!(status.is_success());
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .expect("ascii");
    assert!(methods.contains("GET") && methods.contains("HEAD") && !methods.contains("POST"));
    let allowed_headers = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .expect("ascii");
    for name in ["if-none-match", "if-modified-since", "last-event-id"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }

    // A page on another origin can read the validators it must send back.
    let exposed = any[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .expect("ascii");
    assert!(
        exposed.contains("etag") && exposed.contains("last-modified"),
        "{exposed}"
    );
}

fn request(uri: &str, headers: &[(header::HeaderName, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip member");
    out
}

#[tokio::test(start_paused = true)]
async fn gzip_bodies_decompress_to_the_identity_body_for_every_view() {
    let store = published(snapshot(4, vec![]), healthy());

    for uri in [
        "/api/v1/gpu/metrics",
        "/api/v1/gpu/metrics?node=b",
        "/api/v1/gpu/nodes",
        "/api/v1/gpu/nodes/a",
        "/api/v1/gpu/utilization?node=a,b",
    ] {
        let (_, plain_headers, plain) = send(app(store.clone()), request(uri, &[])).await;
        let gzip_request = request(uri, &[(header::ACCEPT_ENCODING, "br;q=1, gzip;q=0.8")]);
        let (status, headers, gzipped) = send(app(store.clone()), gzip_request).await;

        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "{uri}");
        assert!(
            !plain_headers.contains_key(header::CONTENT_ENCODING),
            "{uri}"
        );
        assert_eq!(gunzip(&gzipped), plain, "{uri}");
        assert_ne!(headers[header::ETAG], plain_headers[header::ETAG], "{uri}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_matching_etag_or_date_gets_304_without_a_body_until_the_next_snapshot() {
    let store = published(snapshot(5, vec![]), healthy());
    let (_, first, _) = send(app(store.clone()), request("/api/v1/gpu/metrics", &[])).await;
    let etag = first[header::ETAG].to_str().expect("etag").to_owned();
    let date = first[header::LAST_MODIFIED]
        .to_str()
        .expect("date")
        .to_owned();

    let by_tag = request("/api/v1/gpu/metrics", &[(header::IF_NONE_MATCH, &etag)]);
    let (status, headers, body) = send(app(store.clone()), by_tag).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], etag.as_str());

    let by_date = request("/api/v1/gpu/metrics", &[(header::IF_MODIFIED_SINCE, &date)]);
    let (status, _, _) = send(app(store.clone()), by_date).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    store.publish(snapshot(6, vec![]));
    let again = request("/api/v1/gpu/metrics", &[(header::IF_NONE_MATCH, &etag)]);
    let (status, headers, body) = send(app(store), again).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
    assert_ne!(headers[header::ETAG], etag.as_str());
}

#[tokio::test(start_paused = true)]
async fn cache_control_counts_down_to_the_next_poll_and_vary_names_the_encoding() {
    let store = published(snapshot(1, vec![]), healthy());

    tokio::time::advance(Duration::from_millis(1_500)).await;
    let (_, early, _) = send(app(store.clone()), request("/api/v1/gpu/nodes", &[])).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let (_, overdue, _) = send(app(store), request("/api/v1/gpu/nodes", &[])).await;

    assert_eq!(early[header::CACHE_CONTROL], "public, max-age=3");
    assert_eq!(overdue[header::CACHE_CONTROL], "public, max-age=0");
    let vary: Vec<_> = early.get_all(header::VARY).iter().collect();
    assert!(vary.iter().any(|v| *v == "accept-encoding"), "{vary:?}");
}

#[tokio::test(start_paused = true)]
async fn node_filters_return_only_those_nodes_with_their_own_average() {
    let store = published(snapshot(2, vec![]), healthy());

    let (status, only_b) = get(app(store.clone()), "/api/v1/gpu/metrics?node=b").await;
    let (_, util_a) = get(
        app(store.clone()),
        "/api/v1/gpu/utilization?node=a&node=missing",
    )
    .await;
    let (_, nobody) = get(app(store.clone()), "/api/v1/gpu/metrics?node=missing").await;
    let (_, node_a) = get(app(store), "/api/v1/gpu/nodes/a").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(only_b["data"]["gpus"].as_array().expect("gpus").len(), 1);
    assert_eq!(only_b["data"]["gpus"][0]["uuid"], json!("GPU-0002"));
    assert_eq!(only_b["message"], json!("1 GPU on 1 node"));
    assert_eq!(util_a["data"]["average_ratio"], json!(0.25));
    assert_eq!(util_a["data"]["gpus"].as_array().expect("gpus").len(), 2);
    assert_eq!(nobody["data"]["gpus"], json!([]));
    assert_eq!(nobody["message"], json!("0 GPUs on 0 nodes"));
    assert_eq!(node_a["data"]["node"]["name"], json!("a"));
    assert_eq!(node_a["data"]["node"]["gpu_count"], json!(2));
}

#[tokio::test(start_paused = true)]
async fn malformed_filters_and_unknown_nodes_get_error_envelopes() {
    let store = published(snapshot(2, vec![]), healthy());

    let (status, empty) = get(app(store.clone()), "/api/v1/gpu/metrics?node=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        empty["error"]["message"]
            .as_str()
            .expect("message")
            .contains("\"node\"")
    );

    let (status, other) = get(app(store.clone()), "/api/v1/gpu/utilization?nodes=a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        other["error"]["message"]
            .as_str()
            .expect("message")
            .contains("takes node")
    );

    let (status, missing) = get(app(store), "/api/v1/gpu/nodes/zz").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], json!("not_found"));
}

#[tokio::test(start_paused = true)]
async fn head_sends_the_length_and_validators_of_get() {
    let store = published(snapshot(1, vec![]), healthy());

    let (_, get_headers, body) =
        send(app(store.clone()), request("/api/v1/gpu/metrics", &[])).await;
    let head = Request::head("/api/v1/gpu/metrics")
        .body(Body::empty())
        .expect("request");
    let (_, head_headers, empty) = send(app(store), head).await;

    assert!(empty.is_empty());
    assert_eq!(
        head_headers[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    assert_eq!(head_headers[header::ETAG], get_headers[header::ETAG]);
}

#[tokio::test]
async fn a_request_line_over_8_kib_gets_414_and_one_under_it_is_routed() {
    let store = published(snapshot(1, vec![]), healthy());

    let (status, long) = get(app(store.clone()), &format!("/{}", "x".repeat(9 * 1024))).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(long["error"]["code"], json!("uri_too_long"));
    assert_eq!(long["success"], json!(false));

    let (status, query) = get(
        app(store.clone()),
        &format!("/api/v1/gpu/metrics?node={}", "a".repeat(9 * 1024)),
    )
    .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(query["error"]["code"], json!("uri_too_long"));

    let (status, short) = get(app(store), &format!("/{}", "x".repeat(7 * 1024))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(short["error"]["code"], json!("not_found"));
}

#[tokio::test]
async fn every_method_that_writes_gets_405_with_allow_on_a_real_route() {
    let store = published(snapshot(1, vec![]), healthy());

    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/api/v1/gpu/nodes")
            .body(Body::from("{}"))
            .expect("request");
        let (status, headers, body) = send(app(store.clone()), request).await;
        let body: Value = serde_json::from_slice(&body).expect("JSON envelope");

        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers[header::ALLOW], "GET, HEAD", "{method}");
        assert_eq!(
            body["error"]["code"],
            json!("method_not_allowed"),
            "{method}"
        );
    }
}

#[tokio::test]
async fn cors_preflight_from_a_listed_origin_names_it_and_never_allows_credentials() {
    let store = published(snapshot(1, vec![]), healthy());
    let listed = AllowedOrigins::List(vec!["https://grafana.example".parse().expect("origin")]);
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/gpu/metrics")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .expect("request")
    };
    let app = || app_with(store.clone(), listed.clone());

    let (_, allowed, _) = send(app(), preflight("https://grafana.example")).await;
    let (_, refused, _) = send(app(), preflight("https://evil.example")).await;
    let get_from_listed = request(
        "/api/v1/gpu/metrics",
        &[(header::ORIGIN, "https://grafana.example")],
    );
    let (_, answered, _) = send(app(), get_from_listed).await;

    assert_eq!(
        allowed[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://grafana.example"
    );
    assert!(!refused.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    for headers in [&allowed, &refused, &answered] {
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_name_that_is_not_utf8_is_a_400_envelope_not_a_plain_text_rejection() {
    let store = published(snapshot(1, vec![]), healthy());

    let (status, body) = get(app(store), "/api/v1/gpu/nodes/%FF").await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], json!("bad_request"));
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("/api/v1/gpu/nodes/%FF"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_query_value_that_is_not_utf8_is_a_400_naming_the_parameter_not_an_empty_filter() {
    let store = published(snapshot(1, vec![]), healthy());

    let (status, body) = get(app(store.clone()), "/api/v1/gpu/metrics?node=%ff").await;
    let (spaced, _) = get(app(store), "/api/v1/gpu/utilization?node=a+b,c%20d").await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], json!("bad_request"));
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("\"node\""), "{message}");
    assert_eq!(spaced, StatusCode::OK, "+ and %20 still decode to spaces");
}

#[tokio::test(start_paused = true)]
async fn etags_of_another_process_with_the_same_generation_do_not_match() {
    let ours = published(snapshot(5, vec![]), healthy());
    let theirs = Snapshot::new(
        5,
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_292_019_000),
        Instant::now(),
        vec![],
        vec![],
    );
    let (_, headers, _) = send(
        app(published(theirs, healthy())),
        Request::get("/api/v1/gpu/metrics")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let their_tag = headers[header::ETAG].clone();

    let request = Request::get("/api/v1/gpu/metrics")
        .header(header::IF_NONE_MATCH, their_tag)
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(ours), request).await;

    assert_eq!(status, StatusCode::OK);
}
