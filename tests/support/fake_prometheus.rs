//! A Prometheus whose answers the test decides, for the failures a real one cannot be made to
//! produce on demand: error statuses, slow or cut-off bodies, huge bodies, partial answers.
//!
//! It answers `GET /api/v1/query?query=Q` with the reply the test set for `Q`, or with an
//! empty vector when none was set, and records every request it saw. The poller's query of
//! the exporter targets, whose text depends on `poller.missing_after`, is known as [`UP`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name under which the fake knows the targets query (`up` and the exporters' health).
pub const UP: &str = "up";

/// The name a query is known by: its text, but [`UP`] for the targets query.
fn key(query: &str) -> String {
    if query.starts_with("(up and on (job, instance)") {
        UP.to_owned()
    } else {
        query.to_owned()
    }
}

/// What the fake answers to one query.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and body, after `delay`.
    Body {
        status: u16,
        body: Bytes,
        delay: Duration,
    },
    /// A 200 whose body stops after `sent` bytes of the given text and the connection breaks.
    CutOff { body: Bytes, sent: usize },
    /// A 200 that streams `total` bytes of JSON-looking filler in 64 KiB chunks, counting
    /// what it actually sent in [`FakePrometheus::bytes_streamed`].
    Endless { total: u64 },
}

impl Reply {
    /// A successful instant-vector answer with these series.
    pub fn vector(series: &[Series]) -> Reply {
        Reply::json(200, vector_document(series, &[]))
    }

    /// A Prometheus-style JSON document with this status.
    pub fn json(status: u16, document: Value) -> Reply {
        Reply::Body {
            status,
            body: Bytes::from(document.to_string()),
            delay: Duration::ZERO,
        }
    }

    /// Prometheus's error document: `{"status":"error","errorType":..,"error":..}`.
    pub fn error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"status": "error", "errorType": error_type, "error": message}),
        )
    }

    /// Any bytes with any status.
    pub fn raw(status: u16, body: &str) -> Reply {
        Reply::Body {
            status,
            body: Bytes::from(body.to_owned()),
            delay: Duration::ZERO,
        }
    }

    /// The same reply, sent only after `delay`.
    pub fn after(self, delay: Duration) -> Reply {
        match self {
            Reply::Body { status, body, .. } => Reply::Body {
                status,
                body,
                delay,
            },
            other => other,
        }
    }
}

/// One series of a vector answer: labels and the value as Prometheus writes it (a string).
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub value: String,
    /// The sample's timestamp in seconds; the answer's evaluation time when `None`.
    pub timestamp: Option<f64>,
}

impl Series {
    /// A series with these labels and this value.
    pub fn new(labels: &[(&str, &str)], value: &str) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: value.to_owned(),
            timestamp: None,
        }
    }
}

/// `{"status":"success","data":{"resultType":"vector","result":[...]}}`, with `extra`
/// top-level fields (`warnings`, `infos`, `isPartial`) merged in.
pub fn vector_document(series: &[Series], extra: &[(&str, Value)]) -> Value {
    let now = now_seconds();
    let result: Vec<Value> = series
        .iter()
        .map(|s| {
            let metric: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({"metric": metric, "value": [s.timestamp.unwrap_or(now), s.value]})
        })
        .collect();
    let mut document = json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result},
    });
    for (key, value) in extra {
        document[*key] = value.clone();
    }
    document
}

/// Seconds since the Unix epoch, as Prometheus writes sample times.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub query: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    replies: Mutex<HashMap<String, Reply>>,
    seen: Mutex<Vec<Seen>>,
    streamed: AtomicU64,
}

/// A running fake Prometheus on a free loopback port; it stops with the test's runtime.
#[derive(Clone)]
pub struct FakePrometheus {
    addr: SocketAddr,
    scheme: &'static str,
    inner: Arc<Inner>,
}

impl FakePrometheus {
    /// Starts the fake; every query answers an empty vector until told otherwise.
    pub async fn start() -> FakePrometheus {
        let listener = bind().await;
        let addr = listener.local_addr().expect("fake prometheus address");
        let inner = Arc::new(Inner::default());
        let app = router(&inner);
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakePrometheus {
            addr,
            scheme: "http",
            inner,
        }
    }

