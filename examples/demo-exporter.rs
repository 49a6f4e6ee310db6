//! A stand-in for utkuozdemir/nvidia_gpu_exporter on a small, made-up Kubernetes cluster.
//!
//! The service only ever talks to Prometheus, and Prometheus only scrapes exporters, so a demo
//! without GPUs needs something that writes what the real exporter writes. This program serves
//! one `/metrics` page per simulated node, each on its own port (one exporter per node, as in a
//! real cluster), in the Prometheus text format and with the exporter's exact metric names:
//! `nvidia_smi_temperature_gpu` without a `_celsius` suffix, a `uuid` label without the `GPU-`
//! prefix, `nvidia_smi_gpu_info` carrying the descriptive labels, and no node label (Prometheus
//! adds that from its scrape configuration; see `demo/prometheus.yml`).
//!
//! It also reproduces the two gaps the service must cope with: a GPU in MIG mode has no
//! `nvidia_smi_utilization_gpu_ratio` series at all, and the consumer card on the third node
//! has no power series.
//!
//! Readings move like a busy cluster's: load follows slow waves with some noise per GPU,
//! utilization and power follow the load, temperature follows the power a little late, and
//! memory in use drifts. Everything comes from a small deterministic generator seeded by the
//! clock at start-up, so every run looks different while each GPU stays stable in identity.
//!
//! Run it with `cargo run --release --locked --example demo-exporter`; `scripts/demo` does.

use std::f64::consts::TAU;
use std::fmt::Write as _;
use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bytes in a MiB: nvidia-smi reports memory in MiB and the exporter multiplies.
const MIB: u64 = 1024 * 1024;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "Imitates nvidia_gpu_exporter for three simulated GPU nodes")]
struct Args {
    /// Address every simulated node's exporter listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of the first node's exporter; node i listens on base-port + i.
    #[arg(long, default_value_t = 19835)]
    base_port: u16,
}

/// A GPU product: what the exporter reports about it that never changes.
#[derive(Debug)]
struct Model {
    /// Product name, as nvidia-smi writes it.
    name: &'static str,
    /// Installed framebuffer memory, bytes.
    memory_total_bytes: u64,
    /// Power limit the driver enforces, watts.
    power_limit_watts: f64,
    /// Power drawn when nothing runs, watts.
    idle_watts: f64,
    /// CUDA compute capability.
    compute_cap: &'static str,
}

/// NVIDIA H100 80GB HBM3.
const H100: Model = Model {
    name: "NVIDIA H100 80GB HBM3",
    memory_total_bytes: 85_520_809_984,
    power_limit_watts: 700.0,
    idle_watts: 70.0,
    compute_cap: "9.0",
};

/// NVIDIA L40S.
const L40S: Model = Model {
    name: "NVIDIA L40S",
    memory_total_bytes: 48_305_799_168,
    power_limit_watts: 350.0,
    idle_watts: 35.0,
    compute_cap: "8.9",
};

/// NVIDIA GeForce RTX 4080 SUPER; its power only drives the simulated temperature.
const RTX_4080_SUPER: Model = Model {
    name: "NVIDIA GeForce RTX 4080 SUPER",
    memory_total_bytes: 17_171_480_576,
    power_limit_watts: 320.0,
    idle_watts: 15.0,
    compute_cap: "8.9",
};

/// One GPU in a node.
#[derive(Debug)]
struct Gpu {
    /// What it is.
    model: &'static Model,
    /// PCI bus id; nvidia-smi numbers GPUs in bus order.
    pci_bus_id: &'static str,
    /// In MIG mode nvidia-smi reports utilization as `[N/A]`, so the exporter writes nothing.
    mig: bool,
    /// Whether the card reports power draw and limit at all.
    reports_power: bool,
}

impl Gpu {
    /// A GPU that reports every reading.
    const fn plain(model: &'static Model, pci_bus_id: &'static str) -> Self {
        Gpu {
            model,
            pci_bus_id,
            mig: false,
            reports_power: true,
        }
    }
}

