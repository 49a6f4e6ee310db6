//! One Prometheus answer through everything a poll does with it, shared by the fuzz target
//! and by the test that replays the inputs the fuzzer once crashed on.
//!
//! Decoding alone is not the whole attack surface: labels and values that decode fine then
//! become GPU ids, node names, timestamps, readings and JSON text. So an answer that decodes
//! is given every role a poll gives an answer (info, each value metric, the targets), joined,
//! merged into the poller's memory and rendered as a snapshot.

use std::time::{Duration, SystemTime};

use gpu_monitoring_api::exporter::NVIDIA_SMI;
use gpu_monitoring_api::poller::{Ageing, Memory, join_answers};
use gpu_monitoring_api::prometheus::decode;
use gpu_monitoring_api::snapshot::Snapshot;

/// The snapshot a poll would publish if every query had answered `body`; `None` when the
/// body does not decode.
pub fn snapshot_from(body: &[u8]) -> Option<Snapshot> {
    let vector = decode(body).ok()?;
    let answers: Vec<_> = NVIDIA_SMI.queries().map(|q| (q, vector.clone())).collect();

    let node_labels = ["node".to_owned(), "instance".to_owned()];
    let joined = join_answers(&NVIDIA_SMI, &node_labels, &answers);

    let ageing = Ageing {
        gpu_stale_after: Duration::from_secs(120),
        missing_after: Duration::from_secs(600),
    };
    let mut memory = Memory::new(&NVIDIA_SMI, ageing);
    let gpus = memory.update(joined, &[], true, SystemTime::now());
    let now = tokio::time::Instant::now();
    Some(Snapshot::new(1, SystemTime::now(), now, gpus, vec![]))
}
