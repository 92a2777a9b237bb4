#!/usr/bin/env bash
# Training length as a label-free selection candidate on weak features (issue 13, point 4):
# the digits demo's 64 block-count features, where 300 epochs of NoDA fit the source and
# transfer poorly. NoDA and DAH get six candidates each, chosen by the paper's rule; the chosen
# setting then trains three seeds on the whole source. Pre-registered in docs/selection.md.
# Usage: bash benchmarks/training_length_selection.sh [OUT]   (about 10 minutes on 2 cores)
set -euo pipefail
OUT=${1:-runs/training_length}
mkdir -p "$OUT"
if [ ! -f "$OUT/demo/data/source_printed.npz" ]; then
    # The demo writes its two feature files first; its own six runs are the fixed-length rows.
    dahash demo --out "$OUT/demo" --seeds 3
fi
DATA=(--source-features "$OUT/demo/data/source_printed.npz" --target-features "$OUT/demo/data/target_handwritten.npz")
DEMO=(--bits 64 --hidden 256 256 --feature-norm standardize --k 15 --num-threads 1)
dahash select "${DATA[@]}" "${DEMO[@]}" --gamma 0 --eta 0 \
    --grid epochs=10,20,30,50,100,300 --out "$OUT/select-NoDA" --quiet & first=$!
dahash select "${DATA[@]}" "${DEMO[@]}" \
    --grid epochs=30,100,300 --grid gamma=500,5000 --out "$OUT/select-DAH" --quiet
wait "$first"
for method in NoDA DAH; do
    for seed in 0 1 2; do
        [ -f "$OUT/$method-sel/seed$seed/results.json" ] ||
            dahash train --config "$OUT/select-$method/config.yaml" --seed "$seed" --num-threads 1 \
                --out "$OUT/$method-sel/seed$seed" --resume --quiet
    done
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
out = Path(sys.argv[1])
print("| method | epochs | gamma | accuracy (%) per seed | mean | mAP mean |")
print("|---|---|---|---|---|---|")
for name, runs in (("NoDA (300 epochs)", out / "demo" / "NoDA"), ("DAH (300 epochs)", out / "demo" / "DAH"),
                   ("NoDA-sel", out / "NoDA-sel"), ("DAH-sel", out / "DAH-sel")):
    res = [json.loads((runs / f"seed{s}" / "results.json").read_text()) for s in range(3)]
    acc = [r["metrics"]["target_accuracy"] for r in res]
    mAP = [r["metrics"]["map"] for r in res]
    cfg = res[0]["config"]
    print(f"| {name} | {cfg['epochs']} | {cfg['gamma']:g} | {' / '.join(f'{a:.1f}' for a in acc)} "
          f"| {np.mean(acc):.1f} | {np.mean(mAP):.3f} |")
PY
