#!/usr/bin/env bash
# The GPU check in one command of at most about 9 minutes on one GPU (an H100 or H200 with 16 CPU cores) on a
# machine with no package index: it installs what the project needs from a wheel folder made beforehand, brings
# its data (Fashion-MNIST; the JPEG folders are generated there) and timm's train.py (a pytorch-image-models
# checkout copied into .gpu/ by --prepare), runs the tests marked cuda first (`python -m pytest -m cuda`, their
# counts and failing ids kept in the record: correctness before speed), then measures (`python -m benchmarks.gpu_check`,
# benchmarks/gpu_check.py, says what) and writes gpu_check.json and gpu_check.md, the device named.
#
#   benchmarks/gpu_check.sh --prepare --timm-checkout DIR   # where the package index is: wheels, data, timm's
#                                                           # train.py and timm/ from the checkout DIR, in .gpu/
#   benchmarks/gpu_check.sh              # on the GPU machine, from the repository root (with .gpu/ copied along)
#   benchmarks/gpu_check.sh --dry-run    # print every command instead of running it (with --prepare too), and
#                                        # each step of the check with the commands it runs (timm's train.py's)
#   benchmarks/gpu_check.sh --timm-train-py PATH   # timm's train.py (default .gpu/pytorch-image-models/train.py)
#   benchmarks/gpu_check.sh --quick      # every step at a tiny size; runs on a CPU
#   benchmarks/gpu_check.sh --no-install # use the environment as it is (one that has the project's dependencies)
#   benchmarks/gpu_check.sh --out DIR    # where the results go (default benchmarks/results/gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."                       # the repository root: `python -m benchmarks.gpu_check` runs from it

GPU_DIR=${GPU_DIR:-.gpu}                      # ignored by git
PYTHON=${PYTHON:-python3}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}          # the GPU machine's Python
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
# What the GPU image lacks of the project's dependencies, at the versions installed here; timm too, so both
# machines run the same timm. The CUDA tests need nothing more (the image has pytest).
CARRIED=(pydantic pydantic-core annotated-types typing-inspection timm)

dry=0 prepare=0 install=1 out=benchmarks/results/gpu-check extra=() checkout= train_py=
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --prepare) prepare=1 ;;
    --quick) extra+=(--quick) ;;
    --no-install) install=0 ;;
    --out) out=$2; shift ;;
    --timm-checkout) checkout=$2; shift ;;
    --timm-train-py) train_py=$2; shift ;;
    *) echo "error: unknown option $1; options: --prepare --dry-run --quick --no-install --out DIR" \
      "--timm-checkout DIR --timm-train-py PATH" >&2; exit 2 ;;
  esac
  shift
done

run() {
  echo "+ $*"
  if [ "$dry" -eq 0 ]; then "$@"; fi
}

pinned() {  # NAME==VERSION of each carried package, read from the environment the tests run in
  "$PYTHON" - "${CARRIED[@]}" <<'PY'
import importlib.metadata as m, sys
try:
    print(" ".join(f"{name}=={m.version(name)}" for name in sys.argv[1:]))
except m.PackageNotFoundError as e:
    sys.exit(f"error: {e.args[0]} is not installed for {sys.executable}; activate the project's environment first")
PY
}

if [ "$prepare" -eq 1 ]; then
  pins=$(pinned) || exit 2
  run mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/data/fashion-mnist"
  # shellcheck disable=SC2086
  run "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$GPU_DIR/wheels" $pins
  run cp "$FASHION_MNIST"/train-images-idx3-ubyte.gz "$FASHION_MNIST"/train-labels-idx1-ubyte.gz \
    "$FASHION_MNIST"/t10k-images-idx3-ubyte.gz "$FASHION_MNIST"/t10k-labels-idx1-ubyte.gz "$GPU_DIR/data/fashion-mnist/"
  if [ -n "$checkout" ]; then
    if [ ! -f "$checkout/train.py" ] || [ ! -d "$checkout/timm" ]; then
      echo "error: --timm-checkout $checkout has no train.py and timm/; pass a pytorch-image-models checkout" >&2
      exit 2
    fi
    # train.py beside the checkout's own timm/ (Python imports from a script's own folder first); no tests, docs
    run mkdir -p "$GPU_DIR/pytorch-image-models"
    run cp -r "$checkout/train.py" "$checkout/timm" "$GPU_DIR/pytorch-image-models/"
  fi
  exit 0
fi

if [ "$install" -eq 1 ]; then
  if [ "$dry" -eq 0 ] && ! ls "$GPU_DIR"/wheels/*.whl >/dev/null 2>&1; then
    echo "error: no wheels in $GPU_DIR/wheels; run benchmarks/gpu_check.sh --prepare where the package index is" >&2
    exit 2
  fi
  run "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$GPU_DIR/site" "$GPU_DIR"/wheels/*.whl
  export PYTHONPATH="$PWD/$GPU_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
  echo "+ export PYTHONPATH=$PYTHONPATH"
fi
if command -v nvidia-smi >/dev/null; then run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
train_py=${train_py:-$GPU_DIR/pytorch-image-models/train.py}
if [ "$dry" -eq 0 ] && [ ! -f "$train_py" ]; then
  echo "error: no timm train.py at $train_py; run --prepare --timm-checkout DIR or pass --timm-train-py PATH" >&2
  exit 2
fi
run "$PYTHON" -m benchmarks.gpu_check --data-dir "$GPU_DIR/data/fashion-mnist" --out "$out" \
  --timm-train-py "$train_py" "${extra[@]}"
if [ "$dry" -eq 1 ]; then
  "$PYTHON" -m benchmarks.gpu_check --dry-run --timm-train-py "$train_py" "${extra[@]}"
fi
