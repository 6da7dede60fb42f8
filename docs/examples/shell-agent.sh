#!/usr/bin/env bash
# A shell agent reporting one task to spanvisor with `spanvisor emit`: the
# same task, steps and live story as the Python helper and the Node example
# (docs/examples/README.md).
#
#   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 ./shell-agent.sh
#
# `emit start` sends the task's start record (the live channel): from then on
# the task is open, named and shown in Slack although its root span only
# leaves at `emit finish`. While a long command runs, a background loop says
# `emit heartbeat` every HEARTBEAT seconds: a shell agent that dies without
# `finish` then goes silent and is called stalled after SPANVISOR_STALL_AFTER.
#
# Environment: TASK_ID (default: a fresh one), AGENT (default: sprocket),
# STEP_SECONDS (how long each step "works", default 2), HEARTBEAT (seconds,
# default 30), SPANVISOR (the CLI, default: spanvisor on PATH).
set -euo pipefail

SPANVISOR=${SPANVISOR:-spanvisor}
TASK_ID=${TASK_ID:-migrate-$(date +%s)-$$}
AGENT=${AGENT:-sprocket}
STEP_SECONDS=${STEP_SECONDS:-2}
HEARTBEAT=${HEARTBEAT:-30}

emit() { "$SPANVISOR" emit "$1" --task "$TASK_ID" --agent "$AGENT" "${@:2}"; }

beats=""
stop_heartbeats() { if [ -n "$beats" ]; then kill "$beats" 2>/dev/null || true; wait "$beats" 2>/dev/null || true; beats=""; fi; }
# Any failure below ends the task as an error instead of leaving it open.
on_exit() {
  status=$?
  stop_heartbeats
  if [ "$status" -ne 0 ]; then emit finish --status error --error "shell-agent.sh exited with $status" || true; fi
}
trap on_exit EXIT

emit start --name "Migrate billing" "Starting"
# No steps flag on `emit`: steps come from the checkpoints' agent.step.
(while sleep "$HEARTBEAT"; do emit heartbeat >/dev/null || true; done) &
beats=$!

emit checkpoint --progress 20 --step plan "Planning the migration"
sleep "$STEP_SECONDS"
emit checkpoint --progress 60 --step apply "Applying the migration"
sleep "$STEP_SECONDS" # a long command: the heartbeats say the task is alive
emit checkpoint --progress 100 --step verify "Verified the new schema"

stop_heartbeats
emit finish --name "Migrate billing" "Migrated 3 tables"
