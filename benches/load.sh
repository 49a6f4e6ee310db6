#!/usr/bin/env bash
# Load benchmark: the service against a real Prometheus holding a large simulated cluster,
# side by side, in one run, with
#   (b) a reference server answering the same bytes from memory (the limit of this stack),
#   (c) a dashboard's alternative that queries Prometheus on every request.
# Prints a Markdown table of requests/s, p99 latency and ratios, and the service's memory.
#
# Usage: benches/load.sh [GPUS...]      default: 800 8000 (8 GPUs per node)
# Environment: BENCH_SECONDS (default 5) per wrk run, BENCH_CONNECTIONS (default 64),
#   BENCH_ROUNDS (default 3): each case runs once per round and the median is shown.
# Everything listens on 127.0.0.1; every run is bounded by BENCH_SECONDS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

seconds="${BENCH_SECONDS:-5}"
connections="${BENCH_CONNECTIONS:-64}"
rounds="${BENCH_ROUNDS:-3}"
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(800 8000)

prom_port=19190
service=127.0.0.1:18080
service_fast=127.0.0.1:18083
reference=127.0.0.1:18081
direct=127.0.0.1:18082

scripts/install-prometheus
ensure_load_tools

cargo build --release --locked --bin gpu-monitoring-api \
  --example bench-exporter --example reference-server --example direct-prometheus
bin="${CARGO_TARGET_DIR:-target}/release"
workdir="$(mktemp -d "${TMPDIR:-/tmp}/gpu-load.XXXXXX")"
pids=()

cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; kill -CONT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; kill -CONT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# bench NAME URL [wrk options...]: one bounded wrk run; records "NAME rps p99_ms".
bench() {
  local name="$1" url="$2"
  shift 2
  local out
  out="$(wrk -t2 -c"$connections" -d"${seconds}s" --timeout 10s --latency "$@" "$url")"
  local rps p99
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  local errors
  errors="$(awk '/Non-2xx or 3xx|Socket errors/ {print}' <<<"$out")"
  [ -z "$errors" ] || echo "load.sh: $name: $errors" >&2
  echo "$name $rps $(to_ms "$p99")" >>"$workdir/results"
}

run_scale() {
  local gpus="$1" nodes=$(($1 / 8))
  : >"$workdir/results"
  mkdir -p "$workdir/bodies"

  "$bin/examples/bench-exporter" --nodes "$nodes" --gpus-per-node 8 --targets 8 \
    >"$workdir/exporter.log" 2>&1 &
  pids+=($!)
  cat >"$workdir/prometheus.yml" <<YML
global: {scrape_interval: 5s, scrape_timeout: 5s}
scrape_configs:
  - job_name: bench
    honor_labels: true
    static_configs:
      - targets: [$(for i in $(seq 0 7); do printf "'127.0.0.1:%d'," $((19935 + i)); done | sed 's/,$//')]
YML
  "${PROMETHEUS_BIN:-prometheus}" --config.file="$workdir/prometheus.yml" --storage.tsdb.path="$workdir/data-$gpus" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$workdir/prometheus.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$prom_port/api/v1/query?query=count(nvidia_smi_gpu_info)" "\"$gpus\"\]" 60

  # A long interval keeps one snapshot, and so one ETag, for the whole measurement; the cost
  # of publishing is measured on its own below, with a second instance polling every second.
  "$bin/gpu-monitoring-api" --listen "$service" --prometheus-url "http://127.0.0.1:$prom_port" \
    --poll-interval 1h >"$workdir/service.log" 2>&1 &
  local service_pid=$!
  pids+=($service_pid)
  "$bin/examples/direct-prometheus" --listen "$direct" \
    --prometheus-url "http://127.0.0.1:$prom_port" >"$workdir/direct.log" 2>&1 &
  pids+=($!)
  wait_for "http://$service/api/v1/gpu/metrics" "\"$gpus GPUs on" 60

  local metrics="http://$service/api/v1/gpu/metrics"
  local one_node="http://$service/api/v1/gpu/metrics?node=gpu-node-0000"
  curl -fsS "$metrics" -o "$workdir/bodies/metrics.json"
  curl -fsS -H 'Accept-Encoding: gzip' "$metrics" -o "$workdir/bodies/metrics.json.gz"
  curl -fsS "$one_node" -o "$workdir/bodies/node.json"
  local etag
  etag="$(curl -fsS -D - -o /dev/null "$metrics" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')"
  "$bin/examples/reference-server" --listen "$reference" --dir "$workdir/bodies" \
    >"$workdir/reference.log" 2>&1 &
  pids+=($!)
  wait_for "http://$reference/node.json" "success" 30

  # The second instance polls every second; it is paused (SIGSTOP) except while its own run
  # measures what publishing costs, so that its polls load the machine only then.
  GPU_API_POLLER__INTERVAL=1s "$bin/gpu-monitoring-api" --listen "$service_fast" \
    --prometheus-url "http://127.0.0.1:$prom_port" >"$workdir/service-fast.log" 2>&1 &
  local fast_pid=$!
  pids+=($fast_pid)
  wait_for "http://$service_fast/api/v1/gpu/metrics" "\"$gpus GPUs on" 60
  kill -STOP "$fast_pid"

  # Each case runs once per round, right beside its reference, and the tables show the
  # median of the rounds: single runs on a shared machine differ by more than the
  # differences being measured.
  for _ in $(seq 1 "$rounds"); do
    bench "metrics-gzip" "$metrics" -H 'Accept-Encoding: gzip'
    bench "ref-metrics-gzip" "http://$reference/metrics.json.gz"
    bench "metrics-identity" "$metrics"
    bench "ref-metrics-identity" "http://$reference/metrics.json"
    bench "revalidate-304" "$metrics" -H "If-None-Match: $etag"
    bench "ref-revalidate-304" "http://$reference/metrics.json" -H 'If-None-Match: "reference"'
    bench "one-node" "$one_node"
    bench "ref-one-node" "http://$reference/node.json"
    connections=256 bench "metrics-gzip-256c" "$metrics" -H 'Accept-Encoding: gzip'
    connections=256 bench "ref-metrics-gzip-256c" "http://$reference/metrics.json.gz"
    kill -CONT "$fast_pid"
    sleep 2
    bench "publish-every-1s-gzip" "http://$service_fast/api/v1/gpu/metrics" -H 'Accept-Encoding: gzip'
    kill -STOP "$fast_pid"
  done
  kill -CONT "$fast_pid"

  # Querying Prometheus per request is hundreds of times slower; one round says enough.
  connections=8 bench "direct-prometheus" "http://$direct/api/v1/gpu/metrics"
  connections=8 bench "metrics-identity-8c" "$metrics"
  local rss
  rss="$(rss_mib "$service_pid")"

  report "$gpus" "$rss" \
    "$(stat -c %s "$workdir/bodies/metrics.json")" "$(stat -c %s "$workdir/bodies/metrics.json.gz")"
  stop_all
}

