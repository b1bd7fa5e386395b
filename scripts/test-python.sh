#!/usr/bin/env bash
# The Python package's tests: a virtualenv with maturin, numpy, pandas and pytest from PyPI
# (pinned), the wheel built from python/ (maturin, the dev profile), installed, then pytest.
# The virtualenv is kept in $RGD_PY_VENV (default ~/.cache/rgd/pyenv); the wheel goes to
# ${CARGO_TARGET_DIR:-target}/wheels. Run by scripts/test.sh after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."
RGD_PY_VENV="${RGD_PY_VENV:-$HOME/.cache/rgd/pyenv}"
PY_PACKAGES=(maturin==1.16.0 numpy==2.4.6 pandas==3.1.1 pytest==9.2.0)
if ! "$RGD_PY_VENV/bin/python" -c "import maturin, numpy, pandas, pytest" 2>/dev/null; then
  rm -rf "$RGD_PY_VENV"
  python3 -m venv "$RGD_PY_VENV"
  "$RGD_PY_VENV/bin/pip" install --quiet "${PY_PACKAGES[@]}"
fi
wheels="${CARGO_TARGET_DIR:-$PWD/target}/wheels"
rm -rf "$wheels"
# --auditwheel skip: a wheel for this machine, not a manylinux wheel for distribution
(cd python && "$RGD_PY_VENV/bin/maturin" build --profile dev --auditwheel skip \
  --interpreter "$RGD_PY_VENV/bin/python" --out "$wheels")
"$RGD_PY_VENV/bin/pip" install --quiet --force-reinstall --no-deps "$wheels"/rgd-*-linux_x86_64.whl
# from outside the source tree, so `import rgd` is the installed wheel
(cd "$wheels" && "$RGD_PY_VENV/bin/python" -m pytest -q "$OLDPWD/python/tests")
