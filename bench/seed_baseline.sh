#!/usr/bin/env bash
# The seed's steps by hand, for N hosts: the baseline the benchmark measures the program against.
# None of the project's code: ip, etcd, dockerd, the docker CLI, as a person would script them.
#
#   bench/seed_baseline.sh up N     # bridge, N namespaces, etcd and dockerd in each, one overlay
#                                   # network, one container per host, then one ping 1 -> 2
#   bench/seed_baseline.sh down N   # everything removed (also what a failed `up` left)
#
# Its own names, so it never meets the project's labs: namespaces bl-nI, bridge ovbr-bl,
# segment 192.168.217.0/24, state in /var/lib/overlaylab-baseline. Root only.
set -euo pipefail

ID=bl
ROOT=/var/lib/overlaylab-baseline
BR=ovbr-bl
SEG=192.168.217
action=${1:?usage: $0 up|down N}
n=${2:-2}

addr() { echo "$SEG.$((9 + $1))"; }
sock() { echo "unix://$ROOT/n$1/docker.sock"; }
die() { echo "seed_baseline: $*" >&2; exit 1; }
wait_until() { # seconds, what, command...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not happen in ${t}s"
}

up() {
  mkdir -p "$ROOT"
  ip link add "$BR" type bridge
  ip addr add "$SEG.1/24" dev "$BR"
  ip link set "$BR" up
  # The network rule: lab traffic only through the lab's own bridge.
  ip route get "$(addr 1)" | grep -q "dev $BR" || die "route to $(addr 1) is not via $BR"
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
  for i in $(seq "$n"); do
    mkdir -p "$ROOT/n$i"
    nsenter --net="/run/netns/$ID-n$i" etcd --name "n$i" --data-dir "$ROOT/n$i/etcd" \
      --listen-peer-urls "http://$(addr "$i"):2380" --initial-advertise-peer-urls "http://$(addr "$i"):2380" \
      --listen-client-urls "http://$(addr "$i"):2379" --advertise-client-urls "http://$(addr "$i"):2379" \
      --initial-cluster-token "etcd-$ID" --initial-cluster "$cluster" --initial-cluster-state new \
      --enable-v2=true >"$ROOT/n$i/etcd.log" 2>&1 &
    echo $! >"$ROOT/n$i/etcd.pid"
  done
  for i in $(seq "$n"); do
    wait_until 60 "etcd n$i healthy" etcdctl --endpoints "http://$(addr "$i"):2379" endpoint health
  done
  for i in $(seq "$n"); do
    mkdir -p "$ROOT/n$i/tmp"
    TMPDIR="$ROOT/n$i/tmp" nsenter --net="/run/netns/$ID-n$i" unshare --uts -- \
      sh -c 'hostname "$0" && exec "$@"' "n$i" dockerd \
      --data-root "$ROOT/n$i/docker" --exec-root "$ROOT/n$i/x" --pidfile "$ROOT/n$i/docker.pid" \
      -H "$(sock "$i")" --cgroup-parent "$ID-n$i" \
      --cluster-store "etcd://$(addr "$i"):2379" --cluster-advertise "$(addr "$i"):2375" \
      >"$ROOT/n$i/docker.log" 2>&1 &
  done
  local rootfs="$ROOT/rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
  tar -C "$rootfs" -cf "$ROOT/busybox.tar" .
  for i in $(seq "$n"); do
    wait_until 60 "dockerd n$i" docker -H "$(sock "$i")" info
    docker -H "$(sock "$i")" import "$ROOT/busybox.tar" busybox:latest >/dev/null
  done
  # As the seed: the network made once, on host 1; the others learn it through etcd.
  wait_until 60 "the overlay network" docker -H "$(sock 1)" network create -d overlay \
    --subnet 10.0.0.0/24 demo
  for i in $(seq "$n"); do
    wait_until 60 "container t$i" docker -H "$(sock "$i")" run -d --name "t$i" --net demo \
      busybox:latest sh -c 'while true; do sleep 3600; done'
  done
  wait_until 60 "t1 pinging t2" docker -H "$(sock 1)" exec t1 ping -c 1 -W 1 t2
}

down() {
  for i in $(seq "$n"); do
    if [ -S "$ROOT/n$i/docker.sock" ]; then
      ids=$(docker -H "$(sock "$i")" ps -aq 2>/dev/null || true)
      [ -z "$ids" ] || docker -H "$(sock "$i")" rm -f $ids >/dev/null 2>&1 || true
    fi
  done
  [ -S "$ROOT/n1/docker.sock" ] && docker -H "$(sock 1)" network rm demo >/dev/null 2>&1 || true
  for i in $(seq "$n"); do
    for f in docker etcd; do
      pid=$(cat "$ROOT/n$i/$f.pid" 2>/dev/null || true)
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
  done
  for i in $(seq "$n"); do
    for f in docker etcd; do
      pid=$(cat "$ROOT/n$i/$f.pid" 2>/dev/null || true)
      for _ in $(seq 50); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
  done
  grep -o " $ROOT/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  for i in $(seq "$n"); do
    ip netns pids "$ID-n$i" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ID-n$i" 2>/dev/null || true
    ip link del "$ID-v$i" 2>/dev/null || true
    for d in /sys/fs/cgroup/*/"$ID-n$i"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$ROOT"
}

case "$action" in
  up) trap 'rc=$?; if [ $rc -ne 0 ]; then down; fi; exit $rc' EXIT; up ;;
  down) down ;;
  *) die "usage: $0 up|down N" ;;
esac
