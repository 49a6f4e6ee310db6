//! The service against a real Prometheus scraping exporter pages written for these tests:
//! three nodes whose names reach Prometheus three different ways, a GPU in MIG mode without
//! utilization, a NaN temperature, an older exporter without power readings or index.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::prometheus::{Prometheus, Target};
use support::{ExporterPage, Service, eventually};

const DGX_01: &str = include_str!("data/dgx-01.prom");
const DGX_02: &str = include_str!("data/dgx-02.prom");
const WS_03: &str = include_str!("data/ws-03.prom");

/// Short timings, so that staleness and recovery happen within a test.
fn settings(prometheus_url: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{prometheus_url}\"\nquery_timeout = \"400ms\"\n\
         [poller]\ninterval = \"500ms\"\nstale_after = \"2s\"\n"
    )
}

/// Prometheus scraping the three test nodes: `node` on one, `kubernetes_node` on another,
/// nothing but `instance` on the third.
async fn cluster() -> Prometheus {
    let dgx_01 = support::serve_exporter_page(DGX_01).await;
    let dgx_02 = support::serve_exporter_page(DGX_02).await;
    let ws_03 = support::serve_exporter_page(WS_03).await;

    Prometheus::start(&[
        Target {
            addr: dgx_01,
            labels: vec![("node", "dgx-01".into())],
        },
        Target {
            addr: dgx_02,
            labels: vec![("kubernetes_node", "dgx-02".into())],
        },
        Target {
            addr: ws_03,
            labels: vec![],
        },
    ])
    .await
}

async fn start(prometheus: &Prometheus) -> Service {
    Service::start(&settings(&prometheus.url())).await
}

/// Waits until a complete poll has seen every GPU of every page.
async fn all_gpus_scraped(service: &Service) -> Value {
    eventually(
        Duration::from_secs(30),
        "all five GPUs from a complete poll",
        || async {
            let (status, body) = service.get("/api/v1/gpu/metrics").await;
            let gpus = body["data"]["gpus"].as_array()?;
            let complete = body["snapshot"]["complete"] == json!(true);
            let named = gpus.iter().all(|gpu| gpu["name"].is_string());
            (status == 200 && gpus.len() == 5 && complete && named).then_some(body)
        },
    )
    .await
}

/// The GPUs with `last_seen_at` checked to be a time within the last minute, then removed,
/// since its value is the time of the scrape.
fn without_last_seen(gpus: &Value) -> Value {
    let mut gpus = gpus.clone();
    for gpu in gpus.as_array_mut().expect("gpus") {
        let seen = gpu["last_seen_at"]
            .as_str()
            .expect("last_seen_at is a time");
        let seen = humantime::parse_rfc3339(seen).expect("RFC 3339");
        let age = std::time::SystemTime::now()
            .duration_since(seen)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "last seen {age:?} ago");
        gpu.as_object_mut()
            .expect("gpu object")
            .remove("last_seen_at");
    }
    gpus
}

fn ratio(used: f64, total: f64) -> f64 {
    (used / total * 1e6).round() / 1e6
}

