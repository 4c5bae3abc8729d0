#!/usr/bin/env bash
# README command 1: installs what is missing (tools/setup.sh), builds vkaccum in build/,
# and runs the default job on this machine's default device: the device table, then the
# shader self-check.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build -Dtests=false >/dev/null
else
  meson setup build -Dtests=false
fi
ninja -C build

./build/vkaccum devices
./build/vkaccum selftest
