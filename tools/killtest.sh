#!/usr/bin/env bash
# Twenty SIGKILLs at random moments of a small `seg train` (during training, evaluation
# and checkpoint writes); after each, last.safetensors must load, and resuming to the end
# must reach the uninterrupted run's checkpoint bit for bit. The test suite runs the same
# test with 3 kills (tests/test_kill.c). Usage: tools/killtest.sh [KILLS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
dir=${2:-build-test}
ninja -C "$dir" tests/test_kill vkaccum >/dev/null
VKACCUM_KILLS=$kills VKACCUM_KILL_STEPS=${KILL_STEPS:-200} VKACCUM_BIN="$PWD/$dir/vkaccum" VKACCUM_VALIDATION=1 \
  "$dir/tests/test_kill" --filter='kill/sigkill*' --verbose 2>&1 | grep -E '^kill|Synthesis|FAIL'
