#!/usr/bin/env bash
# A bounded schemathesis run against a live daemon on loopback: the simulator for all five
# providers, `payrecon run` with the HTTP API and a token, and schemathesis with every check
# against the daemon's own /v1/openapi.json. Every process it starts is stopped on exit.
#
#   tests/api/schemathesis.sh [MAX_EXAMPLES] [SEED]      (defaults 200 and 1)
#
# Needs: pip install schemathesis (4.x). CI does not run this.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
examples="${1:-200}"
seed="${2:-1}"
cd "$root"
cargo build --release --quiet
bin="$root/target/release/payrecon"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
export PAYRECON_SIM_KEY=sim-key PAYRECON_SIM_PUBLIC_KEY=sim-public-key
PAYRECON_API_TOKEN="$(head -c 18 /dev/urandom | base64)"
export PAYRECON_API_TOKEN
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api="127.0.0.1:$(port)"

"$bin" simulate --listen 127.0.0.1:0 --write-config "$work/payrecon.toml" 2>"$work/simulator.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/payrecon.toml" ] && break; sleep 0.1; done
sed -i "s|^path = .*|path = \"$work/ledger.db\"|" "$work/payrecon.toml"
printf '\n[api]\nlisten = "%s"\ntoken_env = "PAYRECON_API_TOKEN"\n' "$api" >> "$work/payrecon.toml"
"$bin" --config "$work/payrecon.toml" run 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null -H "Authorization: Bearer $PAYRECON_API_TOKEN" "http://$api/v1/openapi.json" && break; sleep 0.1; done

status=0
# schemathesis and hypothesis keep their caches in the working directory: the temporary one.
cd "$work"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/tests/api" \
    st run "http://$api/v1/openapi.json" \
    -H "Authorization: Bearer $PAYRECON_API_TOKEN" \
    --checks all --max-examples "$examples" --seed "$seed" --request-timeout 10 || status=$?
if grep -E "panicked|api: internal error" "$work/daemon.log"; then
    echo "the daemon logged an internal error or a panic (above)"; status=1
fi
echo "sessions in the ledger: $(sqlite3 "$work/ledger.db" 'SELECT count(*) FROM sessions' 2>/dev/null || echo '?')"
exit "$status"
