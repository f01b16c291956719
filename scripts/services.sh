#!/usr/bin/env bash
# Start the services the test suite talks to (Redis, a three-node Redis Cluster, PostgreSQL,
# MariaDB) on loopback, when they are not already answering, and wait until each one accepts connections; install
# Debian's Chromium for the dashboard's browser tests when it is missing.
# Exits non-zero naming the service or tool that could not be provided.
set -u

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    answers "$port" && return 0
    sleep 0.5
  done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

start_redis() {
  command -v redis-server >/dev/null || { echo "services: redis-server is not installed" >&2; return 1; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

CLUSTER_PORTS=(7001 7002 7003)

# A three-node Redis Cluster (no replicas, no persistence) on 127.0.0.1:7001-7003.
start_redis_cluster() {
  command -v redis-server >/dev/null || { echo "services: redis-server is not installed" >&2; return 1; }
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    answers "$port" && continue
    mkdir -p "/var/lib/redis-cluster/$port" /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file "/var/lib/redis-cluster/$port/nodes.conf" --save "" --appendonly no \
      --dir "/var/lib/redis-cluster/$port" --logfile "/var/log/redis/cluster-$port.log" || return 1
  done
  for port in "${CLUSTER_PORTS[@]}"; do wait_for "Redis Cluster node" "$port" || return 1; done
  # nodes restarted with their saved configuration rejoin on their own: give them time
  if [ "$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster info 2>/dev/null \
      | grep -o 'cluster_known_nodes:[0-9]*' | cut -d: -f2)" != "1" ]; then
    wait_for_cluster "did not recover"
    return
  fi
  redis-cli --cluster create "${CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >/dev/null || { echo "services: could not form the Redis Cluster" >&2; return 1; }
  wait_for_cluster "did not reach state ok"
}

# Wait up to 30 s for cluster_ok; else print "the Redis Cluster ... $1" and fail.
wait_for_cluster() {
  for _ in $(seq 1 60); do
    cluster_ok && return 0
    sleep 0.5
  done
  echo "services: the Redis Cluster on 127.0.0.1:7001-7003 $1" >&2
  return 1
}

cluster_ok() {  # every node sees the cluster in state ok
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok" || return 1
  done
}

cluster_up() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do answers "$port" || return 1; done
  cluster_ok
}

start_postgresql() {
  command -v pg_ctlcluster >/dev/null || { echo "services: PostgreSQL is not installed" >&2; return 1; }
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
}

start_mariadb() {
  [ -x /usr/sbin/mariadbd ] || { echo "services: MariaDB is not installed" >&2; return 1; }
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

install_chromium() {
  command -v apt-get >/dev/null || { echo "services: chromium is missing and apt-get is not available" >&2; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || { echo "services: could not install chromium" >&2; return 1; }
}

status=0
command -v chromium >/dev/null || install_chromium || status=1
answers 6379 || start_redis || status=1
cluster_up || start_redis_cluster || status=1
answers 5432 || start_postgresql || status=1
answers 3306 || start_mariadb || status=1
wait_for Redis 6379 || status=1
wait_for PostgreSQL 5432 || status=1
wait_for MariaDB 3306 || status=1
exit $status
