//! Domain types: GPUs, nodes, and the snapshot that holds them.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;
use tokio::time::Instant;

use super::rendered::Rendered;
use super::summary::{self, NodeSummary};

/// A GPU's identity in the one canonical form the API reports: `GPU-` and a lower-case id.
///
/// nvidia_gpu_exporter writes the id lower case without the prefix, nvidia-smi and
/// dcgm-exporter write `GPU-` and upper case; all three name the same GPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GpuId(String);

/// A label value that cannot be a GPU id or a node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {why}")]
pub struct InvalidName {
    what: &'static str,
    value: String,
    why: &'static str,
}

impl GpuId {
    /// Parses a uuid label value in any of the exporters' spellings.
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let invalid = |why| InvalidName {
            what: "gpu uuid",
            value: raw.to_owned(),
            why,
        };
        let trimmed = raw.trim();
        let id = match trimmed.get(..4) {
            Some(prefix) if prefix.eq_ignore_ascii_case("gpu-") => &trimmed[4..],
            _ => trimmed,
        };

        if id.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid("only letters, digits and '-' may follow 'GPU-'"));
        }
        Ok(GpuId(format!("GPU-{}", id.to_ascii_lowercase())))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Kubernetes node (or host) a GPU is installed in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    /// Accepts any non-blank label value, trimmed.
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidName {
                what: "node name",
                value: raw.to_owned(),
                why: "it is blank",
            });
        }
        Ok(NodeName(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How much the readings of a GPU can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuStatus {
    /// Its exporter is up and collected recently: the readings are current.
    Ok,
    /// The readings are old: its exporter is down (live readings are then `null`), or its
    /// newest sample or its exporter's last successful collection is too old.
    Stale,
    /// Its exporter is up but no longer lists it (a GPU that fell off the bus, say); it is
    /// kept, with live readings `null`, for `poller.missing_after` since it was last seen.
    Missing,
}

/// How many GPUs have each status, for the health endpoint: a dead exporter or a GPU that
/// fell off the bus shows in the one place operators look first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// GPUs with current readings.
    pub ok: usize,
    /// GPUs whose readings are old or whose exporter is down.
    pub stale: usize,
    /// GPUs their exporter no longer lists.
    pub missing: usize,
}

impl StatusCounts {
    fn of(gpus: &[Gpu]) -> Self {
        let count = |status| gpus.iter().filter(|g| g.status == status).count();
        StatusCounts {
            ok: count(GpuStatus::Ok),
            stale: count(GpuStatus::Stale),
            missing: count(GpuStatus::Missing),
        }
    }
}

/// A value the exporter wrote that no working GPU can report, dropped instead of served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// The field it would have filled, such as `utilization_ratio`.
    pub reading: &'static str,
    /// The value as the exporter wrote it, in the API's unit.
    pub value: String,
    /// Why it was dropped.
    pub reason: String,
}

/// One GPU with every reading the poll found for it.
///
/// A reading the poll did not find, or found as NaN or infinite, is `None` and goes out as
/// `null`: a GPU in MIG mode has no utilization and a consumer card may have no power
/// readings, and reporting 0 for them would be a lie that drags averages down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    /// Canonical uuid.
    pub uuid: GpuId,
    /// The node, from the first configured node label a series carries.
    pub node: Option<NodeName>,
    /// Index on the node, as nvidia-smi numbers them.
    pub index: Option<u32>,
    /// Product name, such as `NVIDIA H100 80GB HBM3`.
    pub name: Option<String>,
    /// Driver version.
    pub driver_version: Option<String>,
    /// PCI bus id.
    pub pci_bus_id: Option<String>,
    /// Whether the readings are current.
    pub status: GpuStatus,
    /// Time of the newest sample about this GPU, RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub last_seen_at: Option<SystemTime>,
    /// Busy fraction, 0.0 to 1.0.
    pub utilization_ratio: Option<f64>,
    /// Memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Memory installed, bytes.
    pub memory_total_bytes: Option<u64>,
    /// `memory_used_bytes / memory_total_bytes`.
    pub memory_used_ratio: Option<f64>,
    /// Core temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// Power drawn, watts.
    pub power_draw_watts: Option<f64>,
    /// Enforced power limit, watts.
    pub power_limit_watts: Option<f64>,
    /// Values the latest poll dropped as implausible.
    pub anomalies: Vec<Anomaly>,
    /// Whether the exporter that reports this GPU is up; `None` when unknown. Reported per
    /// node, not per GPU.
    #[serde(skip)]
    pub exporter_up: Option<bool>,
}

impl Gpu {
    /// A GPU known only by its id, every reading still unknown.
    pub fn new(uuid: GpuId) -> Self {
        Gpu {
            uuid,
            node: None,
            index: None,
            name: None,
            driver_version: None,
            pci_bus_id: None,
            status: GpuStatus::Ok,
            last_seen_at: None,
            utilization_ratio: None,
            memory_used_bytes: None,
            memory_total_bytes: None,
            memory_used_ratio: None,
            temperature_celsius: None,
            power_draw_watts: None,
            power_limit_watts: None,
            anomalies: Vec::new(),
            exporter_up: None,
        }
    }

    /// Fills in the fields derived from other readings.
    fn derive(&mut self) {
        self.memory_used_ratio = match (self.memory_used_bytes, self.memory_total_bytes) {
            (Some(used), Some(total)) if total > 0 => Some(round(used as f64 / total as f64)),
            _ => None,
        };
    }

