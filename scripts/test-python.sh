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

# abi3: the same wheel on the oldest and the newest other CPython this machine has (pyenv's, when
# present), each in its own new virtualenv with numpy: a pipeline gives the numbers it gives here
smoke='import json, sys, rgd
r = rgd.run(sys.argv[1], progress=False)
print(json.dumps({n: x["top1"] for n, x in r["routers"].items()}, sort_keys=True))'
expected=$("$RGD_PY_VENV/bin/python" -c "$smoke" "$PWD/examples/pipelines/zoo.toml")
others=()
for v in 3.9 3.10 3.12 3.13 3.14; do
  for py in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python3; do
    [ -x "$py" ] && others+=("$py") && break
  done
done
if [ ${#others[@]} -gt 0 ]; then
  for py in "${others[0]}" "${others[-1]}"; do
    venv="$tmp/venv-$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet numpy "$wheel"
    got=$(cd "$tmp" && "$venv/bin/python" -c "$smoke" "$OLDPWD/examples/pipelines/zoo.toml")
    if [ "$got" != "$expected" ]; then
      echo "test-python: error: on $("$py" --version) the zoo pipeline gives $got, here $expected" >&2
      exit 1
    fi
    echo "test-python: the wheel on $("$py" --version): the same numbers" >&2
  done
fi
