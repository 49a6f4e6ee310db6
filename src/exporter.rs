//! What an exporter family writes, as one table per family.
//!
//! The poller and the join never name a metric: they walk the table. Adding a second family
//! (dcgm-exporter, say) means writing a second table, with its own names, labels and unit
//! scales, and nothing else.

use std::borrow::Cow;
use std::time::Duration;

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

impl Reading {
    /// The field of a GPU in the API that carries the reading.
    pub fn field(self) -> &'static str {
        match self {
            Reading::Utilization => "utilization_ratio",
            Reading::MemoryUsed => "memory_used_bytes",
            Reading::MemoryTotal => "memory_total_bytes",
            Reading::Temperature => "temperature_celsius",
            Reading::PowerDraw => "power_draw_watts",
            Reading::PowerLimit => "power_limit_watts",
        }
    }

    /// True for readings that describe what the GPU is doing now, as opposed to what it is
    /// (installed memory, power limit). A GPU nobody can measure keeps only the latter.
    pub fn is_live(self) -> bool {
        !matches!(self, Reading::MemoryTotal | Reading::PowerLimit)
    }
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
    /// The least and the greatest value, in the API's unit, that a working GPU can report.
    /// Anything outside is a driver's placeholder (blank fields come out as 2^32 - 1 or
    /// 2^63 - 1 in some versions) or a glitch, and is dropped rather than allowed to spike
    /// an average.
    pub plausible: (f64, f64),
}

/// The info metric (value 1) whose labels describe each GPU.
#[derive(Debug, Clone, Copy)]
pub struct InfoMetric {
    /// The metric name.
    pub name: &'static str,
    /// The query: `timestamp(name)`, whose value is the time of each GPU's latest sample
    /// (the info metric's own value is always 1), so that one query says both what each GPU
    /// is and how old the newest data about it is.
    pub query: &'static str,
    /// Label holding the product name.
    pub model_label: &'static str,
    /// Label holding the driver version.
    pub driver_label: &'static str,
    /// Label holding the PCI bus id; older exporters do not write it.
    pub pci_bus_id_label: &'static str,
    /// Label holding the GPU's index on its node; older exporters do not write it.
    pub index_label: &'static str,
}

/// The per-target series that say whether an exporter works, as opposed to whether its GPUs
/// do. They carry no GPU label; they are joined to GPUs through the scrape target
/// (`job`, `instance`) that both come from.
#[derive(Debug, Clone, Copy)]
pub struct TargetMetrics {
    /// Prometheus's own `up`: 1 when the last scrape of the target succeeded.
    pub up: &'static str,
    /// 1 when the exporter's last collection from the driver succeeded, if it says so.
    pub collect_ok: &'static str,
    /// When the exporter's last collection succeeded, Unix seconds, if it says so. An
    /// exporter whose driver calls hang keeps serving its last page, so its series look
    /// fresh in Prometheus while the values are old.
    pub collect_time: &'static str,
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
    /// The health of the exporters themselves.
    pub targets: TargetMetrics,
}

/// What one query of a poll asks for.
#[derive(Debug, Clone, Copy)]
pub enum Query {
    /// A metric carrying a reading.
    Value(&'static ValueMetric),
    /// The info metric's timestamps and labels.
    Info,
    /// The exporter targets' health.
    Targets,
}

impl Query {
    /// True for the info query, whose answer the join needs before any other.
    pub fn is_info(self) -> bool {
        matches!(self, Query::Info)
    }
}

impl ExporterFamily {
    /// Every query of a poll, in a fixed order: readings, info, targets.
    pub fn queries(&'static self) -> impl Iterator<Item = Query> {
        self.values
            .iter()
            .map(Query::Value)
            .chain([Query::Info, Query::Targets])
    }

