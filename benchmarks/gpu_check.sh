#!/usr/bin/env bash
# GPU check: one fine-tuning epoch of a small task (Office-Caltech-10 D->W, DAH, 64 bits) on the
# CUDA GPU, printing images/s and peak GPU memory; then the same epoch with torch.compile, and
# on a machine with several GPUs one epoch with torchrun over all of them.
# Without CUDA it says so and exits 0.
#
# Usage: bash benchmarks/gpu_check.sh [--data-root DIR] [--task D:W] [extra finetune_gpu.py flags]
# Environment: PYTHON (default: python), OUT (default: a temporary directory, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PYTHON" -c "import torch; print(f'gpu_check: no CUDA GPU visible to torch {torch.__version__} '
                  f'(CUDA build: {torch.version.cuda or \"none\"}); nothing to check')"
    exit 0
fi
OUT=${OUT:-$(mktemp -d -t dahash-gpu-check-XXXX)}
CLEAN=$([ -z "${KEEP:-}" ] && [[ "$OUT" == */dahash-gpu-check-* ]] && echo 1 || echo 0)
trap '[ "$CLEAN" = 1 ] && rm -rf "$OUT"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PYTHON" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
              f'bf16: {torch.cuda.is_bf16_supported()}, GPUs: {torch.cuda.device_count()}')"

echo "== one epoch, eager (amp, pinned memory)"
"$PYTHON" benchmarks/finetune_gpu.py --task D:W --epochs 1 --methods DAH --out "$OUT/eager" "$@"
echo "== one epoch, torch.compile"
"$PYTHON" benchmarks/finetune_gpu.py --task D:W --epochs 1 --methods DAH --out "$OUT/compiled" --set compile=true "$@"
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
    echo "== one epoch, torchrun over $GPUS GPUs"
    "$PYTHON" -m torch.distributed.run --nproc-per-node "$GPUS" benchmarks/finetune_gpu.py --task D:W \
        --epochs 1 --methods DAH --out "$OUT/ddp" "$@"
fi