/// One simulated Kubernetes node and its exporter.
#[derive(Debug)]
struct Node {
    /// The Kubernetes node name, which only Prometheus's scrape configuration knows.
    name: &'static str,
    /// One driver per node, whatever the GPUs.
    driver_version: &'static str,
    /// Highest CUDA version the driver supports.
    cuda_version: &'static str,
    /// The GPUs, in nvidia-smi's index order.
    gpus: &'static [Gpu],
}

/// The simulated cluster; node i is served on base-port + i.
const NODES: &[Node] = &[
    Node {
        name: "gpu-node-a",
        driver_version: "590.48.01",
        cuda_version: "13.1",
        gpus: &[
            Gpu::plain(&H100, "00000000:1A:00.0"),
            Gpu::plain(&H100, "00000000:40:00.0"),
            Gpu::plain(&H100, "00000000:53:00.0"),
            Gpu::plain(&H100, "00000000:66:00.0"),
        ],
    },
    Node {
        name: "gpu-node-b",
        driver_version: "595.80",
        cuda_version: "13.2",
        gpus: &[
            Gpu::plain(&L40S, "00000000:01:00.0"),
            Gpu::plain(&L40S, "00000000:21:00.0"),
            Gpu {
                mig: true,
                ..Gpu::plain(&H100, "00000000:81:00.0")
            },
        ],
    },
    Node {
        name: "gpu-node-c",
        driver_version: "595.71.05",
        cuda_version: "13.2",
        gpus: &[Gpu {
            reports_power: false,
            ..Gpu::plain(&RTX_4080_SUPER, "00000000:01:00.0")
        }],
    },
];

/// What one scrape reports for one GPU; `None` is a series the exporter does not write.
#[derive(Debug)]
struct Readings {
    /// Busy fraction, 0 to 1, in whole percent.
    utilization_ratio: Option<f64>,
    /// Memory in use, bytes, in whole MiB.
    memory_used_bytes: f64,
    /// Memory installed, bytes.
    memory_total_bytes: f64,
    /// Degrees Celsius, whole.
    temperature: f64,
    /// Watts, to the hundredth.
    power_draw_watts: Option<f64>,
    /// Watts.
    power_limit_watts: Option<f64>,
}

/// Independent streams of the generator, so that one reading's noise is not another's.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Level = 1,
    Period,
    Phase,
    Ripple,
    Warmth,
    MemoryLevel,
    MemoryDrift,
    UtilizationNoise,
    PowerNoise,
    TemperatureNoise,
}

/// The deterministic generator behind every reading: a pure function of seed, GPU and time.
#[derive(Debug, Clone, Copy)]
struct Simulation {
    /// Taken from the clock at start-up, so each run differs.
    seed: u64,
    /// Time zero of the waves.
    start: Instant,
}

