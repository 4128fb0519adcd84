#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, install the cuda extra, run
# `pytest -m gpu` (tests/integration/test_gpu.py), time the tutorial on the embedded
# default cluster, and print the results. About 5 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh download   # where PyPI is reachable: wheels for an offline
#                                           # GPU machine (Python 3.12, x86-64) into .whl/
#   bash benchmarks/gpu_check.sh            # on the GPU machine: from .whl/ if it is there
#                                           # (into /tmp/site, beside the machine's own torch),
#                                           # else pip install -e '.[cuda,test]'
#
# Logs go to $OUT (or /tmp/gpu_check). The offline machine needs torch, torchvision, numpy,
# pandas, scipy, scikit-learn, matplotlib, pytest and pytest-timeout already installed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# dask-cuda 26.10 pins dask and distributed to 2026.7.1 (rapids-dask-dependency) and bokeh<3.10.
WHEELS=(dask==2026.7.1 distributed==2026.7.1 dask-cuda==26.10.0 rapids-dask-dependency==26.10.0
        bokeh==3.9.2 xyzservices tornado zict tblib partd locket hyperopt mlxtend)

if [ "${1:-}" = download ]; then
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}" || exit 1
    du -sh .whl
    exit 0
fi

LOG=${OUT:-/tmp/gpu_check}
mkdir -p "$LOG"
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
    $PY -m pip install -q -e '.[cuda,test]' || exit 1
fi
export PYTHONUNBUFFERED=1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'PY'
import importlib.metadata as metadata

for name in ["dask", "distributed", "dask-cuda", "rapids-dask-dependency", "bokeh", "torch",
             "torchvision", "nvidia-ml-py", "cuda-core"]:
    try:
        print(f"{name}=={metadata.version(name)}", end="  ")
    except metadata.PackageNotFoundError:
        print(f"{name}: missing", end="  ")
print()
from dasktune.execution._gpu import probe_gpus
print("GPUs found:", probe_gpus())
PY

echo "== pytest -m gpu"
$PY -m pytest -m gpu -v -rs -s -p no:cacheprovider tests 2>&1 | tee "$LOG/pytest_gpu.log"
pytest_status=${PIPESTATUS[0]}

echo "== the tutorial on the embedded default cluster, timed"
home=$(mktemp -d)
start=$SECONDS
HOME="$home" $PY examples/getting_started.py > "$LOG/tutorial.log" 2>&1
tutorial_status=$?
elapsed=$((SECONDS - start))
grep -E "started a local Dask cluster|Stage|Best trial|accuracy" "$LOG/tutorial.log" | head -20
tail -5 "$LOG/tutorial.log"

echo "== results"
echo "pytest -m gpu: exit $pytest_status: $(grep -E '[0-9]+ (passed|failed|skipped)' "$LOG/pytest_gpu.log" | tail -1)"
echo "tutorial: exit $tutorial_status in $elapsed s (imports, cluster start and three stages)"
[ "$pytest_status" = 0 ] && [ "$tutorial_status" = 0 ]
