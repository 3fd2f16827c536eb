#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each; `fuzz/run.sh 300` for longer),
# on the nightly toolchain, with the corpora kept in fuzz/corpus/. CI does not run this.
# Needs: rustup toolchain install nightly; cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
# The provider corpus starts from the documented answers: each file once per kind (the first
# byte picks the kind).
mkdir -p corpus/provider_answers corpus/csv_import corpus/config corpus/api_body
i=0
for f in ../tests/fixtures/providers/*/*.json; do
    for kind in 0 1 2 3 4; do
        out="corpus/provider_answers/seed-$(basename "$(dirname "$f")")-$(basename "$f" .json)-$kind"
        [ -e "$out" ] || { printf "\\x0$kind" > "$out"; cat "$f" >> "$out"; }
    done
    i=$((i + 1))
done
[ -e corpus/csv_import/seed-header ] || printf 'provider,session_id,reference,amount,currency,created_at\nmopay,MOP_1,ORDER1,100.00,LSL,2026-11-01T00:00:00Z\n' > corpus/csv_import/seed-header
[ -e corpus/config/seed-example ] || cp ../config/payrecon.toml corpus/config/seed-example
[ -e corpus/api_body/seed-good ] || printf '{"provider":"mopay","session_id":"MOP_1","reference":"R1","amount":"100.00","currency":"LSL"}' > corpus/api_body/seed-good
for target in provider_answers config csv_import api_body; do
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
        | grep -E "^(#[0-9]+[[:space:]]+DONE|Done|==[0-9]+==|SUMMARY|.*panicked)" || true
    if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
        echo "$target: crashes in fuzz/artifacts/$target/"; exit 1
    fi
done
