//! Joins the series of one poll's answers into one record per GPU.
//!
//! The same GPU can come back in several series of one metric: two scrape jobs over the same
//! exporter, a relabelled pod, an exporter restarted under a new name. The GPU's info series
//! with the newest sample decides which one counts, so a GPU is listed once and summed once.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exporter::{ExporterFamily, Query, Reading, ValueMetric};
use crate::prometheus::{Labels, Sample};
use crate::snapshot::{Anomaly, Gpu, GpuId, NodeName};

/// A scrape target, as Prometheus names every series it scraped from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// `job`
    pub job: String,
    /// `instance`
    pub instance: String,
}

impl Target {
    fn of(labels: &Labels<'_>) -> Option<Target> {
        Some(Target {
            job: labels.get("job")?.to_string(),
            instance: labels.get("instance")?.to_string(),
        })
    }
}

/// What the targets query said about one exporter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHealth {
    /// Prometheus's `up`.
    pub up: Option<bool>,
    /// Whether the exporter's last collection from the driver succeeded.
    pub collect_ok: Option<bool>,
    /// When it last succeeded.
    pub collected_at: Option<SystemTime>,
}

/// One GPU as this poll's answers describe it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The record, with the readings of every query that answered.
    pub gpu: Gpu,
    /// The target its chosen series came from.
    pub target: Option<Target>,
}

/// The answers of one poll, joined.
#[derive(Debug, Default)]
pub struct Joined {
    /// Every GPU some answer named, in no particular order.
    pub gpus: Vec<Seen>,
    /// The health of every exporter target the targets query named.
    pub targets: HashMap<Target, TargetHealth>,
    /// How many series carried no usable uuid and were left out.
    pub unidentified: usize,
}

/// Joins answers one at a time; the info answer, when there is one, must come first so
/// that it can settle duplicates for the value metrics.
#[derive(Debug)]
pub struct GpuTable<'s> {
    family: &'s ExporterFamily,
    node_labels: &'s [String],
    gpus: HashMap<GpuId, Entry<'s>>,
    joined: Joined,
}

#[derive(Debug)]
struct Entry<'s> {
    seen: Seen,
    /// Labels of the info series that won, which the value series must match.
    source: Option<&'s Labels<'s>>,
}

impl<'s> GpuTable<'s> {
    /// An empty table for one family, resolving nodes from `node_labels` in order.
    pub fn new(family: &'s ExporterFamily, node_labels: &'s [String]) -> Self {
        GpuTable {
            family,
            node_labels,
            gpus: HashMap::new(),
            joined: Joined::default(),
        }
    }

