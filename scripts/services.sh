#!/usr/bin/env bash
# Checks each backing service the tests use and starts the ones that are
# down, with the commands the machine documents. Usage: scripts/services.sh [name...]
set -euo pipefail

up() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_up() { # name host port
  for _ in $(seq 1 60); do
    if up "$2" "$3"; then echo "$1 is up on $2:$3"; return 0; fi
    sleep 1
  done
  echo "$1 did not come up on $2:$3" >&2
  return 1
}

start_service() {
  case "$1" in
    postgres) up 127.0.0.1 5432 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start; wait_up postgres 127.0.0.1 5432 ;;
    redis) up 127.0.0.1 6379 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; wait_up redis 127.0.0.1 6379 ;;
    rabbitmq) up 127.0.0.1 5672 || rabbitmq-server -detached; wait_up rabbitmq 127.0.0.1 5672 ;;
    mosquitto) up 127.0.0.1 1883 || mosquitto -d -c /etc/mosquitto/mosquitto.conf; wait_up mosquitto 127.0.0.1 1883 ;;
    nats) up 127.0.0.1 4222 || start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log; wait_up nats 127.0.0.1 4222 ;;
    mariadb) up 127.0.0.1 3306 || start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; wait_up mariadb 127.0.0.1 3306 ;;
    *) echo "unknown service $1" >&2; return 1 ;;
  esac
}

# The services the current test suite uses: the state stores' conformance
# suites run against Redis, PostgreSQL and MariaDB, the brokers' against
# RabbitMQ, NATS (JetStream) and Mosquitto. Later building blocks add theirs.
services=("$@")
if [ ${#services[@]} -eq 0 ]; then
  services=(redis postgres mariadb rabbitmq nats mosquitto)
fi
for s in "${services[@]}"; do
  start_service "$s"
done
echo "services ready: ${services[*]:-none needed}"
