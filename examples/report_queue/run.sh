#!/usr/bin/env bash
# The whole scenario with one command: a private SlotDeck server, a `reports` queue that renders
# two PDFs at a time, a batch of eight, and the ops check watching the queue until it drains.
#   examples/report_queue/run.sh [OUT_DIR]     (from anywhere; default OUT_DIR: a new temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PYTHON:-$root/.venv/bin/python}"
out="${1:-$(mktemp -d)}"
export SLOTDECK_HOME="$out/slotdeck-home"   # a private data dir: its own store, tokens and local.json
unset SLOTDECK_URL SLOTDECK_TOKEN
mkdir -p "$SLOTDECK_HOME" "$out/reports"
slotdeck() { "$PY" -m embedded_service.cli "$@"; }
local_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$SLOTDECK_HOME/local.json" "$1"; }

# a client token may run only the commands an admin allow-lists: here, the renderer and nothing else
cat >"$out/allow.toml" <<EOF
[[allow]]
prefix = ["$PY", "$here/render_report.py"]
tokens = ["report-submitter"]
EOF
# not through the `slotdeck` function: `$!` must be the server itself, so the trap's kill stops it
"$PY" -m embedded_service.cli serve --port 0 --no-probes --command-allowlist "$out/allow.toml" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -s "$SLOTDECK_HOME/local.json" ] && break; sleep 0.1; done
[ -s "$SLOTDECK_HOME/local.json" ] || { echo "the server did not start:"; cat "$out/server.log"; exit 1; }
export SLOTDECK_URL="$(local_field url)"
admin="$(local_field token)"   # the local admin token the server wrote (mode 0600)
echo "server: $SLOTDECK_URL   reports: $out/reports"

slotdeck queue create reports --limit 2 --max-waiting 100 --token "$admin" >/dev/null
# each program gets a token of its own with the least role it needs, as in production
submitter="$(slotdeck token create --role client --name report-submitter 2>/dev/null)"
ops="$(slotdeck token create --role viewer --name ops-check 2>/dev/null)"

SLOTDECK_TOKEN="$submitter" "$PY" "$here/submit_batch.py" "$out/reports" --count 8 --seconds "${REPORT_SECONDS:-3}" >/dev/null
export SLOTDECK_TOKEN="$ops"
"$PY" "$here/check_queue.py" --queue reports --warn 4 --crit 50 || echo "(exit $?)"  # 8 submitted, 2 at a time
"$PY" "$here/check_queue.py" --queue reports --until-drained --timeout 300 --every 0.5
"$PY" "$here/check_queue.py" --queue reports --warn 4 --crit 50                      # drained: OK
ls "$out/reports"
