//! Joins the series of several queries into one record per GPU.

use std::collections::HashMap;

use crate::exporter::{ExporterFamily, Reading, ValueMetric};
use crate::prometheus::Sample;
use crate::snapshot::{Gpu, GpuId, NodeName};

/// The GPUs found so far, keyed by canonical uuid, and the series that named none.
#[derive(Debug)]
pub struct GpuTable<'a> {
    family: &'a ExporterFamily,
    node_labels: &'a [String],
    gpus: HashMap<GpuId, Gpu>,
    unidentified: usize,
}

impl<'a> GpuTable<'a> {
    /// An empty table for one family, resolving nodes from `node_labels` in order.
    pub fn new(family: &'a ExporterFamily, node_labels: &'a [String]) -> Self {
        GpuTable {
            family,
            node_labels,
            gpus: HashMap::new(),
            unidentified: 0,
        }
    }

    /// Adds the info metric's series: names, driver, PCI bus id and index.
    pub fn add_info(&mut self, samples: &[Sample<'_>]) {
        let info = self.family.info;
        for sample in samples {
            let Some(gpu) = self.gpu_for(sample) else {
                continue;
            };
            let label = |name: &str| sample.labels.get(name).map(|v| v.to_string());
            gpu.name = label(info.model_label);
            gpu.driver_version = label(info.driver_label);
            gpu.pci_bus_id = label(info.pci_bus_id_label);
            gpu.index = label(info.index_label).and_then(|i| i.trim().parse().ok());
        }
    }

    /// Adds one value metric's series.
    pub fn add_values(&mut self, metric: &ValueMetric, samples: &[Sample<'_>]) {
        for sample in samples {
            let value = Some(sample.value * metric.scale).filter(|v| v.is_finite());
            if let Some(gpu) = self.gpu_for(sample) {
                set_reading(gpu, metric.reading, value);
            }
        }
    }

    /// How many series carried no usable uuid and were left out.
    pub fn unidentified(&self) -> usize {
        self.unidentified
    }

    /// The joined GPUs, in no particular order.
    pub fn into_gpus(self) -> Vec<Gpu> {
        self.gpus.into_values().collect()
    }

    fn gpu_for(&mut self, sample: &Sample<'_>) -> Option<&mut Gpu> {
        let id = sample
            .labels
            .get(self.family.uuid_label)
            .and_then(|raw| GpuId::parse(raw).ok());
        let Some(id) = id else {
            self.unidentified += 1;
            return None;
        };

        let gpu = self
            .gpus
            .entry(id)
            .or_insert_with_key(|id| Gpu::new(id.clone()));
        if gpu.node.is_none() {
            gpu.node = resolve_node(sample, self.node_labels);
        }
        Some(gpu)
    }
}

/// The node a series belongs to: the value of the first configured label it carries.
///
/// `instance` is `host:port` of the scrape target, so its port is dropped; an IPv6
/// `[addr]:port` keeps its address without the brackets.
fn resolve_node(sample: &Sample<'_>, node_labels: &[String]) -> Option<NodeName> {
    node_labels.iter().find_map(|label| {
        let raw: &str = sample.labels.get(label.as_str())?;
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

/// Stores a reading in its field; bytes are whole and never negative, so anything else is
/// unknown.
fn set_reading(gpu: &mut Gpu, reading: Reading, value: Option<f64>) {
    let bytes = || {
        value
            .filter(|v| *v >= 0.0 && *v < u64::MAX as f64)
            .map(|v| v.round() as u64)
    };
    match reading {
        Reading::Utilization => gpu.utilization_ratio = value,
        Reading::MemoryUsed => gpu.memory_used_bytes = bytes(),
        Reading::MemoryTotal => gpu.memory_total_bytes = bytes(),
        Reading::Temperature => gpu.temperature_celsius = value,
        Reading::PowerDraw => gpu.power_draw_watts = value,
        Reading::PowerLimit => gpu.power_limit_watts = value,
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
            value,
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

    #[test]
    fn series_of_one_gpu_from_several_metrics_join_into_one_record() {
        let labels = default_labels();
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_info(&[sample(
            &[
                ("uuid", "abc"),
                ("name", "NVIDIA L40S"),
                ("index", "2"),
                ("node", "n1"),
            ],
            1.0,
        )]);
        table.add_values(
            metric(Reading::PowerDraw),
            &[sample(&[("uuid", "GPU-ABC")], 110.5)],
        );
        let gpus = table.into_gpus();

        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].uuid.as_str(), "GPU-abc");
        assert_eq!(gpus[0].name.as_deref(), Some("NVIDIA L40S"));
        assert_eq!(gpus[0].index, Some(2));
        assert_eq!(gpus[0].node.as_ref().map(NodeName::as_str), Some("n1"));
        assert_eq!(gpus[0].power_draw_watts, Some(110.5));
        assert_eq!(gpus[0].pci_bus_id, None);
    }

    #[test]
    fn non_finite_values_are_unknown_not_zero() {
        let labels = default_labels();
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(
            metric(Reading::Temperature),
            &[sample(&[("uuid", "a")], f64::NAN)],
        );
        table.add_values(
            metric(Reading::MemoryUsed),
            &[sample(&[("uuid", "a")], f64::INFINITY)],
        );
        let gpu = &table.into_gpus()[0];

        assert_eq!(gpu.temperature_celsius, None);
        assert_eq!(gpu.memory_used_bytes, None);
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
            resolve_node(&both, &labels).map(|n| n.to_string()),
            Some("k8s".into())
        );
        assert_eq!(
            resolve_node(&instance_only, &labels).map(|n| n.to_string()),
            Some("10.0.0.1".into())
        );
        assert_eq!(resolve_node(&sample(&[], 1.0), &labels), None);
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
        let mut table = GpuTable::new(&NVIDIA_SMI, &labels);

        table.add_values(metric(Reading::PowerDraw), &[sample(&[("node", "n")], 1.0)]);

        assert_eq!(table.unidentified(), 1);
        assert!(table.into_gpus().is_empty());
    }
}
