#!/usr/bin/env bash
# bench/l4/run.sh — L4 data-path benchmark (issue 2, point 10). Results and method: docs/benchmarks.md.
#
# One run on loopback, HTTP/1.1, fixed concurrency, keep-alive and new-connection-per-request, four paths:
#   a  direct:  wrk → nginx 127.0.0.1:BASE
#   r  bare redirect: wrk in a cgroup of its own → VIP, rewritten by a one-rule connect4 program
#      (bench/l4/bare-redirect.bpf.c) to the same nginx: the physical limit of any connect-time mesh
#   b  kmesh:   wrk in a registered cgroup → VIP, steered by Kmesh's connect hook to the same nginx
#   c  sidecar: wrk → haproxy A (client side) 127.0.0.1:BASE+1 → haproxy B (server side) 127.0.0.1:BASE+2 → nginx
# Prints req/s and p50/p99 per path and mode, ratios b/a, b/r and c/b, a table and JSON; checks the floors
# b/a ≥ 0.97 (keep-alive), and for new connections b/a ≥ 0.95 and b within 0.03 of r (b/a ≥ r/a − 0.03).
#
# Needs root (cgroup, BPF). Usage: sudo bash bench/l4/run.sh [options]   (or: sudo npm run bench:l4 -- [options])
set -euo pipefail
{ # the whole script is one block: bash parses it before running, so editing the file mid-run is harmless

usage() {
  cat <<EOF
usage: $0 [options]
  --paths LIST        which paths to run, comma separated subset of a,r,b,c (default a,r,b,c)
  --modes LIST        keepalive (HTTP keep-alive) and/or close (a new connection per request); default both
  --connections N     wrk connections, fixed for every case (default 64)
  --duration S        seconds per measured run (default 2)
  --reps N            measured runs per case; medians are reported (default 7)
  --warmup S          warm-up seconds per case, not measured (default 2)
  --json FILE         also write the JSON result to FILE
  --wait-quiet S      before measuring, wait up to S seconds for CPU pressure (PSI avg10) below 10%
  --strict            exit 3 when a floor is missed
  --no-install        do not apt-get install missing Debian packages
  --no-build          do not run 'npm run build' (use the existing dist/)
  --no-prog-stats     skip the extra path-b run with BPF run-time statistics (connect4 ns per connect)
Environment: BENCH_PORT_BASE (default 18080; ports BASE..BASE+10 on 127.0.0.1 are used),
  BENCH_VIP (default 127.10.0.5; port 9080).
CPU placement (2 cores): wrk and haproxy A on CPU 0 (the client side), nginx and haproxy B on CPU 1 (the server side).
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR="$ROOT/bench/l4"

PATHS="a,r,b,c"
MODES="keepalive,close"
CONNS=64
DURATION=2
REPS=7
WARMUP=2
JSON_OUT=""
WAIT_QUIET=0
STRICT=0
DO_INSTALL=1
DO_BUILD=1
PROG_STATS=1
while (($#)); do
  case $1 in
    --paths) PATHS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --json) JSON_OUT=$(realpath -m "$2"); shift 2 ;;
    --wait-quiet) WAIT_QUIET=$2; shift 2 ;;
    --strict) STRICT=1; shift ;;
    --no-install) DO_INSTALL=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    --no-prog-stats) PROG_STATS=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
  esac
done
IFS=', ' read -r -a PATH_LIST <<<"$PATHS"
for p in "${PATH_LIST[@]}"; do
  [[ $p == a || $p == r || $p == b || $p == c || $p == o ]] || { echo "--paths: unknown path '$p' (use a,r,b,c,o)" >&2; exit 64; }
done
IFS=', ' read -r -a MODE_LIST <<<"$MODES"
for m in "${MODE_LIST[@]}"; do
  [[ $m == keepalive || $m == close ]] || { echo "--modes: unknown mode '$m' (use keepalive,close)" >&2; exit 64; }
