//! Slow and many clients against the real service over TCP: none of them can stop it from
//! answering everybody else.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::fake_prometheus::{FakeGpu, FakePrometheus};
use support::{Service, eventually};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Far longer than any wait the service is configured for here, so that only a service that
/// never lets go fails.
const GENEROUS: Duration = Duration::from_secs(10);

/// One keep-alive HTTP/1.1 connection, spoken by hand so that the test controls exactly
/// which bytes are sent and how many connections there are.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        Ok(Connection {
            stream: BufReader::new(stream),
        })
    }

    /// Sends a GET and reads the whole answer: status and body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: gpu-api\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let status = self.status().await?;
        let length = self.content_length().await?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }

    async fn status(&mut self) -> std::io::Result<u16> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))
    }

    async fn content_length(&mut self) -> std::io::Result<usize> {
        let mut length = None;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                }
            }
        }
        length.ok_or_else(|| std::io::Error::other("response without content-length"))
    }
}

/// Reads until the server closes the connection, returning what it sent; a reset counts as
/// closed too. Panics if the server keeps the connection open past [`GENEROUS`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(GENEROUS, stream.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "the service kept the connection open");
    received
}

async fn livez_answers(service: &Service) {
    let mut connection = Connection::open(service.addr).await.expect("connect");
    let (status, _) = connection.get("/livez").await.expect("livez");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_line_is_disconnected() {
    let service = Service::start("[server]\nheader_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(service.addr).await.expect("connect");

    stream
        .write_all(b"GET /api/v1/gpu/met")
        .await
        .expect("send");
    until_closed(&mut stream).await;

    livez_answers(&service).await;
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let service = Service::start("[server]\nheader_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(service.addr).await.expect("connect");
    stream
        .write_all(b"GET /livez HTTP/1.1\r\n")
        .await
        .expect("send");

    let trickle = async {
        for _ in 0..100 {
            if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stopped = tokio::time::timeout(GENEROUS, trickle).await;

    assert!(stopped.is_ok(), "a trickling client was kept for 10s");
    until_closed(&mut stream).await;
}

#[tokio::test]
async fn keep_alive_answers_several_requests_on_one_connection() {
    let service = Service::start("").await;
    let mut connection = Connection::open(service.addr).await.expect("connect");

    for _ in 0..3 {
        let (status, body) = connection.get("/livez").await.expect("answer");
        assert_eq!(status, 200);
        let envelope: Value = serde_json::from_slice(&body).expect("JSON envelope");
        assert_eq!(envelope["success"], true);
    }
}

#[tokio::test]
async fn an_endless_request_line_or_header_block_is_cut_off_and_the_service_keeps_serving() {
    // A header deadline longer than the test, so that only the buffer limit can end it.
    let service = Service::start("[server]\nheader_read_timeout = \"60s\"").await;
    let filler = "a".repeat(80 * 1024);
    let endless_line = format!("GET /{filler}");
    let endless_header = format!("GET /livez HTTP/1.1\r\nx-filler: {filler}");

    for head in [endless_line, endless_header] {
        let mut stream = TcpStream::connect(service.addr).await.expect("connect");
        // The service may stop reading, and reset the connection, before all is sent.
        let _ = stream.write_all(head.as_bytes()).await;

        let received = until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&received);
        assert!(
            received.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
    }

    livez_answers(&service).await;
}

#[tokio::test]
async fn an_open_event_stream_does_not_count_against_the_request_limit() {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1)]);
    let service = Service::start(&format!(
        "[server]\nmax_concurrent_requests = 1\n[prometheus]\nurl = \"{}\"\n",
        fake.url()
    ))
    .await;

    let stream = reqwest::get(format!("{}/api/v1/gpu/stream", service.base))
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), 200);

    for _ in 0..3 {
        livez_answers(&service).await;
    }
    drop(stream);
}

const CONNECTIONS: usize = 1000;
const REQUESTS_PER_CONNECTION: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);
const PATHS: [&str; 5] = [
    "/api/v1/gpu/utilization",
    "/api/v1/gpu/nodes",
    "/api/health",
    "/api/v1/gpu/metrics",
    "/livez",
];

/// What one connection saw: how many answers, and the newest snapshot among them.
#[derive(Default)]
struct Seen {
    answers: usize,
    newest_generation: u64,
}

/// Requests over one connection until the run ends; any failure is returned, not counted.
async fn keep_asking(
    addr: SocketAddr,
    first: usize,
    until: std::time::Instant,
) -> Result<Seen, String> {
    let mut connection = Connection::open(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut seen = Seen::default();
    for i in 0..REQUESTS_PER_CONNECTION {
        if std::time::Instant::now() >= until {
            break;
        }
        let path = PATHS[(first + i) % PATHS.len()];
        let (status, body) = connection
            .get(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let envelope: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{path}: not JSON: {e}"))?;
        if status != 200 || envelope["success"] != true || !envelope["error"].is_null() {
            return Err(format!("{path}: {status} {envelope}"));
        }
        if let Some(generation) = envelope["snapshot"]["generation"].as_u64() {
            seen.newest_generation = seen.newest_generation.max(generation);
        }
        seen.answers += 1;
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keep_alive_connections_are_all_answered_while_polls_publish() {
    let fake = FakePrometheus::start().await;
    let gpus: Vec<_> = (0..64).map(|i| FakeGpu::numbered(i, 8)).collect();
    fake.serve_gpus(&gpus);
    let service = Service::start(&format!(
        "[prometheus]\nurl = \"{}\"\nquery_timeout = \"50ms\"\n\
         [poller]\ninterval = \"100ms\"\n",
        fake.url()
    ))
    .await;
    let first_generation = eventually(GENEROUS, "a first snapshot", || async {
        let (status, body) = service.get("/api/v1/gpu/metrics").await;
        (status == 200).then(|| body["snapshot"]["generation"].as_u64())?
    })
    .await;

    let until = std::time::Instant::now() + RUN_FOR;
    let mut clients = JoinSet::new();
    for first in 0..CONNECTIONS {
        clients.spawn(keep_asking(service.addr, first, until));
    }
    let mut answers = 0;
    let mut newest = 0;
    while let Some(outcome) = clients.join_next().await {
        let seen = outcome
            .expect("client task")
            .expect("every request is answered");
        answers += seen.answers;
        newest = newest.max(seen.newest_generation);
    }

    assert!(answers > 0);
    assert!(
        newest > first_generation,
        "no new snapshot was published during the run (generation {first_generation})"
    );
}
