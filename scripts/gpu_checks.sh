#!/usr/bin/env bash
# GPU checks in one go (at most 9 minutes on one H100/H200): the CUDA tests, the end-to-end latency
# of the paper-size model and of the trained study model on the real full-size event 1001, and the
# attention scaling benchmark. Writes logs and JSON into $OUT (default ./gpu_checks).
#
#   OUT=/tmp/gpu bash scripts/gpu_checks.sh
#
# Needs torch with CUDA, numpy, pandas, scipy, scikit-learn, numba, tqdm, pyyaml and pytest (no
# notebook packages): runs from the source tree with PYTHONPATH, no install. The trained-model
# latency step needs runs/study_contrastive (from `make study`); it is skipped without it.
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date +%T))"; }

step environment
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"

step "latency: untrained paper preset (12 x 4 heads, d 192), flex + DBSCAN, event 1001 pixel hits"
timeout 150 python3 -c "from trackstudy.cli import main; import sys; sys.exit(main(sys.argv[1:]))" \
    bench latency --preset paper --data data/real/full --events 20 --warmup 3 --device cuda \
    --backend flex --json > "$OUT/latency_paper_flex.json"
echo "rc=$?"; tail -c 1500 "$OUT/latency_paper_flex.json"

if [ -d runs/study_contrastive ]; then
  step "latency: trained study contrastive model, flex + DBSCAN, event 1001 pixel hits"
  timeout 100 python3 -c "from trackstudy.cli import main; import sys; sys.exit(main(sys.argv[1:]))" \
      bench latency --run runs/study_contrastive --data data/real/full --events 20 --warmup 3 \
      --device cuda --backend flex --locality dbscan --json > "$OUT/latency_study_flex.json"
  echo "rc=$?"; tail -c 1500 "$OUT/latency_study_flex.json"
fi

step "CUDA tests and the model/training tests on the GPU (device auto picks CUDA)"
timeout 180 python3 -m pytest -q -p no:cacheprovider -p no:benchmark -x -n 8 tests/test_attention_backends.py tests/test_device.py \
    tests/test_losses.py tests/test_track_formation.py tests/test_encoder.py tests/test_masks.py \
    tests/test_inference.py tests/test_training.py > "$OUT/pytest_gpu.log" 2>&1
echo "rc=$?"; tail -n 25 "$OUT/pytest_gpu.log"

step "scaling: paper preset, dense vs flex vs packed, 1k-55k hits"
timeout 110 python3 -c "from trackstudy.cli import main; import sys; sys.exit(main(sys.argv[1:]))" \
    bench scaling --preset paper --hits 4000,16000,55000 --backends dense,flex,packed --device cuda \
    --repeats 5 --warmup 2 --max-seconds 60 --json > "$OUT/scaling_paper.json"
echo "rc=$?"; tail -c 2500 "$OUT/scaling_paper.json"
step done
