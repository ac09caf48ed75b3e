#!/usr/bin/env bash
# Starts the Redis topologies of SPEC §15 on loopback, for trying and
# testing Switchboard against them: no Docker, the machine's redis-server.
#
#   scripts/redis-topologies.sh up [cluster|sentinel]     start (both by default)
#   scripts/redis-topologies.sh status [cluster|sentinel] say what runs; exit 1 if something does not
#   scripts/redis-topologies.sh down [cluster|sentinel]   stop, and delete their files
#
# cluster:  a Redis Cluster of 3 primaries and 3 replicas on 127.0.0.1:7000-7005
# sentinel: a primary (6390), its replica (6391) and 3 Sentinels (26390-26392)
#           watching it under the master name "switchboard"
#
# `up` is safe to run when they are up already, and restarts what has
# stopped. Nothing is persisted (Redis holds nothing Switchboard cannot
# rebuild); files (configs, logs, pids) live in .switchboard/redis-topologies.
set -eu
cd -- "$(dirname "$0")/.."

dir="$PWD/.switchboard/redis-topologies"
cluster_ports="7000 7001 7002 7003 7004 7005"
primary_port=6390
replica_port=6391
sentinel_ports="26390 26391 26392"
master_name=switchboard
# Seconds to wait for a topology to settle.
timeout=${REDIS_TOPOLOGIES_TIMEOUT:-60}

die() { echo "redis-topologies: $*" >&2; exit 1; }

cli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

answers() { cli "$1" ping 2>/dev/null | grep -q '^PONG$'; }

# field PORT SECTION NAME: one field of INFO SECTION.
field() { cli "$1" info "$2" 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"; }

# ours PORT DIR: the server answering on PORT is the one whose pid file is
# in DIR, not something else that happens to use the port.
ours() {
  [ -f "$2/redis.pid" ] && [ "$(field "$1" server process_id)" = "$(cat "$2/redis.pid")" ]
}

# check_port PORT DIR: fail if PORT answers for a server that is not ours.
check_port() {
  if answers "$1" && ! ours "$1" "$2"; then
    die "127.0.0.1:$1 answers, but not for a server this script started (pid file $2/redis.pid); stop that server first"
  fi
}

# start PORT DIR ARGS...: start redis-server on PORT unless it runs.
start() {
  local port=$1 d=$2; shift 2
  check_port "$port" "$d"
  if answers "$port"; then return 0; fi
  mkdir -p "$d"
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
    --daemonize yes --dir "$d" --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --save "" --appendonly no "$@"
}

# start_sentinel PORT: start a Sentinel on PORT unless it runs. Its config
# is written once: Sentinel rewrites it as it learns (the other Sentinels,
# the replica, a failover), and a restart keeps what it learnt.
start_sentinel() {
  local port=$1 d="$dir/sentinel/$1"
  check_port "$port" "$d"
  if answers "$port"; then return 0; fi
  mkdir -p "$d"
  if [ ! -f "$d/sentinel.conf" ]; then
    cat >"$d/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
protected-mode yes
daemonize yes
dir $d
pidfile $d/redis.pid
logfile $d/redis.log
sentinel monitor $master_name 127.0.0.1 $primary_port 2
sentinel down-after-milliseconds $master_name 5000
sentinel failover-timeout $master_name 30000
sentinel parallel-syncs $master_name 1
EOF
  fi
  redis-server "$d/sentinel.conf" --sentinel
}

# wait_for WHAT COMMAND...: run COMMAND until it succeeds or time runs out.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 "$timeout"); do
    if "$@"; then return 0; fi
    sleep 1
  done
  die "$what: not ready after ${timeout}s (logs in $dir)"
}

cluster_ok() {
  local p
  for p in $cluster_ports; do
    [ "$(field "$p" cluster cluster_enabled)" = 1 ] || return 1
    cli "$p" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok$' || return 1
  done
  # 3 primaries with slots, 3 replicas, none failing. A line of CLUSTER
  # NODES: id addr flags master-id ping pong epoch link-state slots...
  cli 7000 cluster nodes 2>/dev/null | awk '
    $3 ~ /fail/ { bad++ }
    $3 ~ /master/ && $9 != "" { primaries++ }
    $3 ~ /slave/ { replicas++ }
    END { exit !(bad == 0 && primaries == 3 && replicas == 3) }'
}

cluster_up() {
  local p addrs=""
  for p in $cluster_ports; do
    start "$p" "$dir/cluster/$p" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 5000
    addrs="$addrs 127.0.0.1:$p"
  done
  for p in $cluster_ports; do wait_for "redis on $p" answers "$p"; done
  # A fresh set of nodes knows only itself; nodes restarted from their
  # nodes.conf rejoin the cluster they were in.
  if [ "$(cli 7000 cluster info | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p')" = 0 ]; then
    # shellcheck disable=SC2086 # one argument per address
    redis-cli --cluster create $addrs --cluster-replicas 1 --cluster-yes >"$dir/cluster/create.log" ||
      die "redis-cli --cluster create failed: see $dir/cluster/create.log"
  fi
  wait_for "Redis Cluster" cluster_ok
  echo "Redis Cluster up: 3 primaries and 3 replicas on 127.0.0.1:7000-7005"
}

