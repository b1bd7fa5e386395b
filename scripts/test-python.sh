#!/usr/bin/env bash
# The Python package's tests, against the wheel a researcher installs: scripts/build-wheel.sh
# builds the manylinux abi3 wheel; a fresh virtualenv ($RGD_PY_VENV, default
# ~/.cache/rgd/pyenv, made anew each time) gets it and the test dependencies from PyPI (pinned)
# with pip; then pytest runs python/tests — the notebook examples/notebooks/routing.ipynb among
# them — from outside the source tree, with no cargo or rustc on PATH. Run by scripts/test.sh
# after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."
RGD_PY_VENV="${RGD_PY_VENV:-$HOME/.cache/rgd/pyenv}"
TEST_PACKAGES=(numpy==2.4.6 pandas==3.1.1 pytest==9.2.0 matplotlib==3.11.2 tqdm==4.70.1
  nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0)
wheel=$(scripts/build-wheel.sh | tail -n 1)
echo "test-python: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB" >&2

# PATH without the Rust toolchain: the install and the tests must not need it
path=""
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -x "$d/cargo" ] || [ -x "$d/rustc" ] || path="${path:+$path:}$d"
done

rm -rf "$RGD_PY_VENV"
python3 -m venv "$RGD_PY_VENV"
export PATH="$RGD_PY_VENV/bin:$path"
unset VIRTUAL_ENV
for tool in cargo rustc; do
  if command -v "$tool" >/dev/null; then
    echo "test-python: error: $tool is still on PATH ($(command -v "$tool"))" >&2
    exit 1
  fi
done
"$RGD_PY_VENV/bin/pip" install --quiet "${TEST_PACKAGES[@]}"
# the install and the import, timed (the wheel's size is printed above)
"$RGD_PY_VENV/bin/python" - "$wheel" <<'PY'
import subprocess, sys, time
t0 = time.perf_counter()
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", sys.argv[1]], check=True)
t1 = time.perf_counter()
subprocess.run([sys.executable, "-c", "import rgd"], check=True)
t2 = time.perf_counter()
print(f"test-python: installed in {t1 - t0:.2f} s, imported in {t2 - t1:.2f} s", file=sys.stderr)
PY
# from outside the source tree, so `import rgd` is the installed wheel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && "$RGD_PY_VENV/bin/python" -m pytest -q -s "$OLDPWD/python/tests")
