#!/usr/bin/env bash
# The seed's steps by hand, for N hosts: the baseline the benchmark measures the program against.
# None of the project's code: ip, etcd, dockerd, the docker CLI, as a person would script them.
#
#   bench/seed_baseline.sh up N     # bridge, N namespaces, etcd and dockerd in each, one overlay
#                                   # network, one container per host, then one ping 1 -> 2
#   bench/seed_baseline.sh down N   # everything removed (also what a failed `up` left)
#   bench/seed_baseline.sh check N  # fails naming whatever of it is still on the machine
#
# Its own names, so it never meets the project's labs: namespaces bl-nI, veths bl-vI, bridge
# ovbr-bl, segment 192.168.224.0/24, cgroups bl-nI, state in /var/lib/overlaylab-baseline.
# Root only. A failed or interrupted `up` runs `down` before it exits.
set -euo pipefail

ID=bl
ROOT=/var/lib/overlaylab-baseline
BR=ovbr-bl
SEG=192.168.224
action=${1:?usage: $0 up|down|check N}
n=${2:-2}
[ "$n" -ge 2 ] 2>/dev/null || { echo "seed_baseline: N must be 2 or more, got $n" >&2; exit 2; }

addr() { echo "$SEG.$((9 + $1))"; }
sock() { echo "unix://$ROOT/n$1/docker.sock"; }
die() { echo "seed_baseline: $*" >&2; exit 1; }
wait_until() { # seconds, what, command...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not happen in ${t}s"
}
# How long the up took to reach each phase, on stderr for the benchmark (bench_lab.py reads
# "seed_baseline phase: <what> <seconds>"): its etcd start is bimodal (below).
T0=${EPOCHREALTIME/./}
phase() { local us=${EPOCHREALTIME/./}; printf 'seed_baseline phase: %s %d.%03d\n' "$1" \
  $(((us - T0) / 1000000)) $(((us - T0) / 1000 % 1000)) >&2; }
# A process that exited but was not yet reaped (a zombie) counts as gone.
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

up() {
  [ ! -e "$ROOT" ] || die "$ROOT exists: run '$0 down $n' first"
  mkdir -p "$ROOT"
  ip link add "$BR" type bridge
  ip addr add "$SEG.1/24" dev "$BR"
  ip link set "$BR" up
  local cluster=""
  for i in $(seq "$n"); do
    ip netns add "$ID-n$i"
    ip link add "$ID-v$i" type veth peer name eth0 netns "$ID-n$i"
    ip link set "$ID-v$i" master "$BR" up
    ip -n "$ID-n$i" addr add "$(addr "$i")/24" dev eth0
    ip -n "$ID-n$i" link set eth0 up
    ip -n "$ID-n$i" link set lo up
    cluster+="${cluster:+,}n$i=http://$(addr "$i"):2380"
  done
  # The network rule: lab traffic only through the lab's own bridge, checked before the first
  # contact (etcdctl below is the first packet from this namespace to a lab address).
  for i in $(seq "$n"); do
    ip route get "$(addr "$i")" | grep -q "^$(addr "$i") dev $BR " ||
      die "route to $(addr "$i") is not via $BR: $(ip route get "$(addr "$i")" | head -1)"
  done
  for i in $(seq "$n"); do
    mkdir -p "$ROOT/n$i"
    nsenter --net="/run/netns/$ID-n$i" etcd --name "n$i" --data-dir "$ROOT/n$i/etcd" \
      --listen-peer-urls "http://$(addr "$i"):2380" --initial-advertise-peer-urls "http://$(addr "$i"):2380" \
      --listen-client-urls "http://$(addr "$i"):2379" --advertise-client-urls "http://$(addr "$i"):2379" \
      --initial-cluster-token "etcd-$ID" --initial-cluster "$cluster" --initial-cluster-state new \
      --enable-v2=true </dev/null >"$ROOT/n$i/etcd.log" 2>&1 &
    echo $! >"$ROOT/n$i/etcd.pid"
  done
  for i in $(seq "$n"); do
    wait_until 60 "etcd n$i healthy" etcdctl --endpoints "http://$(addr "$i"):2379" endpoint health
  done
  # Members started one after another each ask every peer, 1 s timeout each, whether the
  # cluster was bootstrapped before they serve their peer port: a member that asks peers
  # listening but still asking themselves waits a second per peer (etcd v3.4.23
  # etcdserver/cluster_util.go isMemberBootstrapped). By the luck of the starts, this phase
  # takes under a second or several (7 s at 8 hosts).
  phase "members healthy"
  for i in $(seq "$n"); do
    # Its own hostname (serf needs distinct names), data-root, exec-root, pidfile and socket;
    # TMPDIR so containerd's stack dumps land in this host's dir, not in /tmp.
    mkdir -p "$ROOT/n$i/tmp"
    # shellcheck disable=SC2016 # $0 and $@ are the inner sh's
    TMPDIR="$ROOT/n$i/tmp" nsenter --net="/run/netns/$ID-n$i" unshare --uts -- \
      sh -c 'hostname "$0" && exec "$@"' "n$i" dockerd \
      --data-root "$ROOT/n$i/docker" --exec-root "$ROOT/n$i/x" --pidfile "$ROOT/n$i/docker.pid" \
      -H "$(sock "$i")" --cgroup-parent "$ID-n$i" \
      --cluster-store "etcd://$(addr "$i"):2379" --cluster-advertise "$(addr "$i"):2375" \
      </dev/null >"$ROOT/n$i/docker.log" 2>&1 &
    echo $! >"$ROOT/n$i/dockerd.pid"
  done
  # The seed pulls busybox; with no registry here it is imported, as a person would: a tar of
  # busybox-static's binary and its applets as symlinks.
  local rootfs="$ROOT/rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  tar -C "$rootfs" -cf "$ROOT/busybox.tar" .
  for i in $(seq "$n"); do
    wait_until 60 "dockerd n$i" docker -H "$(sock "$i")" info
    docker -H "$(sock "$i")" import "$ROOT/busybox.tar" busybox:latest >/dev/null
  done
  phase "daemons up"
  # As the seed: the network made once, on host 1; the others learn it through etcd.
  wait_until 60 "the overlay network" docker -H "$(sock 1)" network create -d overlay \
    --subnet 10.0.0.0/24 demo
  phase "network made"
  for i in $(seq "$n"); do
    wait_until 60 "container t$i" docker -H "$(sock "$i")" run -d --name "t$i" --net demo \
      busybox:latest sh -c 'while true; do sleep 3600; done'
  done
  phase "containers running"
  wait_until 60 "t1 pinging t2" docker -H "$(sock 1)" exec t1 ping -c 1 -W 1 t2
  phase "first ping"
}

