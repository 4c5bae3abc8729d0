#!/usr/bin/env bash
# README command 1: installs what is missing (tools/setup.sh), builds vkaccum in build/,
# shows the device table and runs the default job: a U-Net trained on the built-in
# shapes dataset (32x32 crops) with an effective batch of 8 run as micro-batches of 4,
# evaluated on the validation split every 250 steps, then evaluated once more from its
# best checkpoint. The run lands in runs/shapes/ (config.json, metrics.jsonl,
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
  --depth 3 --width 16 --crop 32 --batch 8 --micro-batch 4 \
  --steps 1500 --lr 2e-3 --class-weights auto --eval-every 250 --save-every 250
./build/vkaccum seg eval --ckpt runs/shapes/best.safetensors
echo "curves of the run: runs/shapes/curves.png (vkaccum plot RUN [RUN...] --out F.png overlays runs)"