impl Simulation {
    /// A simulation seeded by the wall clock.
    fn seeded_by_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Simulation {
            seed: nanos as u64,
            start: Instant::now(),
        }
    }

    /// The readings of one GPU, `gpu_key` telling it apart from every other, right now.
    fn read(&self, gpu: &Gpu, gpu_key: u64) -> Readings {
        let t = self.start.elapsed().as_secs_f64();
        let key = mix(self.seed, gpu_key);
        let model = gpu.model;
        let load = self.load(key, t);
        let utilization = load + 0.03 * noise(key, Stream::UtilizationNoise, t);
        let power = model.idle_watts
            + (model.power_limit_watts - model.idle_watts) * load
            + 0.015 * model.power_limit_watts * noise(key, Stream::PowerNoise, t);
        let power = power.clamp(0.9 * model.idle_watts, model.power_limit_watts);
        Readings {
            utilization_ratio: (!gpu.mig).then(|| round_to(utilization.clamp(0.0, 1.0), 100.0)),
            memory_used_bytes: self.memory_used(key, model, t),
            memory_total_bytes: model.memory_total_bytes as f64,
            temperature: self.temperature(key, t).round(),
            power_draw_watts: gpu.reports_power.then(|| round_to(power, 100.0)),
            power_limit_watts: gpu.reports_power.then_some(model.power_limit_watts),
        }
    }

    /// The GPU's true busy fraction: a slow wave and a ripple around its own usual level.
    fn load(&self, key: u64, t: f64) -> f64 {
        let level = 0.1 + 0.75 * param(key, Stream::Level);
        let period = 90.0 + 150.0 * param(key, Stream::Period);
        let phase = TAU * param(key, Stream::Phase);
        let ripple = TAU * param(key, Stream::Ripple);
        let wave = 0.35 * (TAU * t / period + phase).sin();
        let fast = 0.1 * (TAU * t * 3.7 / period + ripple).sin();
        (level + wave + fast).clamp(0.0, 1.0)
    }

    /// Celsius: ambient plus heat from the load of the last half minute, which is what the
    /// power draw follows, so temperature trails power.
    fn temperature(&self, key: u64, t: f64) -> f64 {
        let heat = [10.0, 20.0, 30.0]
            .iter()
            .map(|lag| self.load(key, t - lag))
            .sum::<f64>()
            / 3.0;
        let ambient = 27.0 + 6.0 * param(key, Stream::Warmth);
        ambient + 36.0 * heat + 0.6 * noise(key, Stream::TemperatureNoise, t)
    }

    /// Bytes in use, in whole MiB: the GPU's usual share, drifting as jobs come and go.
    fn memory_used(&self, key: u64, model: &Model, t: f64) -> f64 {
        let total_mib = (model.memory_total_bytes / MIB) as f64;
        let level = 0.1 + 0.6 * param(key, Stream::MemoryLevel);
        let share = (level + 0.15 * drift(key, Stream::MemoryDrift, t / 90.0)).clamp(0.01, 0.97);
        (total_mib * share).round() * MIB as f64
    }
}

/// SplitMix64's finalizer: a tiny, well-mixed hash of 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a value into a state.
fn mix(state: u64, value: u64) -> u64 {
    splitmix64(state ^ splitmix64(value))
}

/// The top 53 bits of a hash as a fraction in [0, 1).
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}

/// A fixed parameter of one GPU, in [0, 1).
fn param(key: u64, stream: Stream) -> f64 {
    unit(mix(key, stream as u64))
}

/// Noise in [-1, 1) that changes once a second.
fn noise(key: u64, stream: Stream, t: f64) -> f64 {
    noise_at(key, stream, t.floor() as i64)
}

/// Noise in [-1, 1) for one step.
fn noise_at(key: u64, stream: Stream, step: i64) -> f64 {
    2.0 * unit(mix(mix(key, stream as u64), step as u64)) - 1.0
}

/// Noise in [-1, 1) that glides smoothly from one whole `x` to the next.
fn drift(key: u64, stream: Stream, x: f64) -> f64 {
    let step = x.floor();
    let f = x - step;
    let smooth = f * f * (3.0 - 2.0 * f);
    let from = noise_at(key, stream, step as i64);
    let to = noise_at(key, stream, step as i64 + 1);
    from + (to - from) * smooth
}

/// Rounds to a multiple of `1 / per`.
fn round_to(value: f64, per: f64) -> f64 {
    (value * per).round() / per
}

/// A stable, made-up uuid for a GPU, lower case and without `GPU-`, as the exporter writes it.
fn uuid(node_index: usize, gpu_index: usize) -> String {
    let high = mix(0x6770_755F_7575_6964, (node_index * 64 + gpu_index) as u64);
    let low = splitmix64(high);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xFFFF,
        high & 0xFFFF,
        low >> 48,
        low & 0xFFFF_FFFF_FFFF
    )
}