term() { # pidfile...: SIGTERM to each live one
  local f pid
  for f in "$@"; do pid=$(cat "$f" 2>/dev/null || true); alive "$pid" && kill "$pid" 2>/dev/null; done
  return 0
}
reap() { # tenths of a second to wait, pidfile...: wait for each, then SIGKILL
  local t=$1 f pid; shift
  for f in "$@"; do
    pid=$(cat "$f" 2>/dev/null || true)
    for _ in $(seq "$t"); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null
  done
  return 0
}

down() {
  set +e
  local i pid m d
  # dockerd waits for its containers on SIGTERM: remove them first, then the network.
  for i in $(seq "$n"); do
    [ -S "$ROOT/n$i/docker.sock" ] || continue
    ids=$(docker -H "$(sock "$i")" ps -aq 2>/dev/null)
    # shellcheck disable=SC2086 # one id per word
    [ -z "$ids" ] || docker -H "$(sock "$i")" rm -f $ids >/dev/null 2>&1
  done
  [ -S "$ROOT/n1/docker.sock" ] && docker -H "$(sock 1)" network rm demo >/dev/null 2>&1
  # Every daemon told at once, then waited for: dockerd first (it leaves the store), then etcd,
  # which may ignore SIGTERM once its peers are gone (a short grace, then SIGKILL).
  term "$ROOT"/n*/dockerd.pid
  reap 150 "$ROOT"/n*/dockerd.pid
  term "$ROOT"/n*/etcd.pid
  reap 10 "$ROOT"/n*/etcd.pid
  # Whatever is left: containers in our cgroups, containerd and shims naming our dirs, any
  # process still in one of our namespaces.
  for i in $(seq "$n"); do
    cat /sys/fs/cgroup/*/"$ID-n$i"/cgroup.procs /sys/fs/cgroup/*/"$ID-n$i"/*/cgroup.procs \
      2>/dev/null | sort -u | xargs -r kill -9 2>/dev/null
    ip netns pids "$ID-n$i" 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  for pid in $(pgrep -f "$ROOT/"); do kill -9 "$pid" 2>/dev/null; done
  for _ in $(seq 50); do
    [ -z "$(pgrep -f "$ROOT/" | while read -r p; do alive "$p" && echo "$p"; done)" ] && break
    sleep 0.1
  done
  awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  for i in $(seq "$n"); do
    ip netns del "$ID-n$i" 2>/dev/null
    ip link del "$ID-v$i" 2>/dev/null # the kernel frees a dead namespace's veth only later
    for d in /sys/fs/cgroup/*/"$ID-n$i"; do
      [ -d "$d" ] || continue
      for _ in $(seq 50); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$d" ] || break
        sleep 0.1
      done
    done
  done
  ip link del "$BR" 2>/dev/null
  # `ip netns add` bind-mounts /run/netns on itself; once no namespace is left, undo it.
  if mountpoint -q /run/netns && [ -z "$(ls -A /run/netns)" ]; then umount /run/netns; fi
  rm -rf "$ROOT"
  left=$(leftovers)
  [ -z "$left" ] || { echo "seed_baseline: down left: $left" >&2; return 1; }
  return 0
}

leftovers() {
  local i
  for i in $(seq "$n"); do
    [ ! -e "/run/netns/$ID-n$i" ] || echo -n "netns $ID-n$i; "
    ! ip link show "$ID-v$i" >/dev/null 2>&1 || echo -n "link $ID-v$i; "
    ! ls -d /sys/fs/cgroup/*/"$ID-n$i" >/dev/null 2>&1 || echo -n "cgroup $ID-n$i; "
  done
  ! ip link show "$BR" >/dev/null 2>&1 || echo -n "link $BR; "
  [ ! -e "$ROOT" ] || echo -n "dir $ROOT; "
  for pid in $(pgrep -f "$ROOT/"); do alive "$pid" && echo -n "process $pid; "; done
  ! grep -q " $ROOT/" /proc/self/mounts || echo -n "mounts under $ROOT; "
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  [ "$rc" -eq 0 ] || down >&2
  exit "$rc"
}

case "$action" in
  up)
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    up
    ;;
  down) down ;;
  check) left=$(leftovers); [ -z "$left" ] || die "left: $left" ;;
  *) die "usage: $0 up|down|check N" ;;
esac
