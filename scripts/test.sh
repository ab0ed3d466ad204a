#!/usr/bin/env bash
# The whole test suite: unit tests, router and store tests on real RocksDB databases, CLI
# tests of the real binary, and end-to-end tests against a real Synapse. Installs what it
# needs first (scripts/setup.sh: Debian's librocksdb-dev, libclang-dev and make, the Synapse venv).
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The integration tests find scripts/synapse.py here, whichever clone built them.
export BOARDROOM_ROOT="$ROOT"
"$ROOT/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boardroom/target}"
exec cargo test --locked "$@"
