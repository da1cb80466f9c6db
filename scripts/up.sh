#!/usr/bin/env bash
# up.sh is the Quick start's first command: it installs what is missing
# (npm dependencies and the build, Docker from Debian's docker.io with a
# dockerd of our own when no engine answers, the test image), brings up a
# one-node cluster in the background and deploys the example stack.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

baton() { node bin/baton.js "$@"; }
DATA_DIR="${BATON_DATA_DIR:-${BATON_HOME:-$HOME/.baton}}"

if baton service ls >/dev/null 2>&1; then
  echo "up: a cluster is already running"
else
  baton up -d --data-dir "$DATA_DIR" --pull never
fi
baton apply -f examples/stack.yaml --wait --timeout 120
echo
baton node ls
echo
baton service ls
echo
baton service ps demo_web
addr=$(baton service ps demo_web -o json | node -e 'const t=JSON.parse(require("fs").readFileSync(0,"utf8")).find(t=>t.status.state==="running"); if (t) console.log(t.status.taskIP ? `${t.status.taskIP}:80` : `${t.status.hostIP}:${t.status.ports[0].hostPort}`)')
if [ -n "$addr" ]; then
  echo
  echo "up: curl http://$addr/ says: $(node -e "fetch('http://$addr/').then(r=>r.text()).then(t=>process.stdout.write(t.trim()))")"
fi
# The routing mesh publishes 8080 on the node's address and balances over the ready replicas.
mesh=$(node -e "const get=()=>fetch('http://127.0.0.1:8080/').then(r=>r.text()).then(t=>t.trim()); Promise.all([get(),get(),get()]).then(a=>console.log(a.join(' | '))).catch(e=>console.log('not answering yet: '+e.message))")
echo "up: the routing mesh at http://127.0.0.1:8080/ answers: $mesh"
echo "up: the CLI is node bin/baton.js (or npm link to get 'baton'); stop with: node bin/baton.js down"