done
want() { [[ " ${PATH_LIST[*]} " == *" $1 "* ]]; }
# path o (optional, --paths a,b,o): the same nginx behind a cluster with outlier detection and least_request
# (docs/resilience.md), through the same daemon as b at VIP 127.10.0.6; o/a is compared with b/a. With o in the
# run, b's cgroup has the L4 sockops program too (the config has a cluster with a policy): run --paths a,r,b for a
# plain config's b.
if want o && ! want b; then PATH_LIST=("${PATH_LIST[@]}" b); fi
VIP_RESILIENT=127.10.0.6

PORT_BASE=${BENCH_PORT_BASE:-18080}
P_BACKEND=$PORT_BASE            # nginx, the backend of all three paths
P_HA_A=$((PORT_BASE + 1))       # haproxy A, client-side proxy
P_HA_B=$((PORT_BASE + 2))       # haproxy B, server-side proxy
P_NGX_STATUS=$((PORT_BASE + 8)) # nginx stub_status (accepted-connection counter)
P_HA_STATS=$((PORT_BASE + 9))   # haproxy A stats (client-side session counter)
P_METRICS=$((PORT_BASE + 10))   # kmesh-daemon metrics listener (kept off the default 15020)
VIP=${BENCH_VIP:-127.10.0.5}
VIP_PORT=9080
CPU_CLIENT=0
CPU_SERVER=1
DAEMON_JS="$ROOT/dist/src/bin/kmesh-daemon.js"
REPORT_JS="$ROOT/dist/bench/l4/report.js"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (needs cgroup and BPF for path b)"

