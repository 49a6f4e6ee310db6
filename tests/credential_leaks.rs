//! No credential ever leaves the process except in the Authorization header it is meant for.
//!
//! A distinctive secret is planted as a bearer token, a basic-auth password and a URL
//! password in turn; the real binary runs with `RUST_LOG=trace` through every failure a
//! Prometheus can produce, and its stdout, stderr and every body it served are searched for
//! the secret. The fake checks the credential really was sent, so that a service that simply
//! dropped it could not pass.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use support::eventually;
use support::fake_prometheus::{FakeGpu, FakePrometheus, Reply, Series, TestPki, vector_document};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_gpu-monitoring-api");
const SECRET: &str = "Xk9-canary-7Qp2vL";
const USER: &str = "grafana";

/// Where the planted secret lives.
#[derive(Clone, Copy, Debug)]
enum Planted {
    BearerFile,
    PasswordFile,
    UrlUserinfo,
}

impl Planted {
    /// The `[prometheus]` lines that plant the secret, writing any file into `dir`.
    fn settings(self, dir: &Path, url: &str) -> String {
        let file = dir.join("secret");
        std::fs::write(&file, format!("{SECRET}\n")).expect("write secret file");
        let file = file.display();
        match self {
            Planted::BearerFile => format!("url = \"{url}\"\nbearer_token_file = \"{file}\""),
            Planted::PasswordFile => {
                format!("url = \"{url}\"\nusername = \"{USER}\"\npassword_file = \"{file}\"")
            }
            Planted::UrlUserinfo => {
                let with_userinfo = url.replacen("://", &format!("://{USER}:{SECRET}@"), 1);
                format!("url = \"{with_userinfo}\"")
            }
        }
    }

    /// The Authorization header the fake must receive.
    fn header(self) -> String {
        match self {
            Planted::BearerFile => format!("Bearer {SECRET}"),
            Planted::PasswordFile | Planted::UrlUserinfo => {
                format!("Basic {}", STANDARD.encode(format!("{USER}:{SECRET}")))
            }
        }
    }
}

/// Every form in which the secret would be recognisable.
fn forbidden(planted: Planted) -> Vec<String> {
    vec![SECRET.to_owned(), planted.header(), STANDARD.encode(SECRET)]
}

/// Everything the running binary said or served, shared with the readers of its output.
#[derive(Clone, Default)]
struct Transcript(Arc<Mutex<String>>);

impl Transcript {
    fn push(&self, text: &str) {
        let mut all = self.0.lock().expect("transcript lock");
        all.push_str(text);
        all.push('\n');
    }

    fn text(&self) -> String {
        self.0.lock().expect("transcript lock").clone()
    }

    fn assert_free_of(&self, planted: Planted, what: &str) {
        let text = self.text();
        for secret in forbidden(planted) {
            assert!(
                !text.contains(&secret),
                "{what} with {planted:?}: {secret:?} leaked into:\n{text}"
            );
        }
        assert!(!text.contains("panicked"), "{what}: a panic:\n{text}");
    }
}

/// The binary, started on a free port with a config file, its output read as it comes.
struct Binary {
    child: Child,
    base: String,
    transcript: Transcript,
    readers: Vec<JoinHandle<()>>,
}

fn command(config: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("--config")
        .arg(config)
        .env_remove("PORT")
        .env_remove("PROMETHEUS_URL")
        .env_remove("GPU_API_CONFIG")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A config file in `dir` with short timings, a 1 MiB answer limit and `prometheus` lines.
fn write_config(dir: &Path, prometheus: &str) -> std::path::PathBuf {
    let path = dir.join("gpu.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [prometheus]\n{prometheus}\nquery_timeout = \"300ms\"\nmax_response_bytes = \"1MiB\"\n\
         [poller]\ninterval = \"500ms\"\nstale_after = \"2s\"\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn read_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    transcript: Transcript,
    address: Option<tokio::sync::oneshot::Sender<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut address = address;
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            transcript.push(&line);
            if let Some((_, rest)) = line.split_once("address=")
                && let Some(sender) = address.take()
            {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = sender.send(addr.to_owned());
            }
        }
    })
}

