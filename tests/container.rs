//! What the container relies on: the image runs as a non-root user, the manifest mounts the
//! root filesystem read-only, and the binary never needs to write a file.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::eventually;
use support::fake_prometheus::{FakeGpu, FakePrometheus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_gpu-monitoring-api");

fn project_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts the binary polling `prometheus` every 100ms, and returns it with the address it
/// logged. Its logs keep being read, so that a full pipe never stalls it.
async fn start(prometheus: &str) -> (Child, String) {
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--poll-interval", "100ms"])
        .args(["--prometheus-url", prometheus])
        .env_remove("PORT")
        .env_remove("PROMETHEUS_URL")
        .env_remove("GPU_API_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();

    let address = support::listening_address(&mut logs).await;
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    (child, address)
}

/// Regular files `pid` has open with write access, by path.
fn files_open_for_writing(pid: u32) -> Vec<String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc fd listing");
    fds.filter_map(|entry| {
        let fd = entry.expect("fd entry");
        let is_file = std::fs::metadata(fd.path()).is_ok_and(|m| m.is_file());
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let flags = std::fs::read_to_string(fdinfo).ok()?;
        let writable = open_flags(&flags) & 0o3 != 0;
        let target = std::fs::read_link(fd.path()).ok()?;
        (is_file && writable).then(|| target.display().to_string())
    })
    .collect()
}

/// The `flags:` line of an fdinfo file, which is octal.
fn open_flags(fdinfo: &str) -> u32 {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .expect("fdinfo has a flags line")
}

#[tokio::test]
async fn the_running_binary_holds_no_regular_file_open_for_writing() {
    let fake = FakePrometheus::start().await;
    let gpus: Vec<_> = (0..8).map(|i| FakeGpu::numbered(i, 2)).collect();
    fake.serve_gpus(&gpus);
    let (child, address) = start(&fake.url()).await;
    let base = format!("http://{address}");

    eventually(Duration::from_secs(15), "a few polls published", || async {
        let response = reqwest::get(format!("{base}/api/v1/gpu/metrics"))
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        (body["snapshot"]["generation"].as_u64()? >= 3).then_some(())
    })
    .await;
    for path in [
        "/api/v1/gpu/nodes",
        "/api/v1/gpu/utilization",
        "/api/health",
    ] {
        let response = reqwest::get(format!("{base}{path}")).await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
    }

    let pid = child.id().expect("still running");
    assert_eq!(files_open_for_writing(pid), Vec::<String>::new());
}

#[test]
fn the_open_file_check_sees_a_file_opened_for_writing() {
    let file = tempfile::NamedTempFile::new().expect("temporary file");

    let open = files_open_for_writing(std::process::id());

    let path = file.path().display().to_string();
    assert!(open.contains(&path), "{path} not in {open:?}");
}

#[tokio::test]
async fn the_image_runs_as_a_non_root_user() {
    let dockerfile = project_file("Dockerfile");
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a multi-stage Dockerfile");

    let users: Vec<&str> = last_stage
        .lines()
        .filter_map(|line| line.trim().strip_prefix("USER "))
        .collect();
    let user = users.last().expect("the final stage sets USER");
    let name = user.trim().split(':').next().expect("a user name");
    assert!(!matches!(name, "root" | "0" | ""), "USER {user}");
}

#[tokio::test]
async fn the_manifest_keeps_the_pod_non_root_with_a_read_only_root_filesystem() {
    let manifest: String = project_file("deploy/kubernetes.yaml")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();

    for setting in [
        "runAsNonRoot:true",
        "readOnlyRootFilesystem:true",
        "allowPrivilegeEscalation:false",
    ] {
        assert!(manifest.contains(setting), "{setting} missing");
    }
}
