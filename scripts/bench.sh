#!/usr/bin/env bash
# Province-scale benchmark (issue 11): see scripts/bench.py (--help) and README › Benchmark.
#   scripts/bench.sh [--lines-per-month 1000000] [--institutions 3000] [--scales 0.25,0.5] [--keep]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python "$VBP_ROOT/scripts/bench.py" "$@"