impl Binary {
    async fn start(config: &Path) -> Binary {
        let mut child = command(config).spawn().expect("binary starts");
        let transcript = Transcript::default();
        let (sender, address) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let readers = vec![
            read_lines(stdout, transcript.clone(), None),
            read_lines(stderr, transcript.clone(), Some(sender)),
        ];
        let address = tokio::time::timeout(Duration::from_secs(20), address)
            .await
            .expect("the binary logs its address in time")
            .expect("a listening line");
        Binary {
            child,
            base: format!("http://{address}"),
            transcript,
            readers,
        }
    }

    /// GETs `path`, keeping the body in the transcript.
    async fn get(&self, path: &str) -> Value {
        let response = reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("the binary answers");
        let text = response.text().await.expect("body arrives");
        self.transcript.push(&text);
        serde_json::from_str(&text).expect("body is JSON")
    }

    /// Waits until the health endpoint's last error satisfies `accept`.
    async fn last_error_where(&self, what: &str, accept: impl Fn(&str) -> bool) {
        eventually(Duration::from_secs(20), what, || async {
            let health = self.get("/api/health").await;
            let error = health["data"]["prometheus"]["last_error"].as_str()?;
            accept(error).then_some(())
        })
        .await;
    }

    /// Waits until every `(metric, marker)` has failed with a reason containing its marker.
    async fn failures(&self, expected: &[(&str, &str)]) {
        eventually(Duration::from_secs(20), "the planned failures", || async {
            let body = self.get("/api/v1/gpu/metrics").await;
            self.get("/api/health").await;
            let errors = body["snapshot"]["errors"].as_array()?;
            let found = |metric: &str, marker: &str| {
                errors.iter().any(|e| {
                    e["metric"] == metric
                        && e["reason"].as_str().is_some_and(|r| r.contains(marker))
                })
            };
            expected
                .iter()
                .all(|(m, marker)| found(m, marker))
                .then_some(())
        })
        .await;
    }

    /// Stops the binary with SIGTERM and returns everything it said or served.
    async fn stop(mut self) -> Transcript {
        support::terminate(&self.child).await;
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits within the grace period")
            .expect("exit status");
        for reader in self.readers {
            reader.await.expect("output reader");
        }
        self.transcript
    }
}

/// Every failure of an answering Prometheus, six metrics at a time; the info query keeps
/// answering so that each poll is partial and reports its errors.
async fn run_through_http_failures(fake: &FakePrometheus, binary: &Binary) {
    let cut_off = || {
        let series = [Series::new(&[("uuid", "GPU-1")], "1")];
        let body = bytes::Bytes::from(vector_document(&series, &[]).to_string());
        let sent = body.len() / 2;
        Reply::CutOff { body, sent }
    };
    let rounds: [[(&str, Reply, &str); 6]; 2] = [
        [
            (
                "nvidia_smi_utilization_gpu_ratio",
                Reply::error(400, "bad_data", "parse error"),
                "400",
            ),
            (
                "nvidia_smi_memory_used_bytes",
                Reply::error(401, "unauthorized", "who are you"),
                "401",
            ),
            (
                "nvidia_smi_memory_total_bytes",
                Reply::error(403, "forbidden", "not you"),
                "403",
            ),
            (
                "nvidia_smi_temperature_gpu",
                Reply::error(422, "execution", "query aborted"),
                "422",
            ),
            (
                "nvidia_smi_power_draw_watts",
                Reply::error(429, "too_many", "slow down"),
                "429",
            ),
            (
                "nvidia_smi_enforced_power_limit_watts",
                Reply::error(500, "internal", "oops"),
                "500",
            ),
        ],
        [
            (
                "nvidia_smi_utilization_gpu_ratio",
                Reply::error(503, "unavailable", "starting"),
                "503",
            ),
            (
                "nvidia_smi_memory_used_bytes",
                Reply::raw(200, "<html>proxy page</html>"),
                "not a Prometheus API document",
            ),
            ("nvidia_smi_memory_total_bytes", cut_off(), "broke off"),
            (
                "nvidia_smi_temperature_gpu",
                Reply::Endless { total: 256 << 20 },
                "max_response_bytes",
            ),
            (
                "nvidia_smi_power_draw_watts",
                Reply::vector(&[]).after(Duration::from_secs(5)),
                "no answer within",
            ),
            (
                "nvidia_smi_enforced_power_limit_watts",
                Reply::raw(502, "<html>bad gateway</html>"),
                "502",
            ),
        ],
    ];
    for round in rounds {
        let mut expected = Vec::new();
        for (metric, reply, marker) in round {
            fake.set(metric, reply);
            expected.push((metric, marker));
        }
        binary.failures(&expected).await;
    }
}

