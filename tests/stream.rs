//! The event stream on hand-built snapshots: order, resume, skipping, keep-alive, limits,
//! and a subscriber that never reads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gpu_monitoring_api::api::{self, AppState, HttpSettings};
use gpu_monitoring_api::config::AllowedOrigins;
use gpu_monitoring_api::snapshot::{Gpu, GpuId, NodeName, Snapshot, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn snapshot(generation: u64, gpus_per_node: usize) -> Snapshot {
    let gpus = ["a", "b"]
        .iter()
        .flat_map(|node| {
            (0..gpus_per_node).map(move |i| {
                let mut gpu = Gpu::new(GpuId::parse(&format!("{node}{i:06}")).expect("id"));
                gpu.node = Some(NodeName::parse(node).expect("node"));
                gpu.index = Some(i as u32);
                gpu.name = Some(format!(
                    "model with a long name to make the body larger {i}"
                ));
                gpu.utilization_ratio = Some(generation as f64 / 100.0);
                gpu
            })
        })
        .collect();
    Snapshot::new(generation, SystemTime::now(), Instant::now(), gpus, vec![])
}

fn state(store: Arc<Store>, shutdown: CancellationToken) -> AppState {
    AppState {
        store,
        poll_interval: Duration::from_secs(5),
        stale_after: Duration::from_secs(15),
        prometheus_url: "http://prometheus:9090/".into(),
        subscribers: Arc::default(),
        max_stream_subscribers: 2,
        shutdown,
    }
}

fn router(state: AppState) -> Router {
    let settings = HttpSettings {
        request_timeout: Duration::from_secs(1),
        cors_allowed_origins: AllowedOrigins::Any,
        max_concurrent_requests: 64,
    };
    api::router(state, &settings)
}

async fn open(app: Router, uri: &str, last_event: Option<&str>) -> (StatusCode, Body) {
    let mut request = Request::get(uri);
    if let Some(id) = last_event {
        request = request.header("last-event-id", id);
    }
    let response = app
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("router is infallible");
    (response.status(), response.into_body())
}

/// Reads frames until one whole event (or comment) ending in a blank line has arrived.
async fn next_event(body: &mut Body) -> String {
    let mut text = String::new();
    while !text.ends_with("\n\n") {
        let frame = body
            .frame()
            .await
            .expect("stream still open")
            .expect("frame");
        let data = frame.into_data().expect("a data frame");
        text.push_str(std::str::from_utf8(&data).expect("utf-8"));
    }
    text
}

fn parse(event: &str) -> (u64, Value) {
    let mut lines = event.lines();
    let id = lines
        .next()
        .and_then(|l| l.strip_prefix("id: "))
        .expect("id line");
    assert_eq!(lines.next(), Some("event: snapshot"));
    let data = lines
        .next()
        .and_then(|l| l.strip_prefix("data: "))
        .expect("data line");
    (
        id.parse().expect("numeric id"),
        serde_json::from_str(data).expect("JSON envelope"),
    )
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_gets_the_current_snapshot_then_each_new_generation_in_order() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 2));
    let (status, mut body) = open(
        router(state(store.clone(), CancellationToken::new())),
        "/api/v1/gpu/stream",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (first, envelope) = parse(&next_event(&mut body).await);
    store.publish(snapshot(2, 2));
    let (second, _) = parse(&next_event(&mut body).await);
    store.publish(snapshot(3, 2));
    let (third, latest) = parse(&next_event(&mut body).await);

    assert_eq!([first, second, third], [1, 2, 3]);
    assert_eq!(envelope["data"]["gpus"].as_array().expect("gpus").len(), 4);
    assert_eq!(envelope["snapshot"]["generation"], json!(1));
    assert_eq!(latest["data"]["gpus"][0]["utilization_ratio"], json!(0.03));
}

