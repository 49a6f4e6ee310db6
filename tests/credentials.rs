//! Credentials as the fake Prometheus receives them: a bearer token that follows its file
//! through a Kubernetes-style rotation, and basic auth from a password file.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use support::fake_prometheus::{FakeGpu, FakePrometheus};
use support::{Service, eventually};

fn settings(url: &str, extra: &str) -> String {
    format!(
        "[prometheus]\nurl = \"{url}\"\nquery_timeout = \"300ms\"\n{extra}\n\
         [poller]\ninterval = \"500ms\"\nstale_after = \"2s\"\n"
    )
}

/// Lays out `dir` as the kubelet does for a projected volume: `token` links to
/// `..data/token`, and `..data` links to a timestamped directory holding the real file.
fn project_token(dir: &Path, generation: u32, token: &str) {
    let real = dir.join(format!("..2026_12_04_{generation}"));
    std::fs::create_dir(&real).expect("create generation directory");
    std::fs::write(real.join("token"), token).expect("write token");

    // The kubelet swaps `..data` atomically by renaming a fresh link over it.
    let fresh = dir.join("..data_tmp");
    symlink(&real, &fresh).expect("link generation");
    std::fs::rename(&fresh, dir.join("..data")).expect("swap ..data");
    if !dir.join("token").exists() {
        symlink(dir.join("..data").join("token"), dir.join("token")).expect("link token");
    }
}

async fn wait_for_authorization(fake: &FakePrometheus, expected: &str) {
    eventually(Duration::from_secs(15), expected, || async {
        let seen = fake.seen();
        let last = seen.last()?.authorization.as_deref()?;
        (last == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rotated_bearer_token_is_sent_from_the_next_poll_on_and_kept_if_the_file_vanishes() {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1)]);
    let dir = tempfile::tempdir().expect("temporary directory");
    project_token(dir.path(), 1, "first-token\n");
    let extra = format!(
        "bearer_token_file = \"{}\"",
        dir.path().join("token").display()
    );
    let _service = Service::start(&settings(&fake.url(), &extra)).await;

    wait_for_authorization(&fake, "Bearer first-token").await;
    project_token(dir.path(), 2, "second-token\n");
    wait_for_authorization(&fake, "Bearer second-token").await;

    std::fs::remove_file(dir.path().join("..data")).expect("remove ..data");
    let before = fake.seen().len();
    eventually(Duration::from_secs(15), "more polls", || async {
        (fake.seen().len() > before + 14).then_some(())
    })
    .await;
    let after: Vec<_> = fake.seen().into_iter().skip(before).collect();
    assert!(
        after
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer second-token")),
        "{after:?}"
    );
}

#[tokio::test]
async fn basic_auth_is_sent_from_a_username_and_a_password_file() {
    let fake = FakePrometheus::start().await;
    fake.serve_gpus(&[FakeGpu::numbered(0, 1)]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let password = dir.path().join("password");
    std::fs::write(&password, "correct horse\n").expect("write password");
    let extra = format!(
        "username = \"grafana\"\npassword_file = \"{}\"",
        password.display()
    );
    let _service = Service::start(&settings(&fake.url(), &extra)).await;

    let expected = format!("Basic {}", STANDARD.encode("grafana:correct horse"));
    wait_for_authorization(&fake, &expected).await;
}
