# Helpers shared by the load and soak scripts; sourced, not run.

# Installs wrk from the OS packages if it is missing, and checks for curl.
ensure_load_tools() {
  if ! command -v wrk >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing wrk (apt-get) ..." >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
  fi
  command -v curl >/dev/null || { echo "$0: curl is needed" >&2; exit 1; }
}

# wait_for URL PATTERN SECONDS: until the body at URL contains PATTERN.
wait_for() {
  local deadline=$((SECONDS + $3))
  until curl -fsS --max-time 5 "$1" 2>/dev/null | grep -q -- "$2"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$0: gave up waiting for $2 at $1" >&2
      exit 1
    fi
    sleep 1
  done
}

# to_ms 1.23ms|456.00us|1.2s -> milliseconds
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# rss_mib PID: resident memory of a process, MiB.
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
