//! Every input the fuzzer has crashed on (`fuzz/regressions/decode/`), replayed through the
//! same poll path as the fuzz target, so that a fixed crash stays fixed.

#[path = "../fuzz/poll_path.rs"]
mod poll_path;

use std::path::Path;

#[test]
fn every_input_that_once_crashed_the_poll_path_now_renders_a_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/decode");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regressions folder exists") {
        let path = entry.expect("readable folder").path();
        let body = std::fs::read(&path).expect("readable input");

        let snapshot = poll_path::snapshot_from(&body);

        let snapshot = snapshot.unwrap_or_else(|| panic!("{} no longer decodes", path.display()));
        assert!(!snapshot.gpus.is_empty(), "{} joins no GPU", path.display());
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs in {}", dir.display());
}

#[test]
fn a_gpu_whose_sample_time_is_past_the_year_9999_counts_as_seen_by_this_poll() {
    let body = br#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"uuid":"3e1f0c2a-8b9d-4e6f-a1b2-c3d4e5f60718","node":"gpu-node-a"},
         "value":[1796292000.123,"0x1p42"]}]}}"#;

    let snapshot = poll_path::snapshot_from(body).expect("valid answer");

    assert_eq!(snapshot.gpus.len(), 1);
    let seen = snapshot.gpus[0].last_seen_at.expect("the poll's own time");
    assert!(
        seen <= std::time::SystemTime::now(),
        "{seen:?} is in the future"
    );
}