#[tokio::test(start_paused = true)]
async fn last_event_id_of_the_current_generation_waits_for_the_next_one() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(7, 1));
    let app = router(state(store.clone(), CancellationToken::new()));
    let (_, mut body) = open(app, "/api/v1/gpu/stream", Some("7")).await;

    let early = tokio::time::timeout(Duration::from_secs(1), next_event(&mut body)).await;
    assert!(
        early.is_err(),
        "nothing is sent for a generation the client has"
    );

    store.publish(snapshot(8, 1));
    assert_eq!(parse(&next_event(&mut body).await).0, 8);
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_skips_to_the_newest_snapshot() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 1));
    let (_, mut body) = open(
        router(state(store.clone(), CancellationToken::new())),
        "/api/v1/gpu/stream",
        None,
    )
    .await;
    assert_eq!(parse(&next_event(&mut body).await).0, 1);

    for generation in 2..=5 {
        store.publish(snapshot(generation, 1));
    }

    assert_eq!(parse(&next_event(&mut body).await).0, 5);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_comment_every_15_seconds() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 1));
    let (_, mut body) = open(
        router(state(store, CancellationToken::new())),
        "/api/v1/gpu/stream",
        None,
    )
    .await;
    next_event(&mut body).await;

    let started = Instant::now();
    let comment = next_event(&mut body).await;

    assert_eq!(comment, ": keep-alive\n\n");
    assert_eq!(started.elapsed(), Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn views_and_node_filters_shape_the_events() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 3));
    let app = router(state(store, CancellationToken::new()));

    let (_, mut nodes) = open(app.clone(), "/api/v1/gpu/stream?view=nodes", None).await;
    let (_, mut util) = open(
        app.clone(),
        "/api/v1/gpu/stream?view=utilization&node=b",
        None,
    )
    .await;
    let (status, _) = open(app, "/api/v1/gpu/stream?view=temperature", None).await;

    let (_, nodes) = parse(&next_event(&mut nodes).await);
    let (_, util) = parse(&next_event(&mut util).await);
    assert_eq!(nodes["data"]["nodes"].as_array().expect("nodes").len(), 2);
    assert_eq!(util["data"]["gpus"].as_array().expect("gpus").len(), 3);
    assert_eq!(util["message"], json!("3 GPUs on 1 node"));
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn subscribers_beyond_the_limit_get_503_until_one_leaves() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 1));
    let app = router(state(store, CancellationToken::new()));

    let (_, one) = open(app.clone(), "/api/v1/gpu/stream", None).await;
    let (_, _two) = open(app.clone(), "/api/v1/gpu/stream", None).await;
    let refused_response = app
        .clone()
        .oneshot(
            Request::get("/api/v1/gpu/stream")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router is infallible");
    let retry_after = refused_response.headers().get(header::RETRY_AFTER).cloned();
    let (status, mut refused) = (refused_response.status(), refused_response.into_body());
    let refused = refused
        .frame()
        .await
        .expect("body")
        .expect("frame")
        .into_data()
        .expect("data");
    let refused: Value = serde_json::from_slice(&refused).expect("envelope");
    drop(one);
    let (again, _) = open(app, "/api/v1/gpu/stream", None).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused["error"]["code"], json!("too_many_subscribers"));
    assert_eq!(
        refused["error"]["message"],
        json!("2 streams are open, the most this service allows; retry later or poll instead")
    );
    assert_eq!(retry_after, Some(header::HeaderValue::from_static("30")));
    assert_eq!(again, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn streams_end_on_shutdown() {
    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 1));
    let shutdown = CancellationToken::new();
    let (_, mut body) = open(
        router(state(store, shutdown.clone())),
        "/api/v1/gpu/stream",
        None,
    )
    .await;
    next_event(&mut body).await;

    shutdown.cancel();

    assert!(body.frame().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_grow_memory() {
    use tokio::io::AsyncWriteExt;

    let store = Arc::new(Store::new());
    store.publish(snapshot(1, 1_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = router(state(store.clone(), CancellationToken::new()));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /api/v1/gpu/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes();

    let body_size = store
        .snapshot()
        .expect("published")
        .rendered
        .metrics
        .whole
        .raw
        .len();
    for generation in 2..=100 {
        store.publish(snapshot(generation, 1_000));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let growth = resident_bytes().saturating_sub(before);

    let published = 99 * body_size;
    assert!(
        growth < published / 4,
        "resident memory grew by {growth} bytes while {published} bytes of events were published"
    );
    drop(idle);
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("resident")
        .parse()
        .expect("number");
    pages * 4096
}
