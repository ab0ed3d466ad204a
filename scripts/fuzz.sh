#!/usr/bin/env bash
# Fuzzes Boardroom's parsers of untrusted input (docs/FUZZING.md): builds the targets in
# fuzz/ with cargo-fuzz on the nightly toolchain, then runs each for SECONDS (default 30),
# one after the other, and prints one line per target. Exits non-zero when any target
# crashed (a panic, a broken law, a timeout or running out of memory); the input that did
# it is in the artifacts directory the summary names.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]      # every target when none is named
#
# Everything generated stays outside the clone, under $BOARDROOM_CACHE (default
# ~/.cache/boardroom): cargo-fuzz itself (installed there once), the build (fuzz-target/),
# the corpora the runs grow (fuzz/corpus/<target>), crashing inputs
# (fuzz/artifacts/<target>) and each run's log (fuzz/logs/<target>-<time>-<pid>.log). The
# committed seeds in fuzz/seeds/<target> and dictionaries in fuzz/dicts/<target>.dict
# are read, never written.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET…]" >&2
    exit 2
fi

cache="${BOARDROOM_CACHE:-$HOME/.cache/boardroom}"
tools="$cache/cargo-fuzz"
target_dir="$cache/fuzz-target"
out="$cache/fuzz"
export CARGO_TERM_COLOR=never

# The nightly toolchain (sanitizers and libFuzzer's coverage need it).
if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
# cargo-fuzz, once, into the cache.
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    cargo install --locked cargo-fuzz --root "$tools"
fi
export PATH="$tools/bin:$PATH"
# The bundled SQLite (the encryption store) defines function-local tables of one name
# twice in its amalgamation, which the address sanitizer reports as a one-definition-rule
# violation at start, before any input: not a finding.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

mapfile -t all < <(cargo fuzz list --fuzz-dir fuzz)
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${all[@]}")
fi
for t in "${targets[@]}"; do
    if [[ " ${all[*]} " != *" $t "* ]]; then
        echo "no fuzz target $t (there are: ${all[*]})" >&2
        exit 2
    fi
done

# One build for every target: address sanitizer, debug assertions and overflow checks on.
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir"
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$target_dir/$host/release"

failed=()
for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    log="$out/logs/$t-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    # New inputs go to the first directory (the corpus); the seeds are only read.
    dict=()
    if [ -f "fuzz/dicts/$t.dict" ]; then
        dict=(-dict="fuzz/dicts/$t.dict")
    fi
    status=0
    "$bin/$t" "$corpus" "fuzz/seeds/$t" "${dict[@]}" \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$({ grep -o 'cov: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)"
    size="$(find "$corpus" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then
        printf '%-18s ok     %ss  %s execs  %s exec/s  cov %s  corpus %s\n' \
            "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$size"
    else
        failed+=("$t")
        printf '%-18s FAILED (exit %s)  %s execs  cov %s  corpus %s  log %s\n' \
            "$t" "$status" "${execs:-?}" "${cov:-?}" "$size" "$log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|thread .* panicked|artifact_prefix|Test unit written)' "$log" \
            | head -5 | sed 's/^/    /' || true
        grep -A3 'panicked at' "$log" | head -8 | sed 's/^/    /' || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}; inputs in $out/artifacts/" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), ${seconds}s each, no crash"
