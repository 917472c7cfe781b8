#!/usr/bin/env bash
# GPU checks in one go (the default steps took at most 11 minutes on one H100/H200 before device_pipeline, which adds at most 9): the CUDA tests, the end-to-end latency
# of the paper-size model and of the trained study model on the real full-size event 1001, and the
# attention scaling benchmark. Writes logs and JSON into $OUT (default ./gpu_checks).
#
#   OUT=/tmp/gpu bash scripts/gpu_checks.sh                          # every step
#   OUT=/tmp/gpu STEPS="tests latency_grid" bash scripts/gpu_checks.sh   # some of them
#
# Steps: latency_paper latency_grid latency_dbscan_jobs latency_study tests device_pipeline scaling train_gpu
# (train_gpu is not in the default list: TRAIN_MINUTES of training plus data and scoring).
# Needs torch with CUDA, numpy, pandas, scipy, scikit-learn, numba, tqdm, pyyaml and pytest (no
# notebook packages): runs from the source tree with PYTHONPATH, no install. latency_study needs
# runs/study_contrastive (from `make study`); it is skipped without it.
set -u
OUT=${OUT:-gpu_checks}
STEPS=${STEPS:-latency_paper latency_grid latency_dbscan_jobs latency_study tests device_pipeline scaling}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
CLI=(python3 -m trackstudy)
LATENCY=(bench latency --data data/real/full --events 20 --warmup 3 --device cuda --backend flex --json)
step() { echo; echo "=== $* ($(date +%T))"; }
show() { echo "rc=$1"; tail -c 1600 "$2"; }

step environment
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"

for s in $STEPS; do
  case $s in
  latency_paper)
    step "latency: untrained paper preset (12 x 4 heads, d 192), flex + DBSCAN, event 1001 pixel hits"
    timeout 150 "${CLI[@]}" "${LATENCY[@]}" --preset paper > "$OUT/latency_paper_flex.json"
    show $? "$OUT/latency_paper_flex.json" ;;
  latency_grid)
    step "latency: paper preset, flex + grid-window clustering"
    timeout 100 "${CLI[@]}" "${LATENCY[@]}" --preset paper --locality grid > "$OUT/latency_paper_grid.json"
    show $? "$OUT/latency_paper_grid.json" ;;
  latency_dbscan_jobs)
    step "latency: paper preset, flex + DBSCAN with n_jobs=-1 (neighbour search on every core)"
    timeout 100 "${CLI[@]}" "${LATENCY[@]}" --preset paper --locality dbscan --locality-param n_jobs=-1 \
        > "$OUT/latency_paper_dbscan_jobs.json"
    show $? "$OUT/latency_paper_dbscan_jobs.json" ;;
  latency_study)
    if [ -d runs/study_contrastive ]; then
      step "latency: trained study contrastive model, flex + DBSCAN"
      timeout 100 "${CLI[@]}" "${LATENCY[@]}" --run runs/study_contrastive --locality dbscan \
          > "$OUT/latency_study_flex.json"
      show $? "$OUT/latency_study_flex.json"
    fi ;;
  tests)
    step "CUDA tests and the model/training tests on the GPU (device auto picks CUDA)"
    timeout 180 python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 tests/models/test_attention_backends.py \
        tests/test_device.py tests/models/test_losses.py tests/postprocessing/test_track_formation.py tests/models/test_encoder.py \
        tests/models/test_masks.py tests/test_inference.py tests/training/test_training.py > "$OUT/pytest_gpu.log" 2>&1
    echo "rc=$?"; tail -n 30 "$OUT/pytest_gpu.log" ;;
  device_pipeline)
    step "device pipeline: grid/window clustering and kNN track formation in torch on CUDA equal to the CPU, bucketed"\
" inductor compiles (GPU tests), then the small preset end to end with grid clustering (on the device by default)"
    timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/locality/test_torch_clustering.py \
        tests/postprocessing/test_torch_tracks.py tests/models/test_compiled.py > "$OUT/pytest_device_pipeline.log" 2>&1
    echo "rc=$?"; tail -n 15 "$OUT/pytest_device_pipeline.log"
    timeout 100 "${CLI[@]}" "${LATENCY[@]}" --preset small --locality grid > "$OUT/latency_small_grid_device.json"
    show $? "$OUT/latency_small_grid_device.json"
    step "latency: paper preset, grid on the device, encoder padded to its size bucket and compiled (inductor)"
    timeout 200 "${CLI[@]}" "${LATENCY[@]}" --preset paper --locality grid --compile > "$OUT/latency_paper_grid_compiled.json"
    show $? "$OUT/latency_paper_grid_compiled.json" ;;
  train_gpu)
    step "training: contrastive 10-50 benchmark on the GPU (bf16 autocast), 2 minutes, 100 held-out events"
    timeout 240 python3 scripts/bench_training.py params/bench/contrastive_10-50.yaml --events 100 \
        --out runs/gpu_contrastive_10-50 --set train.max_minutes=${TRAIN_MINUTES:-2} --device cuda \
        > "$OUT/train_gpu.log" 2>&1
    echo "rc=$?"; tr '\r' '\n' < "$OUT/train_gpu.log" | grep -av "step/s\|event/s\|it/s" | tail -n 30
    cp runs/gpu_contrastive_10-50/heldout.json runs/gpu_contrastive_10-50/summary.json "$OUT/" 2>/dev/null ;;
  scaling)
    step "scaling: paper preset, dense vs flex vs packed, 4k-55k hits"
    timeout 110 "${CLI[@]}" bench scaling --preset paper --hits 4000,16000,55000 --backends dense,flex,packed \
        --device cuda --repeats 5 --warmup 2 --max-seconds 60 --json > "$OUT/scaling_paper.json"
    show $? "$OUT/scaling_paper.json" ;;
  *) echo "unknown step $s" ;;
  esac
done
step done
