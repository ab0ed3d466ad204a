#!/usr/bin/env bash
# The long runs of the reliability tests in tests/it/under_load.rs, against a real Synapse:
# the crash loop with many aimed SIGKILLs, Synapse stopped for a minute, and a stand-in
# homeserver that fails Boardroom's requests at random, all under load. Each prints one
# line of figures (what was caught halfway, what was retried, what was lost: the goal is
# nothing); docs/RELIABILITY.md records them.
#
#   scripts/reliability.sh [kills] [flaky rounds]    (defaults: 200 and 100)
#
# BOARDROOM_CRASH_SEED and BOARDROOM_FLAKY_SEED repeat a run's random choices.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export BOARDROOM_ROOT="$ROOT"
"$ROOT/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boardroom/target}"
export BOARDROOM_CRASH_KILLS="${1:-200}"
export BOARDROOM_FLAKY_ROUNDS="${2:-100}"
cargo test --locked --test it under_load -- --nocapture --test-threads 1 2>&1 |
    grep -E '^(crash loop|homeserver outage|flaky homeserver)|^test |panicked|^  left|^ right|log:'