#[tokio::test]
async fn every_endpoint_reports_the_values_on_the_exporter_pages() {
    let prometheus = cluster().await;
    let service = start(&prometheus).await;

    let metrics = all_gpus_scraped(&service).await;

    let h100 = "NVIDIA H100 80GB HBM3";
    let expected_gpus = json!([
        {"uuid": "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000005", "node": "127.0.0.1", "index": null,
         "name": "NVIDIA GeForce RTX 4080 SUPER", "driver_version": "595.71.05", "pci_bus_id": null,
         "utilization_ratio": 0.07, "memory_used_bytes": 1545601024u64,
         "memory_total_bytes": 17171480576u64, "memory_used_ratio": ratio(1545601024.0, 17171480576.0),
         "temperature_celsius": 46.0, "power_draw_watts": null, "power_limit_watts": null,
         "status": "ok", "anomalies": []},
        {"uuid": "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000001", "node": "dgx-01", "index": 0,
         "name": h100, "driver_version": "590.48.01", "pci_bus_id": "00000000:18:00.0",
         "utilization_ratio": 0.83, "memory_used_bytes": 20780679168u64,
         "memory_total_bytes": 85520809984u64, "memory_used_ratio": ratio(20780679168.0, 85520809984.0),
         "temperature_celsius": 59.0, "power_draw_watts": 631.95, "power_limit_watts": 700.0,
         "status": "ok", "anomalies": []},
        {"uuid": "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000002", "node": "dgx-01", "index": 1,
         "name": h100, "driver_version": "590.48.01", "pci_bus_id": "00000000:2A:00.0",
         "utilization_ratio": 0.41, "memory_used_bytes": 11665408000u64,
         "memory_total_bytes": 85520809984u64, "memory_used_ratio": ratio(11665408000.0, 85520809984.0),
         "temperature_celsius": 53.0, "power_draw_watts": 433.78, "power_limit_watts": 700.0,
         "status": "ok", "anomalies": []},
        {"uuid": "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000003", "node": "dgx-02", "index": 0,
         "name": "NVIDIA L40S", "driver_version": "595.80", "pci_bus_id": "00000000:01:00.0",
         "utilization_ratio": 0.09, "memory_used_bytes": 1294991360u64,
         "memory_total_bytes": 48305799168u64, "memory_used_ratio": ratio(1294991360.0, 48305799168.0),
         "temperature_celsius": null, "power_draw_watts": 110.23, "power_limit_watts": 350.0,
         "status": "ok", "anomalies": []},
        {"uuid": "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000004", "node": "dgx-02", "index": 1,
         "name": h100, "driver_version": "595.80", "pci_bus_id": "00000000:41:00.0",
         "utilization_ratio": null, "memory_used_bytes": 61865984u64,
         "memory_total_bytes": 85520809984u64, "memory_used_ratio": ratio(61865984.0, 85520809984.0),
         "temperature_celsius": 42.0, "power_draw_watts": 71.15, "power_limit_watts": 700.0,
         "status": "ok", "anomalies": []},
    ]);
    assert_eq!(without_last_seen(&metrics["data"]["gpus"]), expected_gpus);
    assert_eq!(metrics["success"], json!(true));
    assert_eq!(metrics["message"], json!("5 GPUs on 3 nodes"));
    assert_eq!(metrics["snapshot"]["errors"], json!([]));
    assert_eq!(metrics["snapshot"]["stale"], json!(false));
    assert_eq!(metrics["snapshot"]["poll_interval_seconds"], json!(0.5));

    let (status, nodes) = service.get("/api/v1/gpu/nodes").await;
    assert_eq!(status, 200);
    assert_eq!(
        nodes["data"]["nodes"],
        json!([
            {"name": "127.0.0.1", "exporter_up": true, "gpu_count": 1,
             "gpus": ["GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000005"],
             "models": ["NVIDIA GeForce RTX 4080 SUPER"], "utilization_avg_ratio": 0.07,
             "memory_used_bytes": 1545601024u64, "memory_total_bytes": 17171480576u64,
             "power_draw_watts": null, "power_limit_watts": null, "temperature_max_celsius": 46.0},
            {"name": "dgx-01", "exporter_up": true, "gpu_count": 2,
             "gpus": ["GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000001", "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000002"],
             "models": [h100], "utilization_avg_ratio": 0.62,
             "memory_used_bytes": 32446087168u64, "memory_total_bytes": 171041619968u64,
             "power_draw_watts": 1065.73, "power_limit_watts": 1400.0, "temperature_max_celsius": 59.0},
            {"name": "dgx-02", "exporter_up": true, "gpu_count": 2,
             "gpus": ["GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000003", "GPU-6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000004"],
             "models": [h100, "NVIDIA L40S"], "utilization_avg_ratio": 0.09,
             "memory_used_bytes": 1356857344u64, "memory_total_bytes": 133826609152u64,
             "power_draw_watts": 181.38, "power_limit_watts": 1050.0, "temperature_max_celsius": 42.0},
        ])
    );

    let (status, utilization) = service.get("/api/v1/gpu/utilization").await;
    assert_eq!(status, 200);
    assert_eq!(utilization["data"]["average_ratio"], json!(0.35));
    let views: Vec<_> = utilization["data"]["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .map(|g| (g["node"].clone(), g["utilization_ratio"].clone()))
        .collect();
    assert_eq!(
        views,
        [
            (json!("127.0.0.1"), json!(0.07)),
            (json!("dgx-01"), json!(0.83)),
            (json!("dgx-01"), json!(0.41)),
            (json!("dgx-02"), json!(0.09)),
            (json!("dgx-02"), json!(null)),
        ]
    );

    let (status, health) = service.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["data"]["status"], json!("ok"));
    assert_eq!(health["data"]["prometheus"]["reachable"], json!(true));
    assert_eq!(health["data"]["prometheus"]["last_error"], json!(null));
    assert_eq!(
        health["data"]["prometheus"]["url"],
        json!(format!("{}/", prometheus.url()))
    );
}

