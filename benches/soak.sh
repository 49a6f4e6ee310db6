#!/usr/bin/env bash
# Soak: minutes of steady load on the service while Prometheus goes away and comes back
# every minute. Prints one Markdown row per minute (requests, errors, p99, resident memory,
# the snapshot generation served) and a summary, and exits non-zero when a request failed,
# the service did not recover after an outage, or its memory grew past 1.5x its warm value.
#
# Usage: benches/soak.sh
# Environment: SOAK_MINUTES (default 10), SOAK_GPUS (default 800, 8 per node),
#   SOAK_CONNECTIONS (default 64), SOAK_SUBSCRIBERS (event-stream clients, default 16).
# Everything listens on 127.0.0.1; every load run is bounded in time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

minutes="${SOAK_MINUTES:-10}"
gpus="${SOAK_GPUS:-800}"
connections="${SOAK_CONNECTIONS:-64}"
subscribers="${SOAK_SUBSCRIBERS:-16}"
nodes=$((gpus / 8))
up_seconds=25   # each minute: Prometheus up this long, then down
down_seconds=15 # ... this long, then back up for the rest of the minute

prom_port=19290
exporter_port=19335
service=127.0.0.1:18090

scripts/install-prometheus
ensure_load_tools

cargo build --release --locked --bin gpu-monitoring-api --example bench-exporter
bin="${CARGO_TARGET_DIR:-target}/release"
workdir="$(mktemp -d "${TMPDIR:-/tmp}/gpu-soak.XXXXXX")"
pids=()
prom_pid=""

cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}" $prom_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $prom_pid; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

start_prometheus() {
  "${PROMETHEUS_BIN:-prometheus}" --config.file="$workdir/prometheus.yml" \
    --storage.tsdb.path="$workdir/data" --web.listen-address="127.0.0.1:$prom_port" \
    --log.level=warn >>"$workdir/prometheus.log" 2>&1 &
  prom_pid=$!
}

stop_prometheus() {
  kill "$prom_pid" 2>/dev/null || true
  wait "$prom_pid" 2>/dev/null || true
  prom_pid=""
}

generation() {
  curl -fsS --max-time 5 "http://$service/api/v1/gpu/utilization" |
    sed -n 's/.*"generation":\([0-9]*\).*/\1/p'
}

# Dashboards' mix: every view, gzip and identity, filters, and revalidations with a tag
# that a newer snapshot has replaced (a 200 with the full body).
cat >"$workdir/mix.lua" <<'LUA'
local requests = {
  {"/api/v1/gpu/metrics", {["Accept-Encoding"] = "gzip"}},
  {"/api/v1/gpu/metrics", {}},
  {"/api/v1/gpu/nodes", {["Accept-Encoding"] = "gzip"}},
  {"/api/v1/gpu/nodes/gpu-node-0001", {}},
  {"/api/v1/gpu/utilization", {["Accept-Encoding"] = "gzip"}},
  {"/api/v1/gpu/utilization?node=gpu-node-0000,gpu-node-0002", {}},
  {"/api/v1/gpu/metrics?node=gpu-node-0003", {["If-None-Match"] = 'W/"old"'}},
  {"/api/health", {}},
  {"/readyz", {}},
}
local i = 0
request = function()
  i = i % #requests + 1
  return wrk.format("GET", requests[i][1], requests[i][2])
end
LUA

cat >"$workdir/prometheus.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: soak
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$exporter_port']
YML

"$bin/examples/bench-exporter" --base-port "$exporter_port" --targets 1 --nodes "$nodes" \
  --gpus-per-node 8 >"$workdir/exporter.log" 2>&1 &
pids+=($!)
start_prometheus
wait_for "http://127.0.0.1:$prom_port/api/v1/query?query=count(nvidia_smi_gpu_info)" "\"$gpus\"\]" 60

GPU_API_POLLER__INTERVAL=1s "$bin/gpu-monitoring-api" --listen "$service" \
  --prometheus-url "http://127.0.0.1:$prom_port" >"$workdir/service.log" 2>&1 &
service_pid=$!
pids+=($service_pid)
wait_for "http://$service/api/v1/gpu/metrics" "\"$gpus GPUs on" 60
start_rss="$(rss_mib "$service_pid")"

# Event-stream subscribers for the whole run, each bounded by curl's own deadline.
for i in $(seq 1 "$subscribers"); do
  curl -sN --max-time $((minutes * 60 + 30)) "http://$service/api/v1/gpu/stream?view=nodes" \
    >/dev/null 2>&1 &
  pids+=($!)
done

echo "## Soak, $(date -u +%Y-%m-%d), $(nproc) cores, $gpus GPUs, poll every 1 s, $connections connections, $subscribers stream subscribers"
echo
echo "Each minute: Prometheus up ${up_seconds} s, down ${down_seconds} s, up again."
echo
echo "| minute | requests | req/s | p99 ms | errors | RSS MiB | generation after outage |"
echo "|---:|---:|---:|---:|---:|---:|---:|"

total_requests=0
total_errors=0
warm_rss=""
failed=0
for minute in $(seq 1 "$minutes"); do
  wrk -t2 -c"$connections" -d60s --timeout 10s --latency -s "$workdir/mix.lua" \
    "http://$service" >"$workdir/wrk-$minute.txt" 2>&1 &
  wrk_pid=$!

  sleep "$up_seconds"
  stop_prometheus
  sleep "$down_seconds"
  before="$(generation)"
  start_prometheus
  wait "$wrk_pid"

  out="$workdir/wrk-$minute.txt"
  requests="$(awk '/requests in/ {print $1}' "$out")"
  rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
  errors="$(awk '/Non-2xx or 3xx/ {n += $NF} /Socket errors/ {
      for (i = 3; i <= NF; i += 2) { gsub(",", "", $(i + 1)); n += $(i + 1) } } END {print n + 0}' "$out")"
  rss="$(rss_mib "$service_pid")"
  [ -n "$warm_rss" ] || warm_rss="$rss"
  after="$(generation)"
  [ "$after" -gt "$before" ] || { echo "soak.sh: no new snapshot after Prometheus came back in minute $minute" >&2; failed=1; }

  total_requests=$((total_requests + requests))
  total_errors=$((total_errors + errors))
  echo "| $minute | $requests | $rps | $p99 | $errors | $rss | $before → $after |"
done

ratio="$(awk -v a="$rss" -v b="$warm_rss" 'BEGIN {printf "%.2f", a / b}')"
echo
echo "Requests: $total_requests, errors: $total_errors. Resident memory: $start_rss MiB at start," \
  "$warm_rss MiB warm (after minute 1), $rss MiB at the end: ${ratio}x warm."

[ "$total_errors" -eq 0 ] || { echo "soak.sh: $total_errors requests failed" >&2; failed=1; }
awk -v r="$ratio" 'BEGIN {exit !(r > 1.5)}' && { echo "soak.sh: memory grew past 1.5x its warm value" >&2; failed=1; }
exit "$failed"