# --- install (idempotent: only what is missing) ---------------------------------------------------------------
install_deps() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v nginx >/dev/null || need+=(nginx-light)
  command -v curl >/dev/null || need+=(curl)
  command -v taskset >/dev/null || need+=(util-linux)
  if want b || want r; then # the project's build and the daemon (see README): BPF toolchain and libbpf
    command -v clang >/dev/null || need+=(clang)
    command -v llvm-strip >/dev/null || need+=(llvm)
    command -v bpftool >/dev/null || need+=(bpftool)
    [[ -e /usr/include/bpf/libbpf.h ]] || need+=(libbpf-dev)
    [[ -e /usr/include/libelf.h ]] || need+=(libelf-dev)
    ldconfig -p | grep -q 'libbpf\.so\.1 ' || need+=(libbpf1)
  fi
  if ((${#need[@]})); then
    log "installing Debian packages: ${need[*]}"
    # Note: Debian's nginx package may start its own service on :80; the bench runs a private nginx instead.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}
if ((DO_INSTALL)); then install_deps; fi
for tool in wrk haproxy nginx curl taskset node; do
  command -v "$tool" >/dev/null || die "$tool not found (run without --no-install)"
done
(($(nproc) >= 2)) || die "needs 2 CPUs (client side on CPU $CPU_CLIENT, server side on CPU $CPU_SERVER)"

# --- build -------------------------------------------------------------------------------------------------------
if ((DO_BUILD)); then
  log "building (npm run build)"
  (cd "$ROOT" && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build >/dev/null) ||
    { want b && die "build failed"; log "warning: build failed; paths a/c only, using dist/ as it is"; }
fi
[[ -f $REPORT_JS ]] || die "$REPORT_JS missing (npm run build)"
if want b; then [[ -f $DAEMON_JS ]] || die "$DAEMON_JS missing (npm run build); run --paths a,c without the daemon"; fi

# --- state and cleanup (always: on success, error and Ctrl-C) ----------------------------------------------------
WORK=$(mktemp -d /tmp/kmesh-bench-l4.XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody) read the static file from here
BG_PIDS=()        # nginx, haproxy A, haproxy B — started by us, stopped by pid
DAEMON_PID=""
STATS_PID=""      # the BPF-stats holder, only around the connect4 cost run
CG=""
PIN_DIR=""
CG_BARE=""   # path r: its own cgroup and its one pinned program
BARE_PIN=""

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  set +e
  [[ -n $STATS_PID ]] && kill -TERM "$STATS_PID" 2>/dev/null
  if [[ -n $DAEMON_PID ]]; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
  fi
  if [[ -n $PIN_DIR ]]; then
    node "$DAEMON_JS" --cleanup --pin-dir "$PIN_DIR" --config "$WORK/kmesh.toml" >>"$WORK/daemon-cleanup.log" 2>&1 ||
      log "warning: daemon --cleanup failed, see $WORK/daemon-cleanup.log"
    [[ -d $PIN_DIR ]] && rmdir "$PIN_DIR" 2>/dev/null
    [[ -e $PIN_DIR ]] && log "warning: $PIN_DIR still exists"
  fi
  if [[ -n $BARE_PIN ]]; then
    bpftool cgroup detach "$CG_BARE" connect4 pinned "$BARE_PIN" 2>/dev/null
    rm -f "$BARE_PIN"
  fi
  for cg in "$CG_BARE" "$CG"; do
    [[ -n $cg && -d $cg ]] || continue
    # only processes this script put there (wrk, curl) can be in it; stop them by pid so the cgroup can go
    for pid in $(cat "$cg/cgroup.procs"); do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 50); do [[ -n $(cat "$cg/cgroup.procs") ]] || break; sleep 0.1; done
    rmdir "$cg" 2>/dev/null || log "warning: could not remove cgroup $cg (processes left: $(tr '\n' ' ' <"$cg/cgroup.procs"))"
  done
  for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${BG_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if ((rc == 0)); then rm -rf "$WORK"; else log "exit $rc; logs kept in $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
wait_http() { # url [seconds] — until it answers 200; fails early when a server we started has exited
  local i pid
  for ((i = 0; i < ${2:-10} * 10; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    for pid in "${BG_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
    sleep 0.1
  done
  return 1
}
start_bg() { # name cpu cmd... — runs pinned, output to $WORK/name.log
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  BG_PIDS+=("$!")
}
in_cgroup() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@"; }
in_bare_cgroup() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG_BARE" "$@"; }

for port in "$P_BACKEND" "$P_HA_A" "$P_HA_B" "$P_NGX_STATUS" "$P_HA_STATS" "$P_METRICS"; do
  port_free "$port" || die "127.0.0.1:$port is in use (set BENCH_PORT_BASE)"
done

# --- backend: nginx, one worker, small static body ---------------------------------------------------------------
mkdir -p "$WORK/www" "$WORK/nginx-tmp"
printf 'kmesh l4 bench: a small static body served by nginx for all three paths.........................\n' >"$WORK/www/hello"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-tmp/body;
  proxy_temp_path $WORK/nginx-tmp/proxy;
  fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
  scgi_temp_path $WORK/nginx-tmp/scgi;
  default_type text/plain;
  sendfile on;
  tcp_nodelay on;
  open_file_cache max=16;
  open_file_cache_valid 60s;
  keepalive_requests 100000000;   # keep-alive means one connection per wrk connection for the whole run
  keepalive_timeout 60s;
  server { listen 127.0.0.1:$P_BACKEND backlog=4096; root $WORK/www; }
  server { listen 127.0.0.1:$P_NGX_STATUS; location / { stub_status; } }
}
EOF
start_bg nginx "$CPU_SERVER" nginx -e "$WORK/nginx-error.log" -p "$WORK/" -c "$WORK/nginx.conf"
NGINX_PID=$!

# --- sidecar path: haproxy A (client side) → haproxy B (server side) → nginx ------------------------------------
haproxy_cfg() { # name listen-port upstream-port [extra frontend]
  cat <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe_$1
  bind 127.0.0.1:$2
  default_backend be_$1
backend be_$1
  server upstream 127.0.0.1:$3
${4:-}
EOF
}
if want c; then
  haproxy_cfg client "$P_HA_A" "$P_HA_B" "frontend stats
  bind 127.0.0.1:$P_HA_STATS
  stats enable
  stats uri /stats" >"$WORK/haproxy-a.cfg"
  haproxy_cfg server "$P_HA_B" "$P_BACKEND" >"$WORK/haproxy-b.cfg"
  start_bg haproxy-a "$CPU_CLIENT" haproxy -db -f "$WORK/haproxy-a.cfg"
  HAPROXY_A_PID=$!
  start_bg haproxy-b "$CPU_SERVER" haproxy -db -f "$WORK/haproxy-b.cfg"
  HAPROXY_B_PID=$!
fi

wait_http "http://127.0.0.1:$P_BACKEND/hello" || die "nginx did not come up; $(cat "$WORK/nginx-error.log" "$WORK/nginx.log")"
if want c; then
  wait_http "http://127.0.0.1:$P_HA_A/hello" || die "haproxy path did not come up; $(cat "$WORK"/haproxy-*.log)"
fi

CG_ROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
if want b || want r; then
  [[ -n $CG_ROOT ]] || die "no cgroup2 mount found in /proc/self/mounts"
  # An unregistered process must not reach anything at the VIP (else paths r and b would not measure a redirect).
  if curl -s -o /dev/null --max-time 2 "http://$VIP:$VIP_PORT/hello"; then
    die "something answers at $VIP:$VIP_PORT without a redirect; pick another VIP (BENCH_VIP)"
  fi
fi

# --- bare redirect path: own cgroup, one-rule connect4 program, VIP → nginx --------------------------------------
if want r; then
  command -v bpftool >/dev/null || die "bpftool not found (path r loads its program with it)"
  ip_hex=$(printf '0x%02x%02x%02x%02x' ${VIP//./ })
  clang -O2 -g -Wall -Werror -target bpf -mcpu=v2 -I"/usr/include/$(uname -m)-linux-gnu" \
    -DVIP="$ip_hex" -DVIP_PORT="$VIP_PORT" -DBACKEND_PORT="$P_BACKEND" \
    -c "$BENCH_DIR/bare-redirect.bpf.c" -o "$WORK/bare-redirect.bpf.o" || die "cannot build bare-redirect.bpf.c"
  mkdir "$CG_ROOT/kmesh-bench-l4-bare-$$" || die "cannot create cgroup $CG_ROOT/kmesh-bench-l4-bare-$$"
  CG_BARE="$CG_ROOT/kmesh-bench-l4-bare-$$"
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  [[ ! -e /sys/fs/bpf/kmesh-bench-l4-bare-$$ ]] || die "/sys/fs/bpf/kmesh-bench-l4-bare-$$ exists already (not ours)"
  bpftool prog load "$WORK/bare-redirect.bpf.o" "/sys/fs/bpf/kmesh-bench-l4-bare-$$" ||
    die "cannot load bare-redirect.bpf.o"
  BARE_PIN="/sys/fs/bpf/kmesh-bench-l4-bare-$$"
  bpftool cgroup attach "$CG_BARE" connect4 pinned "$BARE_PIN" || die "cannot attach the bare redirect to $CG_BARE"
  in_bare_cgroup curl -fsS -o /dev/null --max-time 2 "http://$VIP:$VIP_PORT/hello" ||
    die "the bare redirect does not reach nginx"
fi

# --- kmesh path: own cgroup, daemon registering it, VIP → nginx --------------------------------------------------
if want b; then
  # CG and PIN_DIR are set only once they are known to be ours: cleanup removes exactly those.
  mkdir "$CG_ROOT/kmesh-bench-l4-$$" || die "cannot create cgroup $CG_ROOT/kmesh-bench-l4-$$"
  CG="$CG_ROOT/kmesh-bench-l4-$$"
  [[ ! -e /sys/fs/bpf/kmesh-bench-l4-$$ ]] || die "/sys/fs/bpf/kmesh-bench-l4-$$ exists already (not ours)"
  PIN_DIR="/sys/fs/bpf/kmesh-bench-l4-$$"
  cat >"$WORK/kmesh.toml" <<EOF
[daemon]
log_level = "info"
pin_dir = "$PIN_DIR"

[metrics]
listen = "127.0.0.1:$P_METRICS"

[[services]]
cgroup = "$CG"

[[clusters]]
name = "bench-backend"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = $P_BACKEND, weight = 1 } ]

[[listeners]]
name = "bench"
address = "$VIP"
port = $VIP_PORT
protocol = "tcp"
cluster = "bench-backend"
EOF
  # Only with path o: a cluster with a policy makes the daemon attach the L4 sockops program to the cgroup, which
  # path b then pays too (src/controller/l4-sockops.ts); without o, b measures a plain config.
  if want o; then
    cat >>"$WORK/kmesh.toml" <<EOF

[[clusters]]
name = "bench-resilient"
lb_policy = "least_request"
outlier_detection = { consecutive_failures = 5, base_ejection_time_ms = 30000, max_ejection_percent = 10 }
endpoints = [ { address = "127.0.0.1", port = $P_BACKEND, weight = 1 } ]

[[listeners]]
name = "bench-resilient"
address = "$VIP_RESILIENT"
port = $VIP_PORT
protocol = "tcp"
cluster = "bench-resilient"
EOF
  fi
  node "$DAEMON_JS" --check --config "$WORK/kmesh.toml" >"$WORK/daemon-check.log" 2>&1 ||
    die "kmesh-daemon --check rejected the bench config: $(cat "$WORK/daemon-check.log")"
  log "starting kmesh-daemon (cgroup $CG, pins $PIN_DIR)"
  node "$DAEMON_JS" --config "$WORK/kmesh.toml" --pin-dir "$PIN_DIR" >"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  daemon_alive() { # false once the daemon has exited; dies if it exited with an error
    [[ -n $DAEMON_PID ]] || return 1
    kill -0 "$DAEMON_PID" 2>/dev/null && return 0
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=""
    ((rc == 0)) || die "kmesh-daemon exited with status $rc: $(tail -20 "$WORK/daemon.log")"
    return 1
  }
  ready=0
  for ((i = 0; i < 300; i++)); do # up to 30 s: ready = a request from the cgroup to the VIP lands on nginx
    if in_cgroup curl -fsS -o /dev/null --max-time 1 "http://$VIP:$VIP_PORT/hello" 2>/dev/null; then ready=1; break; fi
    daemon_alive || break
    sleep 0.1
  done
  ((ready)) || die "VIP not steered; daemon log: $(tail -20 "$WORK/daemon.log")"
  # The data path lives in the kernel: pinned programs keep steering after the daemon exits (SIGTERM keeps pins).
  # The bench measures that data path, so a daemon that has exited cleanly is reported, not fatal.
  daemon_alive || log "warning: kmesh-daemon exited (status 0) after attaching; the pinned programs keep steering"
  curl -s -o /dev/null --max-time 2 "http://$VIP:$VIP_PORT/hello" &&
    die "an unregistered process reached the VIP — the redirect is not scoped to the bench cgroup"
  if command -v bpftool >/dev/null; then
    log "programs on $CG: $(bpftool cgroup show "$CG" 2>/dev/null | awk 'NR > 1 { print $2 }' | sort -u | tr '\n' ' ')"
  fi
fi

# --- measurement -------------------------------------------------------------------------------------------------
nginx_accepts() { curl -fsS --max-time 2 "http://127.0.0.1:$P_NGX_STATUS/" | awk 'NR == 3 { print $1 }'; }
haproxy_a_sessions() { # total sessions (= accepted client connections) of haproxy A's frontend
  curl -fsS --max-time 2 "http://127.0.0.1:$P_HA_STATS/stats;csv" | awk -F, '$1 == "fe_client" && $2 == "FRONTEND" { print $8 }'
}
url_of() {
  case $1 in
    a) echo "http://127.0.0.1:$P_BACKEND/hello" ;;
    b | r) echo "http://$VIP:$VIP_PORT/hello" ;;
    o) echo "http://$VIP_RESILIENT:$VIP_PORT/hello" ;;
    c) echo "http://127.0.0.1:$P_HA_A/hello" ;;
  esac
}
run_wrk() { # path mode seconds → prints wrk's output (with the WRK_RESULT line)
  local path=$1 mode=$2 secs=$3 hdr=()
  [[ $mode == close ]] && hdr=(-H 'Connection: close')
  local cmd=(taskset -c "$CPU_CLIENT" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency
    -s "$BENCH_DIR/wrk-report.lua" "${hdr[@]}" "$(url_of "$path")")
  case $path in
    b | o) in_cgroup "${cmd[@]}" ;;
    r) in_bare_cgroup "${cmd[@]}" ;;
    *) "${cmd[@]}" ;;
  esac
}

