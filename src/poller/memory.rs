//! What the poller remembers from one poll to the next, so that a failure loses nothing that
//! was known: the last known readings of every GPU, when each was last seen and through which
//! exporter, and since when each failing query has been failing.
//!
//! Without it, a timed-out query would blank its metric for every GPU, and an exporter that
//! dies would silently take its GPUs out of every view, which a dashboard reads as "fine".

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::join::{self, Joined, Seen, Target, TargetHealth};
use crate::exporter::{ExporterFamily, Reading};
use crate::snapshot::{Gpu, GpuId, GpuStatus};

/// How long things may age before the poller says so.
#[derive(Debug, Clone, Copy)]
pub struct Ageing {
    /// A GPU whose newest sample, or whose exporter's last successful collection, is older
    /// than this is `stale`.
    pub gpu_stale_after: Duration,
    /// A GPU not seen for this long is forgotten.
    pub missing_after: Duration,
}

/// The poller's memory; owned by the poll loop alone, so it needs no lock.
#[derive(Debug)]
pub struct Memory {
    family: &'static ExporterFamily,
    ageing: Ageing,
    gpus: HashMap<GpuId, Known>,
    failing_since: HashMap<&'static str, SystemTime>,
}

#[derive(Debug, Clone)]
struct Known {
    gpu: Gpu,
    target: Option<Target>,
}

impl Memory {
    /// Remembers nothing yet.
    pub fn new(family: &'static ExporterFamily, ageing: Ageing) -> Self {
        Memory {
            family,
            ageing,
            gpus: HashMap::new(),
            failing_since: HashMap::new(),
        }
    }

    /// When the query named `label` started failing, `now` if it just did.
    pub fn failing(&mut self, label: &'static str, now: SystemTime) -> SystemTime {
        *self.failing_since.entry(label).or_insert(now)
    }