#[tokio::test]
async fn an_outage_serves_the_last_snapshot_turns_stale_and_recovers_by_itself() {
    let mut prometheus = cluster().await;
    let service = start(&prometheus).await;
    let before = all_gpus_scraped(&service).await;

    prometheus.stop().await;

    let health = eventually(
        Duration::from_secs(10),
        "health to say degraded",
        || async {
            let (status, body) = service.get("/api/health").await;
            (status == 200 && body["data"]["status"] == json!("degraded")).then_some(body)
        },
    )
    .await;
    assert_eq!(health["data"]["prometheus"]["reachable"], json!(false));
    let last_error = health["data"]["prometheus"]["last_error"]
        .as_str()
        .expect("error");
    assert!(
        last_error.contains("cannot reach prometheus"),
        "{last_error}"
    );

    let stale = eventually(
        Duration::from_secs(10),
        "the data to turn stale",
        || async {
            let (_, body) = service.get("/api/v1/gpu/metrics").await;
            (body["snapshot"]["stale"] == json!(true)).then_some(body)
        },
    )
    .await;
    assert_eq!(
        stale["data"]["gpus"], before["data"]["gpus"],
        "the last data is still served"
    );
    assert!(stale["snapshot"]["age_seconds"].as_f64().expect("age") >= 2.0);
    let generation = stale["snapshot"]["generation"]
        .as_u64()
        .expect("generation");

    prometheus.restart().await;

    let recovered = eventually(Duration::from_secs(30), "health to be ok again", || async {
        let (status, body) = service.get("/api/health").await;
        (status == 200 && body["data"]["status"] == json!("ok")).then_some(body)
    })
    .await;
    assert!(
        recovered["snapshot"]["generation"]
            .as_u64()
            .expect("generation")
            > generation
    );
    assert_eq!(recovered["snapshot"]["stale"], json!(false));
    assert_eq!(recovered["data"]["prometheus"]["reachable"], json!(true));
}

#[tokio::test]
async fn before_prometheus_answers_there_is_nothing_to_serve() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed = unused.local_addr().expect("addr");
    drop(unused);
    let service = Service::start(&settings(&format!("http://{closed}"))).await;

    let health = eventually(Duration::from_secs(10), "a failed first poll", || async {
        let (status, body) = service.get("/api/health").await;
        (status == 503 && body["data"]["prometheus"]["reachable"] == json!(false)).then_some(body)
    })
    .await;
    assert_eq!(health["data"]["status"], json!("unavailable"));
    assert_eq!(health["snapshot"], json!(null));

    let (status, metrics) = service.get("/api/v1/gpu/metrics").await;
    assert_eq!(status, 503);
    assert_eq!(metrics["error"]["code"], json!("no_data"));
    assert_eq!(metrics["data"], json!(null));
    let (status, _) = service.get("/readyz").await;
    assert_eq!(status, 503);
    let (status, _) = service.get("/livez").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_prometheus_without_gpu_series_is_reported_as_degraded_not_as_an_idle_cluster() {
    let empty = support::serve_exporter_page("# no GPUs here\n").await;
    let prometheus = Prometheus::start(&[Target {
        addr: empty,
        labels: vec![],
    }])
    .await;
    let service = start(&prometheus).await;

    let health = eventually(Duration::from_secs(10), "a first snapshot", || async {
        let (status, body) = service.get("/api/health").await;
        (status == 200).then_some(body)
    })
    .await;

    assert_eq!(health["data"]["status"], json!("degraded"));
    let last_error = health["data"]["prometheus"]["last_error"]
        .as_str()
        .expect("error");
    assert!(
        last_error.contains("no series of any nvidia_smi_* metric"),
        "{last_error}"
    );
    let (status, metrics) = service.get("/api/v1/gpu/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metrics["data"]["gpus"], json!([]));
    assert_eq!(metrics["message"], json!("0 GPUs on 0 nodes"));
}

/// Two named nodes whose exporters the test controls, with short GPU ageing.
async fn two_nodes(missing_after: &str) -> (Prometheus, ExporterPage, ExporterPage, Service) {
    let dgx_01 = ExporterPage::serve(DGX_01).await;
    let dgx_02 = ExporterPage::serve(DGX_02).await;
    let prometheus = Prometheus::start(&[
        Target {
            addr: dgx_01.addr,
            labels: vec![("node", "dgx-01".into())],
        },
        Target {
            addr: dgx_02.addr,
            labels: vec![("node", "dgx-02".into())],
        },
    ])
    .await;
    let settings = format!(
        "{}missing_after = \"{missing_after}\"\n",
        settings(&prometheus.url())
    );
    let service = Service::start(&settings).await;
    eventually(Duration::from_secs(30), "four GPUs, all ok", || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        let gpus = body["data"]["gpus"].as_array()?;
        let ok = gpus
            .iter()
            .all(|gpu| gpu["status"] == json!("ok") && gpu["name"].is_string());
        (gpus.len() == 4 && ok).then_some(())
    })
    .await;
    (prometheus, dgx_01, dgx_02, service)
}

