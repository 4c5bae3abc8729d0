#!/usr/bin/env bash
# Installs the Debian packages vkaccum needs to build, test and run (bookworm), only
# when some are missing. Run as root (or with sudo available).
#   tools/setup.sh           what vkaccum needs to build and run
#   tools/setup.sh --tests   and what the test suite needs besides (tools/test.sh): PyTorch,
#                            onnx and PIL, the references of the ONNX export and bench tests,
#                            which skip without them
set -euo pipefail

pkgs=(
  build-essential pkg-config meson ninja-build python3
  libvulkan-dev vulkan-tools mesa-vulkan-drivers vulkan-validationlayers
  glslc spirv-headers
  libstb-dev libcjson-dev zlib1g-dev libspng-dev
  dataset-fashion-mnist
  libcriterion-dev
  clang libclang-rt-14-dev
  libopenmpi-dev openmpi-bin
  python3-numpy python3-matplotlib
)
if [ "${1:-}" = --tests ]; then
  pkgs+=(python3-torch libopenblas0-openmp python3-onnx python3-pil)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#pkgs[@]} packages present"
fi
