#!/usr/bin/env bash
# Runs a hub (embedded broker and store, data in .run/hub) and one local
# agent that enrols with it (state in .run/agent), prints the REST URL and a
# ready-to-paste curl, and stops both on Ctrl-C. Used by `make run`.
#
# Environment: ALICIA_RUN_HTTP_PORT (default 8470), ALICIA_RUN_MQTT_PORT (default 1883),
# ALICIA_RUN_MQTTS_PORT (default 8883), ALICIA_RUN_DIR (default .run).
set -euo pipefail
cd "$(dirname "$0")/.."

http_port="${ALICIA_RUN_HTTP_PORT:-8470}"
mqtt_port="${ALICIA_RUN_MQTT_PORT:-1883}"
mqtts_port="${ALICIA_RUN_MQTTS_PORT:-8883}"
api="http://127.0.0.1:${http_port}"
data="${ALICIA_RUN_DIR:-.run}"
mkdir -p "$data"

for tool in curl; do
  command -v "$tool" >/dev/null || { echo "make run needs $tool (apt-get install -y $tool)" >&2; exit 1; }
done

# Refuse to start next to another server on our ports: the script would
# otherwise talk to that server instead of the hub it started.
for port in "$http_port" "$mqtt_port" "$mqtts_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is already in use (another hub or broker?); stop it or set ALICIA_RUN_HTTP_PORT / ALICIA_RUN_MQTT_PORT / ALICIA_RUN_MQTTS_PORT" >&2
    exit 1
  fi
done

hub_pid= agent_pid=
stop() {
  trap - INT TERM EXIT
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  [ -n "$hub_pid" ] && kill -TERM "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

# Everything binds to loopback and the local agent is given --hub, so the
# hub does not announce itself on the LAN (--no-mdns).
# setsid keeps Ctrl-C away from the binaries: the trap stops the agent
# first (so the hub records it offline), then the hub. The log prefixers
# ignore Ctrl-C too (an ignored signal stays ignored across exec): if they
# died with it, the binaries' next log line would kill them with SIGPIPE
# before they could stop cleanly. They end when the binaries close stderr.
prefix() { trap '' INT; exec sed -u "s/^/$1/" >&2; }
setsid bin/alicia-hub --data-dir "$data/hub" --http-addr "127.0.0.1:${http_port}" --mqtt-addr "127.0.0.1:${mqtt_port}" \
  --mqtts-addr "127.0.0.1:${mqtts_port}" --no-mdns \
  2> >(prefix '[hub]   ') &
hub_pid=$!

for _ in $(seq 100); do
  curl -fsS "$api/healthz" >/dev/null 2>&1 && break
  kill -0 "$hub_pid" 2>/dev/null || { echo "the hub exited; see its log above" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$api/healthz" >/dev/null || { echo "the hub did not answer on $api" >&2; exit 1; }
token="$(cat "$data/hub/admin.token")"

agent_args=(--state-dir "$data/agent" --hub "127.0.0.1:${http_port}" --name "$(hostname)-local" --textfile-dir "$data/textfile")
if [ ! -f "$data/agent/credentials.json" ]; then
  join="$(curl -fsS -X POST -H "Authorization: Bearer $token" "$api/api/v1/join-tokens")"
  join="${join#*\"token\":\"}"; join="${join%%\"*}"
  agent_args+=(--join-token "$join")
fi
setsid bin/alicia-agent "${agent_args[@]}" 2> >(prefix '[agent] ') &
agent_pid=$!

# The variables README's examples use: API, TOKEN and the local agent's ID
# (once it has enrolled).
id=
for _ in $(seq 100); do
  id="$(sed -n 's/.*"device_id": *"\([^"]*\)".*/\1/p' "$data/agent/credentials.json" 2>/dev/null || true)"
  [ -n "$id" ] && break
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.1
done
(umask 077; printf 'API=%s\nTOKEN=%s\nID=%s\n' "$api" "$token" "$id" >"$data/env")
# Say "running" once the device reports: its CPU usage comes with the
# second collection, a second after the agent starts.
for _ in $(seq 100); do
  [ -n "$id" ] || break
  curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/devices/$id/metrics/latest" 2>/dev/null | grep -q cpu_usage_ratio && break
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.1
done

cat <<MSG

  Alicia is running.
    REST API:    $api/api/v1   (OpenAPI: $api/api/v1/openapi.yaml)
    MQTT broker: 127.0.0.1:${mqtt_port} (embedded; per-device accounts, no anonymous access)
    Data:        $data/hub (hub), $data/agent (agent)

  In another terminal, here (README.md has more examples):
    source $data/env    # API, TOKEN (the admin token) and ID (this agent: ${id:-not enrolled yet})
    curl -s -H "Authorization: Bearer \$TOKEN" \$API/api/v1/devices

  Stop with Ctrl-C.

MSG
wait -n "$hub_pid" "$agent_pid" || true
if ! kill -0 "$agent_pid" 2>/dev/null && kill -0 "$hub_pid" 2>/dev/null; then
  echo "the agent exited (see its log above); if it was enrolled with an earlier hub, reset it with: rm -rf $data/agent" >&2
else
  echo "the hub exited; stopping" >&2
fi