    /// The name a query goes by in errors and logs: its metric, or `up` for the targets.
    pub fn label(&self, query: Query) -> &'static str {
        match query {
            Query::Value(metric) => metric.name,
            Query::Info => self.info.name,
            Query::Targets => self.targets.up,
        }
    }

    /// The PromQL text of a query. `window` is how far back the targets query looks for
    /// exporters that wrote GPU info, so that one that died within it is reported as down.
    pub fn promql(&self, query: Query, window: Duration) -> Cow<'static, str> {
        match query {
            Query::Value(metric) => Cow::Borrowed(metric.name),
            Query::Info => Cow::Borrowed(self.info.query),
            Query::Targets => Cow::Owned(self.targets_promql(window)),
        }
    }

    /// `up` of the targets that wrote GPU info within `window`, and the exporters' own
    /// collection health, in one answer whose series `__name__` tells apart. Asking `up`
    /// alone would bring back every target of the cluster.
    fn targets_promql(&self, window: Duration) -> String {
        let TargetMetrics {
            up,
            collect_ok,
            collect_time,
        } = self.targets;
        format!(
            "({up} and on (job, instance) last_over_time({info}[{seconds}s])) or {collect_ok} or {collect_time}",
            info = self.info.name,
            seconds = window.as_secs().max(1),
        )
    }
}

/// The `nvidia_smi_*` family written by utkuozdemir/nvidia_gpu_exporter.
///
/// The exporter converts units itself (MiB to bytes, percent to ratio), so every scale is 1.
/// Its temperature metric has no `_celsius` suffix because the name is derived from the
/// nvidia-smi CSV header `temperature.gpu`, which carries no unit; querying
/// `nvidia_smi_temperature_gpu_celsius`, as some documents do, finds nothing.
///
pub const NVIDIA_SMI: ExporterFamily = ExporterFamily {
    name: "nvidia_smi",
    uuid_label: "uuid",
    values: &[
        ValueMetric {
            name: "nvidia_smi_utilization_gpu_ratio",
            reading: Reading::Utilization,
            scale: 1.0,
            plausible: (0.0, 1.0),
        },
        ValueMetric {
            name: "nvidia_smi_memory_used_bytes",
            reading: Reading::MemoryUsed,
            scale: 1.0,
            plausible: (0.0, PLAUSIBLE_BYTES),
        },
        ValueMetric {
            name: "nvidia_smi_memory_total_bytes",
            reading: Reading::MemoryTotal,
            scale: 1.0,
            plausible: (0.0, PLAUSIBLE_BYTES),
        },
        ValueMetric {
            name: "nvidia_smi_temperature_gpu",
            reading: Reading::Temperature,
            scale: 1.0,
            plausible: (-40.0, 200.0),
        },
        ValueMetric {
            name: "nvidia_smi_power_draw_watts",
            reading: Reading::PowerDraw,
            scale: 1.0,
            plausible: (0.0, PLAUSIBLE_WATTS),
        },
        ValueMetric {
            name: "nvidia_smi_enforced_power_limit_watts",
            reading: Reading::PowerLimit,
            scale: 1.0,
            plausible: (0.0, PLAUSIBLE_WATTS),
        },
    ],
    info: InfoMetric {
        name: "nvidia_smi_gpu_info",
        query: "timestamp(nvidia_smi_gpu_info)",
        model_label: "name",
        driver_label: "driver_version",
        pci_bus_id_label: "pci_bus_id",
        index_label: "index",
    },
    targets: TargetMetrics {
        up: "up",
        collect_ok: "nvidia_smi_last_collect_success",
        collect_time: "nvidia_smi_last_collect_success_timestamp_seconds",
    },
};

/// 1 PiB: more memory than any GPU has, far less than the 2^32 MiB a blank field becomes.
const PLAUSIBLE_BYTES: f64 = 1_125_899_906_842_624.0;

/// 10 kW: above any GPU's draw or limit, far below the sentinel values of blank fields.
const PLAUSIBLE_WATTS: f64 = 10_000.0;
