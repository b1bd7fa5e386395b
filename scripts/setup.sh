#!/usr/bin/env bash
# The system packages llama.cpp's build needs (cmake, libclang), installed only if missing.
# Sourced by scripts/test.sh and scripts/default.sh.
need=()
command -v cmake >/dev/null || need+=(cmake)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