/// A sample value the way the exporter's Go client writes it (`strconv.FormatFloat(v, 'g',
/// -1, 64)`): `700`, `631.95`, but `8.5520809984e+10` from an exponent of 6 up.
fn go_float(value: f64) -> String {
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a whole exponent");
    if (-4..6).contains(&exponent) {
        return value.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// A label set as the text format writes it, `{name="value",…}`, names given in order.
///
/// Every value here is a constant of this file, none holding `"`, `\\` or a newline, so
/// nothing needs escaping.
fn label_set(pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// The labels of a GPU's `nvidia_smi_gpu_info` series, in the Go client's (sorted) order.
fn info_labels(node: &Node, gpu: &Gpu, index: usize, uuid: &str) -> String {
    let index = index.to_string();
    label_set(&[
        ("compute_cap", gpu.model.compute_cap),
        ("cuda_version", node.cuda_version),
        ("driver_version", node.driver_version),
        ("index", &index),
        ("name", gpu.model.name),
        ("pci_bus_id", gpu.pci_bus_id),
        ("uuid", uuid),
    ])
}

/// One metric family of a page: name, HELP text and samples (label set, value).
#[derive(Debug)]
struct Family {
    /// Metric name.
    name: &'static str,
    /// The exporter's HELP text, mostly nvidia-smi's query field and unit.
    help: &'static str,
    /// Samples as `{labels}` (possibly empty) and value.
    samples: Vec<(String, f64)>,
}

/// A per-GPU family carrying one reading.
#[derive(Debug)]
struct ValueFamily {
    /// Metric name.
    name: &'static str,
    /// The exporter's HELP text.
    help: &'static str,
    /// The reading each sample carries; `None` leaves the GPU out.
    reading: fn(&Readings) -> Option<f64>,
}

/// Every per-GPU value family the service reads.
const VALUE_FAMILIES: &[ValueFamily] = &[
    ValueFamily {
        name: "nvidia_smi_enforced_power_limit_watts",
        help: "enforced.power.limit [W]",
        reading: |r| r.power_limit_watts,
    },
    ValueFamily {
        name: "nvidia_smi_memory_total_bytes",
        help: "memory.total [MiB]",
        reading: |r| Some(r.memory_total_bytes),
    },
    ValueFamily {
        name: "nvidia_smi_memory_used_bytes",
        help: "memory.used [MiB]",
        reading: |r| Some(r.memory_used_bytes),
    },
    ValueFamily {
        name: "nvidia_smi_power_draw_watts",
        help: "power.draw [W]",
        reading: |r| r.power_draw_watts,
    },
    ValueFamily {
        name: "nvidia_smi_temperature_gpu",
        help: "temperature.gpu",
        reading: |r| Some(r.temperature),
    },
    ValueFamily {
        name: "nvidia_smi_utilization_gpu_ratio",
        help: "utilization.gpu [%]",
        reading: |r| r.utilization_ratio,
    },
];

impl Family {
    /// A family with one sample and no labels, about the exporter itself.
    fn global(name: &'static str, help: &'static str, value: f64) -> Self {
        let samples = vec![(String::new(), value)];
        Family {
            name,
            help,
            samples,
        }
    }

    /// `nvidia_smi_gpu_info`: value 1, labelled with what describes each GPU.
    fn info(gpus: &[Scraped]) -> Self {
        Family {
            name: "nvidia_smi_gpu_info",
            help: "A metric with a constant '1' value labeled by gpu uuid, name, driver_version, \
                   pci_bus_id, compute_cap, index, cuda_version.",
            samples: gpus.iter().map(|g| (g.info_labels.clone(), 1.0)).collect(),
        }
    }

    /// A per-GPU family; a GPU whose reading is missing gets no sample.
    fn per_gpu(family: &ValueFamily, gpus: &[Scraped]) -> Self {
        let sample = |gpu: &Scraped| Some((gpu.labels.clone(), (family.reading)(&gpu.readings)?));
        Family {
            name: family.name,
            help: family.help,
            samples: gpus.iter().filter_map(sample).collect(),
        }
    }

    /// The family in the text format; like the Go client, nothing at all without samples.
    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} gauge", self.help);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{name}{labels} {}", go_float(*value));
        }
    }
}

/// One node's exporter: what it serves and how the values move.
#[derive(Debug, Clone, Copy)]
struct Exporter {
    /// Position of the node in [`NODES`].
    node_index: usize,
    /// The generator shared by every node.
    simulation: Simulation,
}