    /// Sort key: node, then index, then uuid; GPUs with no node or no index come last.
    fn sort_key(&self) -> (bool, Option<&NodeName>, bool, Option<u32>, &GpuId) {
        (
            self.node.is_none(),
            self.node.as_ref(),
            self.index.is_none(),
            self.index,
            &self.uuid,
        )
    }
}

/// A query that failed, or answered only in part, in the poll that made a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryFailure {
    /// The metric that was queried.
    pub metric: String,
    /// Why it failed.
    pub reason: String,
    /// When the run of polls in which it fails began. Until it succeeds again, GPUs keep
    /// the metric's last known values, which are at least this old.
    #[serde(serialize_with = "rfc3339")]
    pub since: Option<SystemTime>,
}

/// RFC 3339 with milliseconds, in UTC, or `null`.
fn rfc3339<S: serde::Serializer>(time: &Option<SystemTime>, out: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => out.collect_str(&humantime::format_rfc3339_millis(*time)),
        None => out.serialize_none(),
    }
}

/// The result of one poll, with everything the endpoints serve derived from it.
#[derive(Debug)]
pub struct Snapshot {
    /// How many snapshots have been published, this one included.
    pub generation: u64,
    /// Wall-clock time the poll finished, for display.
    pub collected_at: SystemTime,
    /// Monotonic time the poll finished, for ages that clock changes cannot skew.
    pub collected_instant: Instant,
    /// The queries of that poll that failed; empty when the poll was complete.
    pub failures: Vec<QueryFailure>,
    /// Every GPU, sorted by node, index, uuid.
    pub gpus: Vec<Gpu>,
    /// One summary per node, sorted by name, GPUs without a node last.
    pub nodes: Vec<NodeSummary>,
    /// Mean utilization over the GPUs that report one.
    pub utilization_avg_ratio: Option<f64>,
    /// Number of distinct named nodes.
    pub node_count: usize,
    /// GPUs by status.
    pub statuses: StatusCounts,
    /// Every endpoint's `data`, serialized and compressed.
    pub rendered: Rendered,
    /// `collected_at` as RFC 3339 with milliseconds, formatted once.
    pub collected_at_text: String,
    /// `collected_at` as an HTTP date, for `Last-Modified`, formatted once.
    pub last_modified: axum::http::HeaderValue,
    /// Names this snapshot in ETags, formatted once: see [`Snapshot::tag_of`].
    pub tag: String,
}

impl Snapshot {
    /// Builds a snapshot, sorting the GPUs, deriving summaries and rendering every response
    /// body once, here, so that no request ever has to. For large clusters this takes
    /// milliseconds; the poller runs it on a blocking thread.
    pub fn new(
        generation: u64,
        collected_at: SystemTime,
        collected_instant: Instant,
        mut gpus: Vec<Gpu>,
        failures: Vec<QueryFailure>,
    ) -> Self {
        gpus.iter_mut().for_each(Gpu::derive);
        gpus.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

        let nodes = summary::by_node(&gpus);
        let node_count = nodes.iter().filter(|n| n.name.is_some()).count();
        let average = summary::mean(gpus.iter().filter_map(|g| g.utilization_ratio));
        Snapshot {
            generation,
            tag: Snapshot::tag_of(generation, collected_at),
            collected_at_text: humantime::format_rfc3339_millis(collected_at).to_string(),
            last_modified: axum::http::HeaderValue::from_str(&httpdate::fmt_http_date(
                collected_at,
            ))
            .expect("an HTTP date is ASCII"),
            collected_at,
            collected_instant,
            failures,
            rendered: Rendered::new(&gpus, &nodes, average),
            utilization_avg_ratio: average,
            statuses: StatusCounts::of(&gpus),
            gpus,
            nodes,
            node_count,
        }
    }

    /// The generation and the millisecond the snapshot was made, in hexadecimal. The
    /// generation alone repeats across restarts and replicas (each counts from 1): another
    /// process's generation 4 is not this one's.
    pub fn tag_of(generation: u64, collected_at: SystemTime) -> String {
        let made = collected_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        format!("{generation}.{made:x}")
    }

    /// True when every query of the poll succeeded.
    pub fn complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Rounds a derived value to a millionth, so that sums print as `1065.73` rather than
/// `1065.7300000000001`.
pub(crate) fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_uuid_becomes_the_same_canonical_id() {
        let canonical = "GPU-6b1f2f7a-0000-4c1e-9d7a-000000000001";

        for raw in [
            "6b1f2f7a-0000-4c1e-9d7a-000000000001",
            "GPU-6B1F2F7A-0000-4C1E-9D7A-000000000001",
            "gpu-6b1f2f7a-0000-4c1e-9d7a-000000000001",
            " 6B1F2F7A-0000-4C1E-9D7A-000000000001 ",
        ] {
            assert_eq!(GpuId::parse(raw).expect(raw).as_str(), canonical);
        }
    }

    #[test]
    fn blank_or_odd_uuids_are_refused_with_the_value() {
        assert!(GpuId::parse("").is_err());
        assert!(GpuId::parse("GPU-").is_err());
        let err = GpuId::parse("abc/../x").expect_err("slash");
        assert!(err.to_string().contains("abc/../x"), "{err}");
    }

    #[test]
    fn memory_ratio_is_derived_only_when_both_readings_exist() {
        let mut gpu = Gpu::new(GpuId::parse("a").expect("id"));
        gpu.memory_used_bytes = Some(25);
        gpu.memory_total_bytes = Some(100);
        gpu.derive();
        assert_eq!(gpu.memory_used_ratio, Some(0.25));

        gpu.memory_total_bytes = None;
        gpu.derive();
        assert_eq!(gpu.memory_used_ratio, None);
    }
}
