#!/usr/bin/env bash
# GPU check: tiny pretraining on cuda, then `run ave` and `embed` with that checkpoint on cuda and on
# the CPU, compared; seconds per step of `pretrain --preset paper` on cuda. About 4 minutes on a
# 16-core machine with one GPU.
#
# Usage, from the repository root:  scripts/gpu-check.sh [OUT_DIR]      (default /tmp/cmg-gpu-check)
#   PY=python3          a Python with torch (CUDA), h5py, click, rich, scikit-learn, pandas,
#                       torchmetrics, matplotlib, pyyaml; cmg-eval itself need not be installed
#                       (the script runs it from this checkout with PYTHONPATH=.). Nothing is downloaded.
#   GPU_CHECK_DEVICE=cpu  run the "GPU" side on the CPU too (to try the script where there is no GPU).
set -euo pipefail
PY=${PY:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT=${1:-/tmp/cmg-gpu-check}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cli() { "$PY" -m cmg_eval.cli "$@"; }
now() { date +%s.%N; }
since() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[ -f cmg_eval/cli.py ] || { echo "gpu-check: run me from the cmg-eval repository root" >&2; exit 2; }
"$PY" - "$DEVICE" <<'EOF'
import os, sys, torch
import cmg_eval
device = sys.argv[1]
print(f"cmg-eval from {os.path.dirname(cmg_eval.__file__)}; torch {torch.__version__}, cuda available: "
      f"{torch.cuda.is_available()}" + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
      + f"; {os.cpu_count()} CPUs", flush=True)
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu-check: torch sees no GPU; set GPU_CHECK_DEVICE=cpu to try the script on the CPU")
EOF
rm -rf "$OUT"
mkdir -p "$OUT"
S=$(now)
cli data synth --out "$OUT/data" --size tiny --seed 0 > "$OUT/synth.log"
echo "synthetic tiny data: $(since "$S") s"

# 1. Pretraining: the tiny preset, shortened, on the device; a few steps of the paper preset for its speed.
S=$(now)
cli pretrain dcid --data-root "$OUT/data" --out "$OUT/dcid.pt" --preset tiny --set steps=150 --device "$DEVICE" \
    | tee "$OUT/pretrain.log"
echo "pretrain dcid tiny, 150 steps on $DEVICE: $(since "$S") s wall"
cli pretrain dcid --data-root "$OUT/data" --out "$OUT/paper.pt" --preset paper --set steps=6 --set save_every=1000 \
    --device "$DEVICE" | tee "$OUT/paper.log"

# 2. `run ave` with that checkpoint on the device and on the CPU (3 head seeds each, own caches).
for side in "$DEVICE" cpu; do
    S=$(now)
    cli run ave --ckpt "dcid=$OUT/dcid.pt" --ckpt "oracle=$OUT/data/oracle.pt" --data-root "$OUT/data" \
        --out "$OUT/ave-$side" --cache-dir "$OUT/cache-$side" --bootstrap 0 --device "$side" > "$OUT/ave-$side.log"
    echo "run ave on $side: $(since "$S") s"
done

# 3. `embed` of the same AVE clips and captions on the device and on the CPU.
"$PY" - "$OUT" <<'EOF'
import sys
import h5py, numpy as np
out = sys.argv[1]
ave = f"{out}/data/AVE-ECCV18-master/data"
with h5py.File(f"{ave}/visual_feature.h5") as v, h5py.File(f"{ave}/audio_feature.h5") as a, \
        h5py.File(f"{out}/data/MSRVTT/text_tokens.h5") as t:
    np.savez(f"{out}/inputs.npz", video=v["avadataset"][:32].astype(np.float32),
             audio=a["avadataset"][:32].astype(np.float32), text=t["tokens"][:32].astype(np.float32))
EOF
for side in "$DEVICE" cpu; do
    for modality in video audio text; do
        cli embed --ckpt "$OUT/dcid.pt" --modality "$modality" --in "$OUT/inputs.npz" \
            --out "$OUT/embed-$side-$modality.npz" --device "$side" > /dev/null
    done
done

# 4. Summary.
"$PY" - "$OUT" "$DEVICE" <<'EOF'
import json, sys
import numpy as np
import torch
out, device = sys.argv[1], sys.argv[2]
print(f"\n===== gpu-check summary ({device} against cpu) =====")
for name, what in (("dcid", "tiny, 150 steps"), ("paper", "paper, 6 steps")):
    ckpt = torch.load(f"{out}/{name}.pt", map_location="cpu", weights_only=True)
    print(f"pretrain dcid ({what}) on {ckpt['device']}: {ckpt['train_seconds'] / ckpt['total_step']:.3f} s/step, "
          f"last losses {', '.join(f'{k} {v:.3g}' for k, v in ckpt['losses'].items())}")
ok = True
print("embed (32 AVE clips, 32 MSR-VTT captions), device vs cpu:")
for modality in ("video", "audio", "text"):
    a, b = (np.load(f"{out}/embed-{side}-{modality}.npz") for side in (device, "cpu"))
    pre = float(np.abs(a["pre_vq"] - b["pre_vq"]).max())
    same = float((a["indices"] == b["indices"]).mean())
    vq = float(np.abs(a["vq"] - b["vq"]).max())
    good = pre < 1e-3 and same >= 0.99
    ok &= good
    print(f"  {modality:5s} pre_vq max |diff| {pre:.2e}  codes equal {100 * same:.1f}%  vq max |diff| {vq:.2e}"
          f"  {'ok' if good else 'CHECK'}")
print("run ave (clean protocol, accuracy %, mean +- std of 3 head seeds):")
rows = {}
for side in (device, "cpu"):
    for r in json.load(open(f"{out}/ave-{side}/results.json"))["results"]:
        if r["primary"]:
            rows.setdefault((r["model"], r["direction"]), {})[side] = (r["value"], r["std"])
for (model, direction), sides in sorted(rows.items()):
    (dv, ds), (cv, cs) = sides[device], sides["cpu"]
    good = abs(dv - cv) <= max(3 * max(ds, cs), 2.0)
    ok &= good
    print(f"  {model:6s} {direction}: {device} {dv:6.2f} +- {ds:5.2f}   cpu {cv:6.2f} +- {cs:5.2f}   "
          f"diff {dv - cv:+6.2f}  {'ok' if good else 'CHECK'}")
print("gpu-check:", "PASS (device and cpu agree within rounding and head-seed noise)" if ok else "CHECK the rows above")
sys.exit(0 if ok else 1)
EOF
