#!/usr/bin/env bash
# The scan agent's local demo, one command from the repository's root:
#
#   bash scan-queue-agent/examples/demo.sh
#
# Everything on 127.0.0.1: a scan-queue server (in memory, knowing the scanner Wapiti), a
# small web application with a reflected XSS (the agent's test fixture), a Wapiti scan of it
# queued through the Tasks API, and one scan agent (examples/wapiti.toml, --once) that runs
# it. Shows the agent's log and the findings in the report the server stored (fetched with
# GET …/tasks/1/result), then stops everything it started. Needs cargo, python3, curl and wapiti (apt-get install wapiti).
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in wapiti python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo: needs $tool (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release -q -p scan-queue-server -p scan-queue-agent
bin=target/release

demo=$(mktemp -d /tmp/scan-queue-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT

# The first line a background process writes to $1 (waits up to 20 s).
first_line() {
  for _ in $(seq 200); do
    if [ -s "$1" ]; then head -n 1 "$1"; return; fi
    sleep 0.1
  done
  echo "demo: nothing in $1 after 20 s" >&2
  exit 1
}

SCAN_QUEUE_API_KEY="demo$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export SCAN_QUEUE_API_KEY

"$bin/scan-queue-server" --listen 127.0.0.1:0 --in-memory --data-dir "$demo/server" \
  --scanner "Wapiti=wapiti" >"$demo/server.out" 2>"$demo/server.log" &
pids+=($!)
python3 scan-queue-agent/tests/fixtures/webapp.py >"$demo/webapp.out" &
pids+=($!)

api=$(first_line "$demo/server.out" | sed -E 's/^.*listening on (http:[^ ]*[^/])\/?$/\1/')
target="http://127.0.0.1:$(first_line "$demo/webapp.out" | cut -d' ' -f2)/"
echo "server:  $api"
echo "target:  $target"

auth="Authorization: APIKEY $SCAN_QUEUE_API_KEY"
curl -sf -H "$auth" -X POST --data-urlencode applicationId=1 --data-urlencode scannerType=Wapiti \
  --data-urlencode "targetURL=$target" "$api/queueScan" >/dev/null
echo "queued:  a Wapiti scan of $target (task 1)"

# examples/wapiti.toml, pointed at this server and this directory.
mkdir -p "$demo/wapiti-config"
echo '{}' >"$demo/wapiti-config/apps.json"
sed -e "s#^server_url = .*#server_url = \"$api\"#" \
    -e "s#^state_file = .*#state_file = \"$demo/agent-state.toml\"#" \
    -e "s#/var/lib/scan-queue-agent/wapiti-config#$demo/wapiti-config#" \
    -e "s#^poll_interval = .*#poll_interval = \"1s\"#" \
    -e "s#^status_interval = .*#status_interval = \"200ms\"#" \
    scan-queue-agent/examples/wapiti.toml >"$demo/agent.toml"

echo "agent:   scan-queue-agent --config agent.toml --once"
start=$(date +%s.%N)
"$bin/scan-queue-agent" --config "$demo/agent.toml" --once
echo "took:    $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"

# The report as the server stored it, and its record, through the results API.
curl -sf -H "$auth" "$api/1/result" -o "$demo/report.json"
curl -sf -H "$auth" "${api%/tasks}/applications/1/results" -o "$demo/results.json"
python3 - "$demo/report.json" "$demo/results.json" <<'PY'
import json, sys
with open(sys.argv[1], "rb") as f:
    data = f.read()
report = json.loads(data)
print(f"report:  {len(data)} bytes of Wapiti JSON ({report['infos']['version']}, target {report['infos']['target']})")
for category, items in report["vulnerabilities"].items():
    for item in items:
        print(f"finding: {category}: {item['info']}")
with open(sys.argv[2]) as f:
    record = json.load(f)["object"]["results"][0]
print(f"server:  result of task {record['taskId']}: {record['report']}, findings {record['findings']}")
PY