    /// Adds the info answer, whose values are the samples' timestamps: names, driver, PCI
    /// bus id, index, node, and when the GPU was last seen.
    pub fn add_info(&mut self, samples: &'s [Sample<'s>]) {
        let family = self.family;
        let chosen = chosen(
            samples,
            family,
            &mut self.joined.unidentified,
            |_| None,
            sample_time,
        );
        for (id, sample) in chosen {
            let entry = self.entry(&id, sample);
            entry.source = Some(&sample.labels);
            describe(&mut entry.seen.gpu, sample, family);
        }
    }

    /// Adds one value metric's answer. Nothing of it is kept borrowed, so the caller can
    /// drop each answer once it is added.
    pub fn add_values(&mut self, metric: &ValueMetric, samples: &[Sample<'_>]) {
        let gpus = &self.gpus;
        let source = |id: &GpuId| gpus.get(id).and_then(|entry| entry.source);
        let unidentified = &mut self.joined.unidentified;
        let chosen = chosen(samples, self.family, unidentified, source, |s| s.timestamp);

        for (id, sample) in chosen {
            let gpu = &mut self.entry(&id, sample).seen.gpu;
            set_reading(gpu, metric, &sample.value);
        }
    }

    /// Adds the answer of a value or targets query; the info answer has
    /// [`GpuTable::add_info`], since it must come first.
    pub fn add(&mut self, query: Query, samples: &[Sample<'_>]) {
        match query {
            Query::Value(metric) => self.add_values(metric, samples),
            Query::Targets => self.add_targets(samples),
            Query::Info => {}
        }
    }

    /// Adds the targets answer: `up` and the exporters' own collection health.
    pub fn add_targets(&mut self, samples: &[Sample<'_>]) {
        let names = self.family.targets;
        for sample in samples {
            let (Some(target), Some(name), Ok(value)) = (
                Target::of(&sample.labels),
                sample.labels.get("__name__"),
                &sample.value,
            ) else {
                continue;
            };
            let health = self.joined.targets.entry(target).or_default();
            match &**name {
                n if n == names.up => health.up = Some(*value == 1.0),
                n if n == names.collect_ok => health.collect_ok = Some(*value == 1.0),
                n if n == names.collect_time => health.collected_at = unix_time(*value),
                _ => {}
            }
        }
    }

    /// The joined GPUs and targets.
    pub fn finish(mut self) -> Joined {
        self.joined.gpus = self.gpus.into_values().map(|e| e.seen).collect();
        self.joined
    }

    fn entry(&mut self, id: &GpuId, sample: &Sample<'_>) -> &mut Entry<'s> {
        let node_labels = self.node_labels;
        self.gpus.entry(id.clone()).or_insert_with(|| Entry {
            seen: Seen {
                gpu: Gpu {
                    node: resolve_node(&sample.labels, node_labels),
                    ..Gpu::new(id.clone())
                },
                target: Target::of(&sample.labels),
            },
            source: None,
        })
    }
}

/// One series per GPU: the one whose labels `source` contains, else the newest by `time`,
/// else the one with the least label set, so that the choice never depends on the order of
/// the answer. Series without a usable uuid are counted in `unidentified`.
fn chosen<'s, 'f>(
    samples: &'s [Sample<'s>],
    family: &ExporterFamily,
    unidentified: &mut usize,
    source: impl Fn(&GpuId) -> Option<&'f Labels<'f>>,
    time: fn(&Sample<'_>) -> f64,
) -> HashMap<GpuId, &'s Sample<'s>> {
    let mut chosen: HashMap<GpuId, &Sample<'_>> = HashMap::new();
    for sample in samples {
        let id = sample
            .labels
            .get(family.uuid_label)
            .and_then(|raw| GpuId::parse(raw).ok());
        let Some(id) = id else {
            *unidentified += 1;
            continue;
        };
        match chosen.entry(id) {
            Slot::Vacant(first) => {
                first.insert(sample);
            }
            Slot::Occupied(mut best) => {
                if preferred(sample, best.get(), source(best.key()), time) {
                    best.insert(sample);
                }
            }
        }
    }
    chosen
}

/// Whether `candidate` should replace `best` as a GPU's series.
fn preferred(
    candidate: &Sample<'_>,
    best: &Sample<'_>,
    source: Option<&Labels<'_>>,
    time: fn(&Sample<'_>) -> f64,
) -> bool {
    if let Some(source) = source {
        match (from_source(candidate, source), from_source(best, source)) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
    }
    match time(candidate).total_cmp(&time(best)) {
        std::cmp::Ordering::Equal => candidate.labels < best.labels,
        newer => newer.is_gt(),
    }
}

/// The time of the sample an info answer describes: `timestamp(...)` makes it the value.
fn sample_time(sample: &Sample<'_>) -> f64 {
    sample
        .value
        .as_ref()
        .ok()
        .copied()
        .unwrap_or(f64::NEG_INFINITY)
}

/// True when every label of the series but its name is also on the source's info series:
/// both were scraped from the same exporter with the same target labels.
fn from_source(sample: &Sample<'_>, source: &Labels<'_>) -> bool {
    sample
        .labels
        .iter()
        .filter(|(name, _)| &***name != "__name__")
        .all(|(name, value)| source.get(&**name) == Some(value))
}

/// Fills in what the info series says about the GPU it names.
fn describe(gpu: &mut Gpu, sample: &Sample<'_>, family: &ExporterFamily) {
    let info = family.info;
    let label = |name: &str| sample.labels.get(name).map(|v| v.to_string());
    gpu.name = label(info.model_label);
    gpu.driver_version = label(info.driver_label);
    gpu.pci_bus_id = label(info.pci_bus_id_label);
    gpu.index = label(info.index_label).and_then(|i| i.trim().parse().ok());
    gpu.last_seen_at = sample.value.as_ref().ok().and_then(|t| unix_time(*t));
}

/// Unix seconds as a time; `None` for values no clock shows (negative, NaN) and for times
/// after the year 9999, which RFC 3339 cannot write: such a time would fail the rendering of
/// every snapshot that carries it, and exporters write whatever their clocks or bugs say.
pub fn unix_time(seconds: f64) -> Option<SystemTime> {
    /// 9999-12-31T23:59:59Z
    const LAST_WRITABLE: f64 = 253_402_300_799.0;

    if seconds > LAST_WRITABLE {
        return None;
    }
    let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
    UNIX_EPOCH.checked_add(since_epoch)
}

/// The node a series belongs to: the value of the first configured label it carries.
///
/// `instance` is `host:port` of the scrape target, so its port is dropped; an IPv6
/// `[addr]:port` keeps its address without the brackets.
fn resolve_node(labels: &Labels<'_>, node_labels: &[String]) -> Option<NodeName> {
    node_labels.iter().find_map(|label| {
        let raw: &str = labels.get(label.as_str())?;
        let value = if label == "instance" {
            strip_port(raw)
        } else {
            raw
        };
        NodeName::parse(value).ok()
    })
}

fn strip_port(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split_once(']').map_or(instance, |(host, _)| host);
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => instance,
    }
}

/// Stores a reading in its field, or records why it was dropped.
///
/// NaN and infinities are how Prometheus says "no value" and become `null` silently;
/// values no GPU can report, and text that is not a number, become `null` and an anomaly.
fn set_reading(
    gpu: &mut Gpu,
    metric: &ValueMetric,
    value: &Result<f64, crate::prometheus::Text<'_>>,
) {
    let value = match value {
        Ok(value) => Some(value * metric.scale).filter(|v| v.is_finite()),
        Err(text) => {
            gpu.anomalies
                .push(anomaly(metric.reading, text.to_string(), "not a number"));
            None
        }
    };
    let value = value.filter(|v| plausible(gpu, metric, *v));
    store(gpu, metric.reading, value);
}

fn plausible(gpu: &mut Gpu, metric: &ValueMetric, value: f64) -> bool {
    let (min, max) = metric.plausible;
    let reason = if value < min {
        format!("below {min}, the least a GPU can report")
    } else if value > max {
        format!("above {max}, the most a GPU can report")
    } else {
        return true;
    };
    gpu.anomalies
        .push(anomaly(metric.reading, value.to_string(), &reason));
    false
}

fn anomaly(reading: Reading, value: String, reason: &str) -> Anomaly {
    Anomaly {
        reading: reading.field(),
        value: crate::prometheus::abbreviate(&value),
        reason: reason.to_owned(),
    }
}

/// Puts a value in the field of its reading; bytes are whole.
pub fn store(gpu: &mut Gpu, reading: Reading, value: Option<f64>) {
    let bytes = || value.map(|v| v.round() as u64);
    match reading {
        Reading::Utilization => gpu.utilization_ratio = value,
        Reading::MemoryUsed => gpu.memory_used_bytes = bytes(),
        Reading::MemoryTotal => gpu.memory_total_bytes = bytes(),
        Reading::Temperature => gpu.temperature_celsius = value,
        Reading::PowerDraw => gpu.power_draw_watts = value,
        Reading::PowerLimit => gpu.power_limit_watts = value,
    }
}

/// The value of a reading's field, in the API's unit.
pub fn load(gpu: &Gpu, reading: Reading) -> Option<f64> {
    match reading {
        Reading::Utilization => gpu.utilization_ratio,
        Reading::MemoryUsed => gpu.memory_used_bytes.map(|b| b as f64),
        Reading::MemoryTotal => gpu.memory_total_bytes.map(|b| b as f64),
        Reading::Temperature => gpu.temperature_celsius,
        Reading::PowerDraw => gpu.power_draw_watts,
        Reading::PowerLimit => gpu.power_limit_watts,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use super::*;
    use crate::exporter::NVIDIA_SMI;
    use crate::prometheus::Text;

    fn sample(labels: &[(&'static str, &'static str)], value: f64) -> Sample<'static> {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (Text(Cow::Borrowed(*k)), Text(Cow::Borrowed(*v))))
                .collect::<BTreeMap<_, _>>(),
            timestamp: 1_800_000_000.0,
            value: Ok(value),
        }
    }

    fn default_labels() -> Vec<String> {
        ["node", "kubernetes_node", "instance"]
            .map(String::from)
            .to_vec()
    }

    fn metric(reading: Reading) -> &'static ValueMetric {
        NVIDIA_SMI
            .values
            .iter()
            .find(|m| m.reading == reading)
            .expect("family has the reading")
    }

    fn gpus(joined: Joined) -> Vec<Gpu> {
        joined.gpus.into_iter().map(|s| s.gpu).collect()
    }

    #[test]
    fn series_of_one_gpu_from_several_metrics_join_into_one_record() {
        let labels = default_labels();
        let info = [sample(
            &[
                ("uuid", "abc"),
                ("name", "NVIDIA L40S"),
                ("index", "2"),
                ("node", "n1"),
            ],
            1_800_000_000.0,
        )];
        let power = [sample(&[("uuid", "GPU-ABC")], 110.5)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_info(&info);
        table.add_values(metric(Reading::PowerDraw), &power);
        let gpus = gpus(table.finish());

        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].uuid.as_str(), "GPU-abc");
        assert_eq!(gpus[0].name.as_deref(), Some("NVIDIA L40S"));
        assert_eq!(gpus[0].index, Some(2));
        assert_eq!(gpus[0].node.as_ref().map(NodeName::as_str), Some("n1"));
        assert_eq!(gpus[0].power_draw_watts, Some(110.5));
        assert_eq!(gpus[0].pci_bus_id, None);
        assert_eq!(gpus[0].last_seen_at, unix_time(1_800_000_000.0));
    }

    #[test]
    fn non_finite_values_are_unknown_not_zero_and_no_anomaly() {
        let labels = default_labels();
        let temperature = [sample(&[("uuid", "a")], f64::NAN)];
        let memory = [sample(&[("uuid", "a")], f64::INFINITY)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(metric(Reading::Temperature), &temperature);
        table.add_values(metric(Reading::MemoryUsed), &memory);
        let gpu = &gpus(table.finish())[0];

        assert_eq!(gpu.temperature_celsius, None);
        assert_eq!(gpu.memory_used_bytes, None);
        assert!(gpu.anomalies.is_empty());
    }

    #[test]
    fn implausible_values_are_dropped_and_listed_as_anomalies() {
        let labels = default_labels();
        let utilization = [sample(&[("uuid", "a")], 1.5)];
        let temperature = [sample(&[("uuid", "a")], 4_294_967_295.0)];
        let power = [sample(&[("uuid", "a")], 9.223_372_036_854_776e18)];
        let memory = [sample(&[("uuid", "a")], 80e9)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(metric(Reading::Utilization), &utilization);
        table.add_values(metric(Reading::Temperature), &temperature);
        table.add_values(metric(Reading::PowerDraw), &power);
        table.add_values(metric(Reading::MemoryTotal), &memory);
        let gpu = &gpus(table.finish())[0];

        assert_eq!(gpu.utilization_ratio, None);
        assert_eq!(gpu.temperature_celsius, None);
        assert_eq!(gpu.power_draw_watts, None);
        assert_eq!(gpu.memory_total_bytes, Some(80_000_000_000));
        let dropped: Vec<_> = gpu.anomalies.iter().map(|a| a.reading).collect();
        assert_eq!(
            dropped,
            [
                "utilization_ratio",
                "temperature_celsius",
                "power_draw_watts"
            ]
        );
        assert_eq!(gpu.anomalies[0].value, "1.5");
        assert!(gpu.anomalies[0].reason.starts_with("above 1"));
    }

    #[test]
    fn a_value_that_is_no_number_is_an_anomaly_of_its_gpu_only() {
        let labels = default_labels();
        let mut odd = sample(&[("uuid", "a")], 0.0);
        odd.value = Err(Text(Cow::Borrowed("N/A")));
        let utilization = [odd, sample(&[("uuid", "b")], 0.5)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(metric(Reading::Utilization), &utilization);
        let mut gpus = gpus(table.finish());
        gpus.sort_by(|a, b| a.uuid.cmp(&b.uuid));

        assert_eq!(gpus[0].utilization_ratio, None);
        assert_eq!(gpus[0].anomalies[0].value, "N/A");
        assert_eq!(gpus[0].anomalies[0].reason, "not a number");
        assert_eq!(gpus[1].utilization_ratio, Some(0.5));
    }

    #[test]
    fn duplicate_series_give_one_gpu_whose_newest_info_series_decides() {
        let labels = default_labels();
        let old_pod = [("uuid", "a"), ("node", "n"), ("pod", "exporter-old")];
        let new_pod = [("uuid", "a"), ("node", "n"), ("pod", "exporter-new")];
        let info = [
            sample(&[old_pod.as_slice(), &[("name", "L40S")]].concat(), 100.0),
            sample(&[new_pod.as_slice(), &[("name", "L40S")]].concat(), 160.0),
        ];
        let power = [sample(&new_pod, 300.0), sample(&old_pod, 100.0)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_info(&info);
        table.add_values(metric(Reading::PowerDraw), &power);
        let gpus = gpus(table.finish());

        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].power_draw_watts, Some(300.0));
        assert_eq!(gpus[0].last_seen_at, unix_time(160.0));
    }

    #[test]
    fn without_info_the_choice_between_duplicates_does_not_depend_on_order() {
        let labels = default_labels();
        let a = sample(&[("uuid", "a"), ("job", "one")], 1.0);
        let b = sample(&[("uuid", "a"), ("job", "two")], 2.0);
        let forward = [a.clone(), b.clone()];
        let backward = [b, a];

        let mut first = GpuTable::new(&NVIDIA_SMI, &labels);
        first.add_values(metric(Reading::PowerDraw), &forward);
        let mut second = GpuTable::new(&NVIDIA_SMI, &labels);
        second.add_values(metric(Reading::PowerDraw), &backward);

        let first = gpus(first.finish())[0].power_draw_watts;
        assert_eq!(first, gpus(second.finish())[0].power_draw_watts);
        assert_eq!(first, Some(1.0));
    }

    #[test]
    fn targets_report_up_and_collection_health_by_job_and_instance() {
        let labels = default_labels();
        let answer = [
            sample(
                &[("__name__", "up"), ("job", "j"), ("instance", "h:1")],
                0.0,
            ),
            sample(
                &[
                    ("__name__", "nvidia_smi_last_collect_success"),
                    ("job", "j"),
                    ("instance", "h:1"),
                ],
                1.0,
            ),
        ];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_targets(&answer);
        let joined = table.finish();

        let target = Target {
            job: "j".into(),
            instance: "h:1".into(),
        };
        assert_eq!(joined.targets[&target].up, Some(false));
        assert_eq!(joined.targets[&target].collect_ok, Some(true));
    }

    #[test]
    fn the_first_configured_node_label_present_wins() {
        let labels = default_labels();
        let both = sample(
            &[("kubernetes_node", "k8s"), ("instance", "10.0.0.1:9835")],
            1.0,
        );
        let instance_only = sample(&[("instance", "10.0.0.1:9835")], 1.0);

        assert_eq!(
            resolve_node(&both.labels, &labels).map(|n| n.to_string()),
            Some("k8s".into())
        );
        assert_eq!(
            resolve_node(&instance_only.labels, &labels).map(|n| n.to_string()),
            Some("10.0.0.1".into())
        );
        assert_eq!(resolve_node(&sample(&[], 1.0).labels, &labels), None);
    }

    #[test]
    fn instance_ports_are_stripped_but_bare_ipv6_addresses_are_kept() {
        assert_eq!(strip_port("gpu-node-1:9835"), "gpu-node-1");
        assert_eq!(strip_port("[fd00::1]:9835"), "fd00::1");
        assert_eq!(strip_port("fd00::1"), "fd00::1");
        assert_eq!(strip_port("gpu-node-1"), "gpu-node-1");
    }

    #[test]
    fn series_without_a_uuid_are_counted_and_left_out() {
        let labels = default_labels();
        let power = [sample(&[("node", "n")], 1.0)];
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(metric(Reading::PowerDraw), &power);
        let joined = table.finish();

        assert_eq!(joined.unidentified, 1);
        assert!(joined.gpus.is_empty());
    }

    #[test]
    fn times_that_rfc3339_cannot_write_are_no_time() {
        assert!(
            unix_time(253_402_300_799.0).is_some(),
            "the last second of 9999"
        );
        assert_eq!(unix_time(253_402_300_800.0), None);
        assert_eq!(unix_time(4.4e12), None);
        assert_eq!(unix_time(f64::INFINITY), None);
        assert_eq!(unix_time(-1.0), None);
        assert_eq!(unix_time(f64::NAN), None);
    }
}