    /// Forgets the failures of every query not in `failing`.
    pub fn keep_failing(&mut self, failing: &[&'static str]) {
        self.failing_since
            .retain(|label, _| failing.contains(label));
    }

    /// Merges a poll's GPUs with what was known, and returns every GPU to publish.
    ///
    /// `lost` are the readings whose query failed: each GPU keeps its last known value for
    /// them. `census` is true when the info query answered in full; only then is a known
    /// GPU that the answers lack really absent, and marked `stale` (its exporter is down)
    /// or `missing` (its exporter is up but no longer lists it).
    pub fn update(
        &mut self,
        joined: Joined,
        lost: &[Reading],
        census: bool,
        now: SystemTime,
    ) -> Vec<Gpu> {
        let targets = joined.targets;
        let mut next: HashMap<GpuId, Known> = HashMap::with_capacity(self.gpus.len());

        for seen in joined.gpus {
            let known = self.seen(seen, lost, census, &targets, now);
            next.insert(known.gpu.uuid.clone(), known);
        }
        for (id, known) in &self.gpus {
            if next.contains_key(id) {
                continue;
            }
            if let Some(kept) = self.unseen(known, census, &targets, now) {
                next.insert(id.clone(), kept);
            }
        }

        self.gpus = next;
        self.gpus.values().map(|known| known.gpu.clone()).collect()
    }

    fn seen(
        &self,
        seen: Seen,
        lost: &[Reading],
        census: bool,
        targets: &HashMap<Target, TargetHealth>,
        now: SystemTime,
    ) -> Known {
        let Seen { mut gpu, target } = seen;
        if let Some(known) = self.gpus.get(&gpu.uuid) {
            for &reading in lost {
                join::store(&mut gpu, reading, join::load(&known.gpu, reading));
            }
            if !census {
                describe_from(&mut gpu, &known.gpu);
            }
        }
        gpu.last_seen_at.get_or_insert(now);

        let health = target.as_ref().and_then(|t| targets.get(t));
        gpu.exporter_up = health.and_then(|h| h.up);
        gpu.status = if self.is_stale(&gpu, health, now) {
            GpuStatus::Stale
        } else {
            GpuStatus::Ok
        };
        Known { gpu, target }
    }

    /// A known GPU that this poll's answers lack, as it should be published, if at all.
    fn unseen(
        &self,
        known: &Known,
        census: bool,
        targets: &HashMap<Target, TargetHealth>,
        now: SystemTime,
    ) -> Option<Known> {
        if !census {
            return Some(known.clone());
        }
        if age(known.gpu.last_seen_at, now) > self.ageing.missing_after {
            return None;
        }

        let mut gpu = known.gpu.clone();
        let up = known
            .target
            .as_ref()
            .and_then(|t| targets.get(t))
            .and_then(|h| h.up);
        gpu.exporter_up = up;
        gpu.status = if up == Some(false) {
            GpuStatus::Stale
        } else {
            GpuStatus::Missing
        };
        self.forget_live_readings(&mut gpu);
        Some(Known {
            gpu,
            target: known.target.clone(),
        })
    }

    /// True when nothing vouches that the readings are current.
    fn is_stale(&self, gpu: &Gpu, health: Option<&TargetHealth>, now: SystemTime) -> bool {
        let limit = self.ageing.gpu_stale_after;
        let old = |time: Option<SystemTime>| time.is_some_and(|t| age(Some(t), now) > limit);
        let Some(health) = health else {
            return old(gpu.last_seen_at);
        };
        health.up == Some(false)
            || health.collect_ok == Some(false)
            || old(health.collected_at)
            || old(gpu.last_seen_at)
    }

    /// Nobody measures the GPU now: what it is stays, what it was doing goes.
    fn forget_live_readings(&self, gpu: &mut Gpu) {
        for metric in self.family.values {
            if metric.reading.is_live() {
                join::store(gpu, metric.reading, None);
            }
        }
        gpu.memory_used_ratio = None;
        gpu.anomalies.clear();
    }
}

/// The descriptive fields, which only the info query fills in.
fn describe_from(gpu: &mut Gpu, known: &Gpu) {
    gpu.name = gpu.name.take().or_else(|| known.name.clone());
    gpu.driver_version = gpu
        .driver_version
        .take()
        .or_else(|| known.driver_version.clone());
    gpu.pci_bus_id = gpu.pci_bus_id.take().or_else(|| known.pci_bus_id.clone());
    gpu.index = gpu.index.or(known.index);
    gpu.node = gpu.node.take().or_else(|| known.node.clone());
}

/// How long ago `time` was; zero for a time in the future (clocks of two machines).
fn age(time: Option<SystemTime>, now: SystemTime) -> Duration {
    time.and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::NVIDIA_SMI;
    use crate::snapshot::NodeName;

    const AGEING: Ageing = Ageing {
        gpu_stale_after: Duration::from_secs(120),
        missing_after: Duration::from_secs(600),
    };

    fn target() -> Target {
        Target {
            job: "nvidia".into(),
            instance: "node-a:9835".into(),
        }
    }

    fn seen(id: &str, utilization: f64, at: SystemTime) -> Seen {
        let mut gpu = Gpu::new(GpuId::parse(id).expect("id"));
        gpu.node = Some(NodeName::parse("node-a").expect("node"));
        gpu.name = Some("NVIDIA L40S".into());
        gpu.utilization_ratio = Some(utilization);
        gpu.memory_total_bytes = Some(48_000_000_000);
        gpu.last_seen_at = Some(at);
        Seen {
            gpu,
            target: Some(target()),
        }
    }

    fn joined(gpus: Vec<Seen>, up: Option<bool>) -> Joined {
        let mut targets = HashMap::new();
        if let Some(up) = up {
            let health = TargetHealth {
                up: Some(up),
                ..TargetHealth::default()
            };
            targets.insert(target(), health);
        }
        Joined {
            gpus,
            targets,
            unidentified: 0,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    /// A memory that has seen one complete poll of `gpus` at `at(0)`.
    fn remembering(gpus: Vec<Seen>) -> Memory {
        let mut memory = Memory::new(&NVIDIA_SMI, AGEING);
        memory.update(joined(gpus, Some(true)), &[], true, at(0));
        memory
    }

    fn only(gpus: Vec<Gpu>) -> Gpu {
        assert_eq!(gpus.len(), 1, "{gpus:?}");
        gpus.into_iter().next().expect("one gpu")
    }

    #[test]
    fn a_failed_query_keeps_the_last_known_value_of_its_reading() {
        let mut memory = remembering(vec![seen("a", 0.7, at(0))]);

        let mut later = seen("a", 0.0, at(5));
        later.gpu.utilization_ratio = None;
        let lost = [Reading::Utilization];
        let gpu = only(memory.update(joined(vec![later], Some(true)), &lost, true, at(5)));

        assert_eq!(gpu.utilization_ratio, Some(0.7));
        assert_eq!(gpu.status, GpuStatus::Ok);
    }

    #[test]
    fn gpus_of_a_dead_exporter_stay_listed_as_stale_without_live_values() {
        let mut memory = remembering(vec![seen("a", 0.7, at(0))]);

        let gpu = only(memory.update(joined(vec![], Some(false)), &[], true, at(30)));

        assert_eq!(gpu.status, GpuStatus::Stale);
        assert_eq!(gpu.exporter_up, Some(false));
        assert_eq!(gpu.utilization_ratio, None);
        assert_eq!(gpu.memory_total_bytes, Some(48_000_000_000));
        assert_eq!(gpu.name.as_deref(), Some("NVIDIA L40S"));
        assert_eq!(gpu.last_seen_at, Some(at(0)));
    }

    #[test]
    fn a_gpu_gone_from_a_live_exporter_is_missing_then_forgotten() {
        let mut memory = remembering(vec![seen("a", 0.7, at(0)), seen("b", 0.1, at(0))]);

        let gpus = memory.update(
            joined(vec![seen("b", 0.2, at(60))], Some(true)),
            &[],
            true,
            at(60),
        );
        let gone = gpus
            .iter()
            .find(|g| g.uuid.as_str() == "GPU-a")
            .expect("kept");
        assert_eq!(gone.status, GpuStatus::Missing);
        assert_eq!(gone.exporter_up, Some(true));
        assert_eq!(gone.utilization_ratio, None);

        let gpus = memory.update(
            joined(vec![seen("b", 0.2, at(601))], Some(true)),
            &[],
            true,
            at(601),
        );
        assert_eq!(only(gpus).uuid.as_str(), "GPU-b");
    }

    #[test]
    fn without_a_full_info_answer_nothing_is_declared_missing() {
        let mut memory = remembering(vec![seen("a", 0.7, at(0))]);

        let gpu = only(memory.update(joined(vec![], None), &[], false, at(5)));

        assert_eq!(gpu.status, GpuStatus::Ok);
        assert_eq!(gpu.utilization_ratio, Some(0.7));
    }

    #[test]
    fn old_samples_or_a_failing_collection_make_a_gpu_stale() {
        let mut memory = Memory::new(&NVIDIA_SMI, AGEING);
        let old = only(memory.update(
            joined(vec![seen("a", 0.7, at(0))], Some(true)),
            &[],
            true,
            at(121),
        ));
        assert_eq!(old.status, GpuStatus::Stale);

        let mut failing = joined(vec![seen("a", 0.7, at(200))], Some(true));
        failing
            .targets
            .get_mut(&target())
            .expect("target")
            .collect_ok = Some(false);
        let gpu = only(memory.update(failing, &[], true, at(200)));
        assert_eq!(gpu.status, GpuStatus::Stale);
    }

    #[test]
    fn a_failing_query_keeps_the_time_it_started_failing() {
        let mut memory = Memory::new(&NVIDIA_SMI, AGEING);

        assert_eq!(memory.failing("up", at(0)), at(0));
        assert_eq!(memory.failing("up", at(5)), at(0));
        memory.keep_failing(&[]);
        assert_eq!(memory.failing("up", at(10)), at(10));
    }
}
