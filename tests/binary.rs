//! The built binary as an operator meets it: exit codes, messages, signals.

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_gpu-monitoring-api");

fn service() -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_remove("PORT")
        .env_remove("PROMETHEUS_URL")
        .env_remove("GPU_API_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_bad_configuration_exits_64_naming_every_bad_key_without_a_panic() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("gpu.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"localhost\"\ncolour = \"blue\"\n[prometheus]\nurl = \"prom:9090\"\nquery_timeout = \"10s\"\n",
    )
    .expect("write config");

    let output = service()
        .arg("--config")
        .arg(&file)
        .env("GPU_API_POLLER__INTERVAL", "fast")
        .env("PORT", "eighty")
        .output()
        .await
        .expect("binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    for key in [
        "PORT",
        "server.colour",
        "server.listen",
        "prometheus.url",
        "poller.interval",
    ] {
        assert!(
            stderr.contains(&format!("{key}: ")),
            "{key} missing from:\n{stderr}"
        );
    }
    assert!(stderr.contains("GPU_API_POLLER__INTERVAL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_flag_is_a_usage_error() {
    let output = service()
        .arg("--poll-intervl=1s")
        .output()
        .await
        .expect("binary runs");

    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--poll-intervl"));
}

#[tokio::test]
async fn sigterm_stops_the_service_with_exit_code_0() {
    let mut child = service()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--prometheus-url",
            "http://127.0.0.1:9",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();

    let address = support::listening_address(&mut logs).await;
    let live = reqwest::get(format!("http://{address}/livez"))
        .await
        .expect("livez");
    assert_eq!(live.status(), 200);

    support::terminate(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within the grace period")
        .expect("exit status");

    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    while let Ok(Some(line)) = logs.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(
        rest.contains("shutting down") && rest.contains("SIGTERM"),
        "{rest}"
    );
}
