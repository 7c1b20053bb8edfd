#!/usr/bin/env bash
# On a lent GPU machine, the whole prepared run in one command (docs/benchmarks.md, "GPU
# targets"). From this machine, after `bash benchmarks/device_wheels.sh`:
#     run(command="bash benchmarks/device_run.sh", carry=[".whl"], timeout_s=600), then give_back
# Puts the carried wheels (.whl/) on the path, checks the imports and the device (preflight.txt),
# then runs bench_gpu.py inside BUDGET seconds (default 540: the command's 600 s limit less
# start-up). Everything lands in $OUT: preflight.txt, log.txt, gpu.json, gpu.json.steps.
# Extra arguments go to bench_gpu.py (e.g. --quick for a CPU rehearsal). mdhess is not installed
# there: bench_gpu.py runs from the checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/mdhess-device}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET:-540}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  site="${TMPDIR:-/tmp}/mdhess-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "device_run.sh: installing the carried wheels (.whl/) failed" >&2; exit 3; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - > "$OUT/preflight.txt" 2>&1 <<'PY'
import sys
sys.path.insert(0, ".")
import importlib
missing = []
for name in ("jax", "numpy", "scipy", "h5py", "vesin", "tqdm", "threadpoolctl", "mdhess"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as exc:  # any import failure is reported, then the run stops
        missing.append(f"{name}: {type(exc).__name__}: {exc}")
if missing:
    print("device_run.sh: cannot import " + "; ".join(missing)
          + " (bash benchmarks/device_wheels.sh here, then carry .whl)")
    sys.exit(4)
import jax
print("python", sys.version.split()[0], "backend", jax.default_backend(), "devices", jax.devices())
PY
rc=$?
cat "$OUT/preflight.txt"
[ $rc -eq 0 ] || exit $rc
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >> "$OUT/preflight.txt" 2>&1
"$PY" benchmarks/bench_gpu.py --budget "$BUDGET" --json "$OUT/gpu.json" "$@" > "$OUT/log.txt" 2>&1
rc=$?
tail -c 6000 "$OUT/log.txt"
exit $rc