    /// Starts the fake behind TLS, presenting `pki`'s server certificate for 127.0.0.1.
    pub async fn start_tls(pki: &TestPki) -> FakePrometheus {
        let tcp = bind().await;
        let addr = tcp.local_addr().expect("fake prometheus address");
        let inner = Arc::new(Inner::default());
        let app = router(&inner);
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(pki.server_config())),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakePrometheus {
            addr,
            scheme: "https",
            inner,
        }
    }

    /// The base URL to configure as `prometheus.url`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// From now on, `query` is answered with `reply`.
    pub fn set(&self, query: &str, reply: Reply) {
        self.lock_replies().insert(query.to_owned(), reply);
    }

    /// From now on, `query` is answered with an empty vector again.
    pub fn clear(&self, query: &str) {
        self.lock_replies().remove(query);
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().expect("seen lock").clone()
    }

    /// How many requests asked `query`.
    pub fn count(&self, query: &str) -> usize {
        self.seen().iter().filter(|s| s.query == query).count()
    }

    /// Bytes that [`Reply::Endless`] answers have sent so far.
    pub fn bytes_streamed(&self) -> u64 {
        self.inner.streamed.load(Ordering::Relaxed)
    }

    fn lock_replies(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reply>> {
        self.inner.replies.lock().expect("replies lock")
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake prometheus")
}

fn router(inner: &Arc<Inner>) -> Router {
    Router::new()
        .route("/api/v1/query", get(answer))
        .with_state(Arc::clone(inner))
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestPki {
    /// The CA certificate, PEM, as `prometheus.ca_file` would hold it.
    pub ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A fresh CA and server certificate.
    pub fn generate() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "gpu-monitoring-api test ca");
        let ca = ca_params.self_signed(&ca_key).expect("ca certificate");

        let server_key = KeyPair::generate().expect("server key");
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let server = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server certificate");
        TestPki {
            ca_pem: ca.pem(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("server certificate and key match")
    }
}

/// Accepts TCP connections and completes the TLS handshake before handing them to axum.
/// Handshakes run one at a time and a failed one is dropped, which is all a test needs.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let query = key(params.get("query").map_or("", String::as_str));
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inner.seen.lock().expect("seen lock").push(Seen {
        query: query.clone(),
        authorization,
    });

    let reply = inner
        .replies
        .lock()
        .expect("replies lock")
        .get(&query)
        .cloned();
    match reply.unwrap_or_else(|| Reply::vector(&[])) {
        Reply::Body {
            status,
            body,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let status = StatusCode::from_u16(status).expect("test status code");
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Reply::CutOff { body, sent } => cut_off(body, sent),
        Reply::Endless { total } => endless(inner, total),
    }
}

/// A body that announces its full length, sends part of it, then fails, so that the client
/// sees the connection close mid-body. The pause before the failure lets hyper flush the head
/// and the part first; failing at once would drop them unsent.
fn cut_off(body: Bytes, sent: usize) -> Response {
    let length = body.len();
    let part = body.slice(..sent.min(length));
    let failure = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::other("the fake cuts the body off here"))
    });
    let chunks = futures::stream::once(async move { Ok(part) }).chain(failure);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(chunks))
        .expect("valid response")
}

fn endless(inner: Arc<Inner>, total: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let filler = Bytes::from(vec![b' '; CHUNK]);
    let chunks = total.div_ceil(CHUNK as u64);
    let head = Bytes::from_static(
        b"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}",
    );
    let stream = futures::stream::iter(
        std::iter::once(head).chain((0..chunks).map(move |_| filler.clone())),
    )
    .map(move |chunk| {
        inner
            .streamed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// One simulated GPU, for tests that need a plausible cluster rather than a particular failure.
#[derive(Debug, Clone)]
pub struct FakeGpu {
    pub uuid: String,
    pub node: String,
    pub utilization: f64,
}

impl FakeGpu {
    /// GPU `i` of `nodes` nodes, spread round-robin.
    pub fn numbered(i: usize, nodes: usize) -> FakeGpu {
        FakeGpu {
            uuid: format!("00000000-0000-0000-0000-{i:012x}"),
            node: format!("node-{:03}", i % nodes.max(1)),
            utilization: (i % 100) as f64 / 100.0,
        }
    }
}

impl FakePrometheus {
    /// Answers every query of the nvidia_smi family as an exporter page describing `gpus` would
    /// have Prometheus answer them.
    pub fn serve_gpus(&self, gpus: &[FakeGpu]) {
        use gpu_monitoring_api::exporter::{NVIDIA_SMI, Reading};

        let series = |gpu: &FakeGpu, extra: &[(&str, &str)], value: String| {
            let mut labels = vec![
                ("uuid", gpu.uuid.as_str()),
                ("node", gpu.node.as_str()),
                ("job", "nvidia_gpu_exporter"),
                ("instance", gpu.node.as_str()),
            ];
            labels.extend_from_slice(extra);
            Series::new(&labels, &value)
        };
        for metric in NVIDIA_SMI.values {
            let all: Vec<Series> = gpus
                .iter()
                .map(|gpu| {
                    let value = match metric.reading {
                        Reading::Utilization => gpu.utilization,
                        Reading::MemoryUsed => 20e9,
                        Reading::MemoryTotal => 80e9,
                        Reading::Temperature => 50.0,
                        Reading::PowerDraw => 300.0,
                        Reading::PowerLimit => 700.0,
                    };
                    series(gpu, &[], value.to_string())
                })
                .collect();
            self.set(metric.name, Reply::vector(&all));
        }
        let now = now_seconds().to_string();
        let info: Vec<Series> = gpus
            .iter()
            .map(|gpu| {
                let extra = [
                    ("name", "NVIDIA H100 80GB HBM3"),
                    ("driver_version", "590.48.01"),
                ];
                series(gpu, &extra, now.clone())
            })
            .collect();
        self.set(NVIDIA_SMI.info.query, Reply::vector(&info));

        let mut nodes: Vec<&str> = gpus.iter().map(|gpu| gpu.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let up: Vec<Series> = nodes
            .into_iter()
            .map(|node| {
                let labels = [
                    ("__name__", "up"),
                    ("node", node),
                    ("job", "nvidia_gpu_exporter"),
                    ("instance", node),
                ];
                Series::new(&labels, "1")
            })
            .collect();
        self.set(UP, Reply::vector(&up));
    }
}
