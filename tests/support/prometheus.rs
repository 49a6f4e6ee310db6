//! A real Prometheus server for tests: the OS package's binary, on a free loopback port, with
//! its own temporary data directory, scraping the targets a test gives it.

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use tempfile::TempDir;

/// One scrape target and the labels Prometheus should attach to its series.
pub struct Target {
    pub addr: SocketAddr,
    pub labels: Vec<(&'static str, String)>,
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

const INSTALL_HINT: &str = "the integration tests run a real Prometheus: install the OS package \
    (`sudo apt-get install prometheus`, or run `scripts/test`, which does it), or set \
    PROMETHEUS_BIN to a Prometheus 2.x binary";

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and waits until it is ready.
    pub async fn start(targets: &[Target]) -> Prometheus {
        let mut dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join("prometheus.yml"), scrape_config(targets))
            .expect("write prometheus.yml");

        for _attempt in 0..5 {
            let mut prometheus = Prometheus {
                child: None,
                port: free_port(),
                dir,
            };
            if prometheus.launch().await {
                return prometheus;
            }
            dir = prometheus.take_dir();
        }
        panic!("prometheus did not start on any of 5 ports");
    }

    /// The base URL of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it, as an outage would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port with the same data, as after an outage.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.launch().await,
            "prometheus did not restart:\n{}",
            self.log_tail()
        );
    }

    /// Spawns the binary and waits for readiness; false if it exited (port taken, say).
    async fn launch(&mut self) -> bool {
        let log = fs::File::create(self.dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                self.path("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.path("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(error) if error.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(error) => panic!("cannot run prometheus: {error}; {INSTALL_HINT}"),
        }
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = format!("{}/-/ready", self.url());
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                eprintln!("prometheus exited with {status}:\n{}", self.log_tail());
                self.child = None;
                return false;
            }
            if let Ok(response) = reqwest::get(&ready).await
                && response.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus was not ready within 30 s:\n{}", self.log_tail());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.path("prometheus.log")).unwrap_or_default();
        let lines: Vec<_> = log.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn take_dir(mut self) -> TempDir {
        self.child = None;
        let placeholder = tempfile::tempdir().expect("temporary directory");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn binary() -> String {
    std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_owned())
}

/// A port that was free a moment ago. Prometheus cannot be handed a listening socket, so a
/// clash with another process is possible; `start` retries on another port when it happens.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn scrape_config(targets: &[Target]) -> String {
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: nvidia_gpu_exporter\n    static_configs:\n",
    );
    for target in targets {
        config.push_str(&format!("      - targets: ['{}']\n", target.addr));
        if !target.labels.is_empty() {
            config.push_str("        labels:\n");
            for (name, value) in &target.labels {
                config.push_str(&format!("          {name}: '{value}'\n"));
            }
        }
    }
    config
}