# The machine may be shared. Other work on the 2 cores skews the comparison (a path with more processes, like c,
# gets a larger share of a contended CPU), so record how busy it was: CPU pressure (PSI "some") is the share of
# wall time in which some runnable task waited for a CPU. Per run, as a percentage (paths a and b have one
# process per CPU, so their pressure comes from outside the bench).
psi() { awk -v f="$1" '/^some/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' \
  /proc/pressure/cpu 2>/dev/null; }
now_us() { echo $(($(date +%s%N) / 1000)); }
if ((WAIT_QUIET > 0)) && [[ -r /proc/pressure/cpu ]]; then
  log "waiting up to ${WAIT_QUIET}s for a quiet machine (CPU pressure avg10 < 10%; now $(psi avg10)%)"
  for ((waited = 0; waited < WAIT_QUIET; waited += 5)); do
    awk -v p="$(psi avg10)" 'BEGIN { exit !(p < 10) }' && break
    sleep 5
  done
fi
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
PSI_BEFORE=$(psi avg60)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
daemon_ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON_PID/stat" 2>/dev/null || echo 0; } # user+system, 1/100 s
DAEMON_CPU_BEFORE=""
[[ -n $DAEMON_PID ]] && DAEMON_CPU_BEFORE=$(daemon_ticks)
total=$((${#MODE_LIST[@]} * ${#PATH_LIST[@]} * (WARMUP + REPS * DURATION)))
# CPU time of a process in µs (user + system, which includes softirq work done in its context: this kernel has no
# IRQ time accounting, and loopback receive mostly runs in the sender's context).
CLK_TCK=$(getconf CLK_TCK)
cpu_us() { awk -v hz="$CLK_TCK" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | sed -n 1p)
[[ -n $NGINX_WORKER ]] || die "no nginx worker process"

measure_run() { # path mode rep — one measured wrk run, appended to $RESULTS as one JSON line
  local path=$1 mode=$2 rep=$3
  local acc0 ses0=0 stall0 t0 srv0 ha0=0 out wrk_cpu pressure=null
  acc0=$(nginx_accepts)
  [[ $path == c ]] && ses0=$(haproxy_a_sessions) && ha0=$(cpu_us "$HAPROXY_A_PID")
  srv0=$(($(cpu_us "$NGINX_WORKER") + $([[ $path == c ]] && cpu_us "$HAPROXY_B_PID" || echo 0)))
  stall0=$(psi total)
  t0=$(now_us)
  # wrk's own CPU time from bash's `time` (rusage of the finished child); the result line is on stdout
  out=$( { TIMEFORMAT='WRK_CPU %3U %3S'; time run_wrk "$path" "$mode" "$DURATION"; } 2>&1)
  [[ -n $stall0 ]] && pressure=$(awk -v s="$(($(psi total) - stall0))" -v t="$(($(now_us) - t0))" \
    'BEGIN { printf "%.1f", 100 * s / t }')
  # client side (CPU 0): wrk, and haproxy A for path c; server side (CPU 1): nginx, and haproxy B for path c
  wrk_cpu=$(awk '/^WRK_CPU/ { printf "%d", ($2 + $3) * 1000000 }' <<<"$out")
  local client_cpu=$((wrk_cpu + ($([[ $path == c ]] && cpu_us "$HAPROXY_A_PID" || echo 0) - ha0)))
  local server_cpu=$(($(cpu_us "$NGINX_WORKER") + $([[ $path == c ]] && cpu_us "$HAPROXY_B_PID" || echo 0) - srv0))
  echo "$out" >>"$WORK/wrk-$mode-$path.log"
  local backend_conns=$(($(nginx_accepts) - acc0 - 1)) # minus the status request's own connection
  local client_conns=$backend_conns
  [[ $path == c ]] && client_conns=$(($(haproxy_a_sessions) - ses0))
  local res
  res=$(sed -n 's/^WRK_RESULT //p' <<<"$out")
  [[ -n $res ]] || die "no result from wrk: $out"
  printf '{"mode":"%s","path":"%s","rep":%d,"client_conns":%d,"backend_conns":%d,"cpu_pressure_pct":%s,' \
    "$mode" "$path" "$rep" "$client_conns" "$backend_conns" "$pressure" >>"$RESULTS"
  printf '"client_cpu_us":%d,"server_cpu_us":%d,"wrk":%s}\n' "$client_cpu" "$server_cpu" "$res" >>"$RESULTS"
  log "$(printf '%-9s %s rep %d: %9.0f req/s   cpu pressure %5s%%' "$mode" "$path" "$rep" \
    "$(node -e 'const r=JSON.parse(process.argv[1]);console.log(r.requests*1e6/r.duration_us)' "$res")" "$pressure")"
}

log "measuring: paths ${PATH_LIST[*]}, modes ${MODE_LIST[*]}, c=$CONNS, ${REPS}×${DURATION}s after ${WARMUP}s warm-up (~${total}s)"
for mode in "${MODE_LIST[@]}"; do
  for path in "${PATH_LIST[@]}"; do run_wrk "$path" "$mode" "$WARMUP" >/dev/null; done
  for ((rep = 1; rep <= REPS; rep++)); do
    # a b c, then c b a, …: the paths compared (a–b, b–c) always run back to back, so a ratio is taken between
    # runs that saw the same background load; no path is always first or last.
    order=("${PATH_LIST[@]}")
    if ((rep % 2 == 0)); then mapfile -t order < <(printf '%s\n' "${PATH_LIST[@]}" | tac); fi
    for path in "${order[@]}"; do measure_run "$path" "$mode" "$rep"; done
  done
done
# What the programs cost per connection: one extra new-connection run of path b (and of path r, the bare redirect,
# and path o, the resilient cluster)
# with BPF run-time statistics on (off during the measured runs: they add a few ns to every program run). Every
# program attached to the path's cgroup is counted (connect4, and e.g. the probe's sockops); "connects" is the
# connect4 run count.
prog_run() { # id → "run_time_ns run_cnt"
  bpftool prog show id "$1" | awk 'NR == 1 { t = 0; c = 0
    for (i = 1; i < NF; i++) { if ($i == "run_time_ns") t = $(i + 1); if ($i == "run_cnt") c = $(i + 1) }
    print t, c }'
}
bpf_cost() { # path cgroup → JSON (or null) on stdout
  local path=$1 cg=$2 p id attach name t c dt dc connects=0 total_ns=0 entries=() progs=()
  declare -A T0 C0
  mapfile -t progs < <(bpftool cgroup show "$cg" | awk 'NR > 1 { print $1, $2, $NF }') # id attach-type name
  for p in "${progs[@]}"; do read -r id _ _ <<<"$p"; read -r "T0[$id]" "C0[$id]" < <(prog_run "$id"); done
  run_wrk "$path" close "$DURATION" >/dev/null
  for p in "${progs[@]}"; do
    read -r id attach name <<<"$p"
    read -r t c < <(prog_run "$id")
    dt=$((t - T0[$id])) dc=$((c - C0[$id]))
    ((dc > 0)) || continue
    [[ $attach == cgroup_inet4_connect ]] && connects=$dc
    total_ns=$((total_ns + dt))
    entries+=("{\"name\":\"$name\",\"attach\":\"$attach\",\"runs\":$dc,\"ns_per_run\":$((dt / dc))}")
  done
  if ((connects > 0)); then
    echo "{ \"connects\": $connects, \"ns_per_connect\": $((total_ns / connects)), \"programs\": [$(IFS=,; echo "${entries[*]}")] }"
    log "path $path BPF programs: $((total_ns / connects)) ns per connection in total (over $connects connects, BPF stats on)"
  else
    echo null
  fi
}
BPF_COST='null'
BARE_COST='null'
RESIL_COST='null'
if (want b || want r) && ((PROG_STATS)) && command -v bpftool >/dev/null; then
  : >"$WORK/bpf-stats.log"
  node "$ROOT/dist/bench/l4/hold-bpf-stats.js" >"$WORK/bpf-stats.log" 2>&1 &
  STATS_PID=$!
  for ((i = 0; i < 50; i++)); do grep -q 'stats on' "$WORK/bpf-stats.log" && break; sleep 0.1; done
  if grep -q 'stats on' "$WORK/bpf-stats.log"; then
    if want b; then BPF_COST=$(bpf_cost b "$CG"); fi
    if want o; then RESIL_COST=$(bpf_cost o "$CG"); fi
    if want r; then BARE_COST=$(bpf_cost r "$CG_BARE"); fi
  else
    log "warning: could not enable BPF stats: $(cat "$WORK/bpf-stats.log")"
  fi
  kill -TERM "$STATS_PID" 2>/dev/null
  wait "$STATS_PID" 2>/dev/null || true
  STATS_PID=""
fi

DAEMON_CPU_TICKS=null
[[ -n $DAEMON_CPU_BEFORE && -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null &&
  DAEMON_CPU_TICKS=$(($(daemon_ticks) - DAEMON_CPU_BEFORE))

cat >"$WORK/meta.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "command": "bash bench/l4/run.sh --paths $PATHS --modes $MODES --connections $CONNS --duration $DURATION --reps $REPS --warmup $WARMUP",
  "host": { "kernel": "$(uname -r)", "loadavg_before": "$LOADAVG_BEFORE", "loadavg_after": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "cpu_pressure_avg60_before": ${PSI_BEFORE:-null}, "cpu_pressure_avg60_after": $(psi avg60 || echo null), "cpus": $(nproc), "cpu_model": "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" },
  "tools": { "wrk": "$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')", "nginx": "$(nginx -v 2>&1 | sed 's/.*nginx\///')", "haproxy": "$(haproxy -v | awk 'NR == 1 { print $3 }')", "node": "$(node -v)" },
  "setup": { "connections": $CONNS, "wrk_threads": 1, "duration_s": $DURATION, "reps": $REPS, "warmup_s": $WARMUP,
    "cpu_client": $CPU_CLIENT, "cpu_server": $CPU_SERVER, "vip": "$VIP:$VIP_PORT", "backend": "127.0.0.1:$P_BACKEND",
    "daemon_cpu_ticks_during_bench": $DAEMON_CPU_TICKS },
  "kmesh_bpf": $BPF_COST,
  "bare_bpf": $BARE_COST,
  "resilient_bpf": $RESIL_COST
}
EOF
report_args=(--results "$RESULTS" --meta "$WORK/meta.json")
[[ -n $JSON_OUT ]] && report_args+=(--json "$JSON_OUT")
((STRICT)) && report_args+=(--strict)
node "$REPORT_JS" "${report_args[@]}"
exit
}