/// One GPU as the page writes it: its uuid, fixed facts and this scrape's readings.
struct Scraped {
    /// Label set `{uuid="…"}` of the value series.
    labels: String,
    /// The `nvidia_smi_gpu_info` label set.
    info_labels: String,
    /// This scrape's readings.
    readings: Readings,
}

impl Exporter {
    /// The node this exporter runs on.
    fn node(&self) -> &'static Node {
        &NODES[self.node_index]
    }

    /// Reads every GPU of the node once.
    fn scrape(&self) -> Vec<Scraped> {
        let node = self.node();
        let scrape_gpu = |(index, gpu): (usize, &Gpu)| {
            let uuid = uuid(self.node_index, index);
            let key = (self.node_index * 64 + index) as u64;
            Scraped {
                labels: label_set(&[("uuid", &uuid)]),
                info_labels: info_labels(node, gpu, index, &uuid),
                readings: self.simulation.read(gpu, key),
            }
        };
        node.gpus.iter().enumerate().map(scrape_gpu).collect()
    }

    /// The whole `/metrics` page, families in name order as the Go client writes them.
    fn render(&self) -> String {
        let gpus = self.scrape();
        let mut families = vec![
            Family::global(
                "nvidia_smi_command_exit_code",
                "Exit code of the most recent nvidia-smi run",
                0.0,
            ),
            Family::global(
                "nvidia_smi_last_collect_success",
                "Whether the most recent collection succeeded (1) or not (0)",
                1.0,
            ),
            Family::info(&gpus),
        ];
        families.extend(VALUE_FAMILIES.iter().map(|f| Family::per_gpu(f, &gpus)));
        families.sort_by_key(|family| family.name);

        let mut page = String::new();
        for family in &families {
            family.write(&mut page);
        }
        page
    }
}

/// `GET /metrics`.
async fn metrics(State(exporter): State<Exporter>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exporter.render())
}

/// Any other path, answered as Go's `net/http` answers it.
async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "404 page not found\n")
}

/// Binds node `node_index`'s port.
async fn bind(args: &Args, node_index: usize) -> anyhow::Result<TcpListener> {
    let port = u16::try_from(node_index)
        .ok()
        .and_then(|i| args.base_port.checked_add(i))
        .context("--base-port leaves no room for every node's port")?;
    let address = SocketAddr::new(args.host, port);
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for {}", NODES[node_index].name))
}

/// Waits for Ctrl-C, or for a server to stop on its own, which is an error.
async fn run_until_ctrl_c(servers: &mut JoinSet<std::io::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("cannot listen for Ctrl-C"),
        Some(ended) = servers.join_next() => {
            ended.context("a node's server panicked")?.context("a node's server failed")?;
            anyhow::bail!("a node's server stopped unexpectedly")
        }
    }
}

/// Starts node `node_index`'s exporter and returns the line naming it and its URL.
async fn start_node(
    args: &Args,
    node_index: usize,
    simulation: Simulation,
    shutdown: &CancellationToken,
    servers: &mut JoinSet<std::io::Result<()>>,
) -> anyhow::Result<String> {
    let listener = bind(args, node_index).await?;
    let address = listener
        .local_addr()
        .context("a bound socket has an address")?;
    let exporter = Exporter {
        node_index,
        simulation,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(exporter);
    let stop = shutdown.clone().cancelled_owned();
    servers.spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .into_future(),
    );
    Ok(format!(
        "{} http://{address}/metrics",
        NODES[node_index].name
    ))
}

/// Serves every node until Ctrl-C.
async fn run(args: Args) -> anyhow::Result<()> {
    let simulation = Simulation::seeded_by_clock();
    let shutdown = CancellationToken::new();
    let mut servers = JoinSet::new();
    let mut listing = Vec::new();
    for node_index in 0..NODES.len() {
        let line = start_node(&args, node_index, simulation, &shutdown, &mut servers).await?;
        listing.push(line);
    }
    println!("demo-exporter: {}", listing.join(", "));

    let outcome = run_until_ctrl_c(&mut servers).await;
    shutdown.cancel();
    while servers.join_next().await.is_some() {}
    outcome
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo-exporter: {error:#}");
            ExitCode::FAILURE
        }
    }
}