# sentinel_field PORT NAME: a field of SENTINEL MASTER switchboard.
sentinel_field() {
  cli "$1" sentinel master "$master_name" 2>/dev/null | tr -d '\r' | sed -n "/^$2\$/{n;p;}"
}

sentinels_ok() {
  local p
  for p in $sentinel_ports; do
    [ -n "$(cli "$p" sentinel get-master-addr-by-name "$master_name" 2>/dev/null)" ] || return 1
    [ "$(sentinel_field "$p" flags)" = master ] || return 1
    [ "$(sentinel_field "$p" num-other-sentinels)" = 2 ] || return 1
    [ "$(sentinel_field "$p" num-slaves)" -ge 1 ] || return 1
  done
}

sentinel_up() {
  local p
  start "$primary_port" "$dir/sentinel/$primary_port"
  start "$replica_port" "$dir/sentinel/$replica_port" --replicaof 127.0.0.1 "$primary_port"
  wait_for "redis on $primary_port" answers "$primary_port"
  for p in $sentinel_ports; do start_sentinel "$p"; done
  wait_for "Sentinels" sentinels_ok
  local addr
  addr=$(cli 26390 sentinel get-master-addr-by-name "$master_name" | tr -d '\r' | paste -sd: -)
  echo "Redis Sentinel up: master \"$master_name\" at $addr, Sentinels on 127.0.0.1:${sentinel_ports// /,}"
}

# stop PORT DIR: shut down our server on PORT, by its pid file.
stop() {
  local port=$1 d=$2 pid
  [ -f "$d/redis.pid" ] || return 0
  pid=$(cat "$d/redis.pid")
  if kill -0 "$pid" 2>/dev/null && grep -q redis "/proc/$pid/comm" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "redis $pid on $port did not stop"
  fi
  rm -f "$d/redis.pid"
}

cluster_down() {
  local p
  for p in $cluster_ports; do stop "$p" "$dir/cluster/$p"; done
  rm -rf "$dir/cluster"
  echo "Redis Cluster down"
}

sentinel_down() {
  local p
  for p in $sentinel_ports; do stop "$p" "$dir/sentinel/$p"; done
  stop "$replica_port" "$dir/sentinel/$replica_port"
  stop "$primary_port" "$dir/sentinel/$primary_port"
  rm -rf "$dir/sentinel"
  echo "Redis Sentinel down"
}

# state PORT DIR: "up", "down" or "foreign" (answers, not ours).
state() {
  if ! answers "$1"; then echo down; elif ours "$1" "$2"; then echo up; else echo foreign; fi
}

cluster_status() {
  local p ok=0 s
  for p in $cluster_ports; do
    s=$(state "$p" "$dir/cluster/$p")
    [ "$s" = up ] || ok=1
    printf 'cluster   %-16s %-7s %s\n' "127.0.0.1:$p" "$s" "$([ "$s" = up ] && field "$p" replication role)"
  done
  if [ "$ok" = 0 ]; then
    echo "cluster   $(cli 7000 cluster info | tr -d '\r' | grep -E '^cluster_(state|slots_ok|known_nodes|size):' | paste -sd' ' -)"
  fi
  return "$ok"
}

sentinel_status() {
  local p ok=0 s
  for p in "$primary_port" "$replica_port"; do
    s=$(state "$p" "$dir/sentinel/$p")
    [ "$s" = up ] || ok=1
    printf 'sentinel  %-16s %-7s %s\n' "127.0.0.1:$p" "$s" "$([ "$s" = up ] && field "$p" replication role)"
  done
  for p in $sentinel_ports; do
    s=$(state "$p" "$dir/sentinel/$p")
    [ "$s" = up ] || ok=1
    if [ "$s" = up ]; then
      printf 'sentinel  %-16s up      sentinel: master %s at %s, %s other sentinels, %s replicas\n' "127.0.0.1:$p" "$master_name" \
        "$(cli "$p" sentinel get-master-addr-by-name "$master_name" | tr -d '\r' | paste -sd: -)" \
        "$(sentinel_field "$p" num-other-sentinels)" "$(sentinel_field "$p" num-slaves)"
    else
      printf 'sentinel  %-16s %-7s\n' "127.0.0.1:$p" "$s"
    fi
  done
  return "$ok"
}

print_env() {
  cat <<EOF

Point Switchboard at one of them (not both: that is an error at start):
  REDIS_CLUSTER_ADDRS=127.0.0.1:${cluster_ports// /,127.0.0.1:}
  REDIS_SENTINEL_ADDRS=127.0.0.1:${sentinel_ports// /,127.0.0.1:} REDIS_SENTINEL_MASTER=$master_name
EOF
}

need() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

cmd=${1:-}
what=${2:-all}
case "$what" in all | cluster | sentinel) ;; *) die "unknown topology \"$what\" (cluster or sentinel)" ;; esac
has() { [ "$what" = all ] || [ "$what" = "$1" ]; }

case "$cmd" in
up)
  need
  mkdir -p "$dir"
  if has cluster; then cluster_up; fi
  if has sentinel; then sentinel_up; fi
  print_env
  ;;
down)
  if has cluster; then cluster_down; fi
  if has sentinel; then sentinel_down; fi
  ;;
status)
  rc=0
  if has cluster; then cluster_status || rc=1; fi
  if has sentinel; then sentinel_status || rc=1; fi
  exit "$rc"
  ;;
*)
  sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac
