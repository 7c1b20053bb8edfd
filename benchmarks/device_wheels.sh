#!/usr/bin/env bash
# Here, before a GPU run: download wheels of what mdhess needs and a lent GPU machine's image
# lacks (it has JAX, numpy, scipy, h5py, tqdm, threadpoolctl; not vesin), for its Python 3.12 on
# x86-64, into .whl/ (git-ignored; the run carries it: docs/benchmarks.md, "GPU targets").
# The versions are this environment's, so the device runs what the tests here ran.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PKGS="${*:-vesin}"
mkdir -p .whl
for pkg in $PKGS; do
  ver=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$pkg")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pkg==$ver"
done
ls -l .whl
du -sh .whl
