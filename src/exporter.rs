//! What an exporter family writes, as one table per family.
//!
//! The poller and the join never name a metric: they walk the table. Adding a second family
//! (dcgm-exporter, say) means writing a second table, with its own names, labels and unit
//! scales, and nothing else.

/// A per-GPU reading that the API reports, in the API's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reading {
    /// Fraction of time the GPU was busy, 0.0 to 1.0.
    Utilization,
    /// Framebuffer memory in use, bytes.
    MemoryUsed,
    /// Framebuffer memory installed, bytes.
    MemoryTotal,
    /// Core temperature, degrees Celsius.
    Temperature,
    /// Power being drawn, watts.
    PowerDraw,
    /// Power limit the driver enforces, watts.
    PowerLimit,
}

/// One queried metric that carries a reading.
#[derive(Debug, Clone, Copy)]
pub struct ValueMetric {
    /// The metric name, which is also the whole PromQL query.
    pub name: &'static str,
    /// Which reading its samples fill in.
    pub reading: Reading,
    /// Factor that turns the exporter's unit into the API's unit.
    pub scale: f64,
}

/// The info metric (value 1) whose labels describe each GPU.
#[derive(Debug, Clone, Copy)]
pub struct InfoMetric {
    /// The metric name, which is also the whole PromQL query.
    pub name: &'static str,
    /// Label holding the product name.
    pub model_label: &'static str,
    /// Label holding the driver version.
    pub driver_label: &'static str,
    /// Label holding the PCI bus id; older exporters do not write it.
    pub pci_bus_id_label: &'static str,
    /// Label holding the GPU's index on its node; older exporters do not write it.
    pub index_label: &'static str,
}

/// Everything the poller needs to know about one exporter family.
#[derive(Debug, Clone, Copy)]
pub struct ExporterFamily {
    /// A short name for logs.
    pub name: &'static str,
    /// The label that identifies a GPU on every series of the family.
    pub uuid_label: &'static str,
    /// The metrics that carry readings.
    pub values: &'static [ValueMetric],
    /// The metric that carries descriptive labels.
    pub info: InfoMetric,
}

impl ExporterFamily {
    /// The names of every metric the family queries, info metric last.
    pub fn metric_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values
            .iter()
            .map(|metric| metric.name)
            .chain(std::iter::once(self.info.name))
    }
}

/// The `nvidia_smi_*` family written by utkuozdemir/nvidia_gpu_exporter.
///
/// The exporter converts units itself (MiB to bytes, percent to ratio), so every scale is 1.
/// Its temperature metric has no `_celsius` suffix because the name is derived from the
/// nvidia-smi CSV header `temperature.gpu`, which carries no unit; querying
/// `nvidia_smi_temperature_gpu_celsius`, as some documents do, finds nothing.
pub const NVIDIA_SMI: ExporterFamily = ExporterFamily {
    name: "nvidia_smi",
    uuid_label: "uuid",
    values: &[
        ValueMetric {
            name: "nvidia_smi_utilization_gpu_ratio",
            reading: Reading::Utilization,
            scale: 1.0,
        },
        ValueMetric {
            name: "nvidia_smi_memory_used_bytes",
            reading: Reading::MemoryUsed,
            scale: 1.0,
        },
        ValueMetric {
            name: "nvidia_smi_memory_total_bytes",
            reading: Reading::MemoryTotal,
            scale: 1.0,
        },
        ValueMetric {
            name: "nvidia_smi_temperature_gpu",
            reading: Reading::Temperature,
            scale: 1.0,
        },
        ValueMetric {
            name: "nvidia_smi_power_draw_watts",
            reading: Reading::PowerDraw,
            scale: 1.0,
        },
        ValueMetric {
            name: "nvidia_smi_enforced_power_limit_watts",
            reading: Reading::PowerLimit,
            scale: 1.0,
        },
    ],
    info: InfoMetric {
        name: "nvidia_smi_gpu_info",
        model_label: "name",
        driver_label: "driver_version",
        pci_bus_id_label: "pci_bus_id",
        index_label: "index",
    },
};