# report GPUS RSS_MIB BODY GZ: one Markdown table for the scale.
report() {
  echo
  echo "### $1 GPUs ($(( $1 / 8 )) nodes): body $(( $3 / 1024 )) KiB, gzip $(( $4 / 1024 )) KiB, service RSS $2 MiB"
  echo
  echo "| case | service req/s | p99 ms | reference req/s | p99 ms | ratio |"
  echo "|---|---:|---:|---:|---:|---:|"
  awk '
    { n[$1]++; rps[$1, n[$1]] = $2; p99[$1, n[$1]] = $3 }
    function median(values, name,    count, i, j, v, sorted) {
      count = n[name]
      for (i = 1; i <= count; i++) {
        v = values[name, i]
        for (j = i - 1; j >= 1 && sorted[j] > v; j--) sorted[j + 1] = sorted[j]
        sorted[j + 1] = v
      }
      return count % 2 ? sorted[(count + 1) / 2] : (sorted[count / 2] + sorted[count / 2 + 1]) / 2
    }
    function row(label, a, b,    ra, rb) {
      ra = median(rps, a); rb = median(rps, b)
      printf "| %s | %.0f | %.2f | %.0f | %.2f | %.2f |\n", label, ra, median(p99, a), rb, median(p99, b), ra / rb
    }
    END {
      row("metrics, gzip", "metrics-gzip", "ref-metrics-gzip")
      row("metrics, identity", "metrics-identity", "ref-metrics-identity")
      row("304 revalidation", "revalidate-304", "ref-revalidate-304")
      row("one node (8 GPUs)", "one-node", "ref-one-node")
      row("metrics, gzip, 256 connections", "metrics-gzip-256c", "ref-metrics-gzip-256c")
      row("metrics, gzip: a publish every 1 s vs none during the run", "publish-every-1s-gzip", "metrics-gzip")
      row("metrics, identity vs querying Prometheus per request (8 connections)", "metrics-identity-8c", "direct-prometheus")
    }' "$workdir/results"
}

echo "## Load benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), wrk ${seconds}s runs, median of $rounds rounds, $connections connections unless noted"
for gpus in "${sizes[@]}"; do
  run_scale "$gpus"
done