async fn an_answering_prometheus_never_sees_its_failures_leak(planted: Planted) {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1)]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = write_config(dir.path(), &planted.settings(dir.path(), &fake.url()));
    let binary = Binary::start(&config).await;

    run_through_http_failures(&fake, &binary).await;

    let transcript = binary.stop().await;
    let text = transcript.text();
    assert!(
        text.contains(" TRACE ") && text.contains("broke off after"),
        "the transcript holds trace logs and the reasons served"
    );
    transcript.assert_free_of(planted, "failing answers");
    let seen = fake.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.authorization == Some(planted.header())),
        "the fake did not get the credential on every request"
    );
}

async fn an_unreachable_prometheus_never_sees_its_failures_leak(planted: Planted) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = write_config(dir.path(), &planted.settings(dir.path(), &url));
    let binary = Binary::start(&config).await;

    binary
        .last_error_where("connection refused", |e| e.contains("onnection refused"))
        .await;

    binary
        .stop()
        .await
        .assert_free_of(planted, "connection refused");
}

async fn a_tls_failure_never_leaks(planted: Planted) {
    let pki = TestPki::generate();
    let fake = FakePrometheus::start_tls(&pki).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = write_config(dir.path(), &planted.settings(dir.path(), &fake.url()));
    let binary = Binary::start(&config).await;

    binary
        .last_error_where("a certificate error", |e| {
            e.contains("invalid peer certificate")
        })
        .await;

    binary.stop().await.assert_free_of(planted, "tls failure");
    assert!(
        fake.seen().is_empty(),
        "nothing is sent before the handshake"
    );
}

async fn every_failure_path(planted: Planted) {
    an_answering_prometheus_never_sees_its_failures_leak(planted).await;
    an_unreachable_prometheus_never_sees_its_failures_leak(planted).await;
    a_tls_failure_never_leaks(planted).await;
}

#[tokio::test]
async fn a_bearer_token_never_leaks_on_any_failure_path() {
    every_failure_path(Planted::BearerFile).await;
}

#[tokio::test]
async fn a_basic_auth_password_file_never_leaks_on_any_failure_path() {
    every_failure_path(Planted::PasswordFile).await;
}

#[tokio::test]
async fn a_url_password_never_leaks_on_any_failure_path() {
    every_failure_path(Planted::UrlUserinfo).await;
}

#[tokio::test]
async fn a_bad_configuration_never_repeats_the_password_it_holds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).expect("write secret");
    let urls = [
        format!("ftp://{USER}:{SECRET}@prom:9090"),
        format!("http://{USER}:{SECRET}@[::1"),
        format!("http://{USER}:{SECRET}@prom:99999"),
        format!("{USER}:{SECRET}@prom:9090"),
        format!("http://{USER}:{SECRET}@prom:9090/?x=1"),
    ];
    let conflict = format!(
        "url = \"http://{USER}:{SECRET}@prom:9090\"\nbearer_token_file = \"{}\"",
        secret_file.display()
    );

    let mut cases: Vec<String> = urls.iter().map(|u| format!("url = \"{u}\"")).collect();
    cases.push(conflict);
    for prometheus in cases {
        let config = write_config(dir.path(), &prometheus);
        let output = command(&config).output().await.expect("binary runs");
        let transcript = Transcript::default();
        transcript.push(&String::from_utf8_lossy(&output.stdout));
        transcript.push(&String::from_utf8_lossy(&output.stderr));

        assert_eq!(output.status.code(), Some(64), "{}", transcript.text());
        assert!(
            transcript.text().contains("prometheus."),
            "{}",
            transcript.text()
        );
        transcript.assert_free_of(Planted::UrlUserinfo, &prometheus);
    }
}
