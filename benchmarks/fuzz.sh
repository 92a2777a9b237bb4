#!/usr/bin/env bash
# The long fuzzing run (issue 17): every property-based fuzz test with DAHASH_FUZZ_EXAMPLES examples
# each (default 10,000), random rather than the suite's fixed derandomised examples. Prints one line
# per test with its example count and outcome; a failure shows Hypothesis's shrunk example.
# Usage: bash benchmarks/fuzz.sh [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
export DAHASH_FUZZ_EXAMPLES=${1:-10000}
tests=$(ls tests/*/test_*fuzz*.py 2>/dev/null)
echo "fuzzing with ${DAHASH_FUZZ_EXAMPLES} examples per test: $(echo $tests | wc -w) files"
start=$(date +%s)
python -m pytest -q -p no:cacheprovider --hypothesis-show-statistics -rfE $tests
echo "wall time: $(( $(date +%s) - start )) s"
