#!/usr/bin/env bash
# README command 1: installs what is missing (tools/setup.sh), builds vkaccum in build/,
# shows the device table and runs the default job: a U-Net trained on the built-in
# shapes dataset with an effective batch of 16 run as micro-batches of 8, evaluated on
# the validation split as it goes. The run lands in runs/shapes/ (metrics.jsonl,
# checkpoints, validation overlays).
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
rm -rf runs/shapes
./build/vkaccum seg train --data shapes --out runs/shapes \
  --depth 3 --width 16 --crop 64 --batch 16 --micro-batch 8 \
  --steps 400 --lr 3e-3 --eval-every 50 --save-every 50 --val-count 100
./build/vkaccum seg eval --ckpt runs/shapes/best.safetensors
