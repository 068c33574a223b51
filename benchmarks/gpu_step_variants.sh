#!/usr/bin/env bash
# Training-step and ranking speed of the ISR on one GPU under several precisions and batch
# sizes, each a gpu_preflight.py run (one process alone on the device).
#
#   bash benchmarks/gpu_step_variants.sh RUN_DIR OUT_FILE
#
# Is a step bound by kernel launches (time flat in the batch size)? What does bf16 autocast
# cost in extra cast kernels against float32 (with and without TF32 matrix products)?
set -uo pipefail
RUN=${1:?run dir}; OUT=${2:?output .jsonl}
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
BACKBONE="--set recommender.encoder_layers=4 --set recommender.decoder_layers=4 --set recommender.d_ff=1024"
: > "$OUT"
for variant in "amp=true|512|" "amp=false|512|" "amp=false|512|--tf32" "amp=true|1024|" "amp=false|1024|--tf32" "amp=true|256|"; do
  IFS='|' read -r amp batch tf32 <<< "$variant"
  timeout 60 python3 benchmarks/gpu_preflight.py "$RUN" --device "${DEVICE:-cuda}" $BACKBONE --set recommender.$amp \
    --set recommender.batch_size=$batch $tf32 --steps "${STEPS:-20}" --rank-users "${RANK_USERS:-4096}" 2>&1 \
    | grep '^preflight ' | sed 's/^preflight //' | tee -a "$OUT"
done