fn gpus_of<'a>(body: &'a Value, node: &str) -> Vec<&'a Value> {
    body["data"]["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .filter(|gpu| gpu["node"] == json!(node))
        .collect()
}

#[tokio::test]
async fn a_dead_exporter_keeps_its_gpus_listed_as_stale_and_its_node_down() {
    let (_prometheus, _dgx_01, dgx_02, service) = two_nodes("10m").await;

    dgx_02.stop();

    let body = eventually(Duration::from_secs(30), "dgx-02's GPUs stale", || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        let stale = gpus_of(&body, "dgx-02")
            .iter()
            .all(|gpu| gpu["status"] == json!("stale"));
        stale.then_some(body)
    })
    .await;
    let dead = gpus_of(&body, "dgx-02");
    assert_eq!(dead.len(), 2);
    for gpu in &dead {
        assert_eq!(gpu["memory_used_bytes"], json!(null), "{gpu}");
        assert_eq!(gpu["power_draw_watts"], json!(null), "{gpu}");
        assert!(gpu["name"].is_string(), "{gpu}");
        assert!(gpu["last_seen_at"].is_string(), "{gpu}");
    }
    for gpu in gpus_of(&body, "dgx-01") {
        assert_eq!(gpu["status"], json!("ok"), "{gpu}");
    }

    let (_, nodes) = service.get("/api/v1/gpu/nodes").await;
    let up: Vec<_> = nodes["data"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].clone(),
                n["exporter_up"].clone(),
                n["gpu_count"].clone(),
            )
        })
        .collect();
    assert_eq!(
        up,
        [
            (json!("dgx-01"), json!(true), json!(2)),
            (json!("dgx-02"), json!(false), json!(2)),
        ]
    );
    assert_eq!(nodes["data"]["nodes"][1]["power_draw_watts"], json!(null));

    let (_, health) = service.get("/api/health").await;
    assert_eq!(
        health["data"]["gpus"],
        json!({"ok": 2, "stale": 2, "missing": 0})
    );
}

#[tokio::test]
async fn a_gpu_gone_from_a_live_exporter_is_missing_then_dropped() {
    let (_prometheus, dgx_01, _dgx_02, service) = two_nodes("4s").await;
    let gone = "6b1f2f7a-1b7e-4c1e-9d7a-3e2a10000002";
    let without: Vec<&str> = DGX_01.lines().filter(|line| !line.contains(gone)).collect();

    dgx_01.set(&without.join("\n"));

    let body = eventually(Duration::from_secs(30), "the GPU missing", || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        let missing = gpus_of(&body, "dgx-01")
            .iter()
            .any(|gpu| gpu["status"] == json!("missing"));
        missing.then_some(body)
    })
    .await;
    let on_node = gpus_of(&body, "dgx-01");
    assert_eq!(on_node.len(), 2);
    let missing = on_node
        .iter()
        .find(|gpu| gpu["status"] == json!("missing"))
        .expect("missing gpu");
    assert_eq!(missing["uuid"], json!(format!("GPU-{gone}")));
    assert_eq!(missing["utilization_ratio"], json!(null));
    assert!(missing["last_seen_at"].is_string());
    let (_, node) = service.get("/api/v1/gpu/nodes/dgx-01").await;
    assert_eq!(node["data"]["node"]["exporter_up"], json!(true));
    assert_eq!(node["data"]["node"]["utilization_avg_ratio"], json!(0.83));

    eventually(Duration::from_secs(30), "the GPU dropped", || async {
        let (_, body) = service.get("/api/v1/gpu/metrics").await;
        (gpus_of(&body, "dgx-01").len() == 1).then_some(())
    })
    .await;
}
