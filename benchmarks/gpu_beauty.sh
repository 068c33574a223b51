#!/usr/bin/env bash
# Full Beauty protocol on one GPU, as one bounded script (device time is scarce).
#
#   bash benchmarks/gpu_beauty.sh RUN_DIR OUT_DIR TRAIN_MINUTES
#
# RUN_DIR holds data/, features/, tokenizer/ and tokenizer-tiger/ (prepared, featurised and
# tokenized on CPU: those stages take minutes there). Every model trains concurrently on the
# one GPU (they are small; one alone leaves the GPU mostly idle, but seven float32 trainings
# saturate an H100: pick three or four with ONLY=...), each with a time budget,
# then each is evaluated once at its best-validation checkpoint; then the ISR latency
# benchmark runs. Results are packed into OUT_DIR/results.tar.gz every 20 s, so a run cut off
# by its time limit still returns what it had.
set -uo pipefail
RUN=${1:?run dir}; OUT=${2:?out dir}; MIN=${3:-4}; DEVICE=${DEVICE:-cuda}
LOGS=${LOGS:-$OUT/logs}  # the device tool returns at most 8 files: keep logs elsewhere, packed into OUT
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TQDM_DISABLE=1
mkdir -p "$OUT" "$LOGS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$LOGS/gpu.txt" 2>&1
python3 -c "import torch;print('torch',torch.__version__,'cuda',torch.cuda.is_available())" | tee -a "$LOGS/gpu.txt"

# The generative models train with batch 512 and lr 2e-3 here (4x the paper's batch, so an epoch
# is 4x fewer steps), and their cosine decays over the time budget (ML-100K demo, same 7 CPU
# minutes: test R@10 0.0859 decayed vs 0.0615 cut at full rate); SASRec keeps the reference
# row's settings (batch 128, lr 1e-3).
# The backbone is the paper's (SPEC section 5: 4+4 layers, FFN 1024), whatever RUN_DIR's config
# says (the CPU runs use 2+2 layers, FFN 512).
# The cosine ends at EPOCHS epochs if the GPU gets there before the time budget: on CPU the
# ISR over-fits after 20-24 epochs at a high rate (benchmarks/results/beauty-cpu-long-schedule-*),
# so a fast GPU should not spend its budget at one. 30 is a guess for batch 512 (half the steps).
EPOCHS=${EPOCHS:-30}
# float32, whatever the run directory's config says: on an H100 bf16 autocast made a step 1.6x
# slower and ranking 10-30x slower (benchmarks/results/gpu-step-variants-2026-11-26-h100.md)
PRECISION=${PRECISION:---set recommender.amp=false}
BACKBONE=${BACKBONE:---set recommender.encoder_layers=4 --set recommender.decoder_layers=4 --set recommender.d_ff=1024}
GEN=${GEN:---set recommender.batch_size=512 --set recommender.lr=0.002 --set recommender.schedule_minutes=$MIN --set recommender.epochs=$EPOCHS $BACKBONE $PRECISION}
# Preflight: the CLI imports, and a few training steps and a ranked slice of validation users
# run on the device (benchmarks/gpu_preflight.py), so a broken environment or device path costs
# seconds, not the lease. A missing or too old package is installed from wheels carried in .whl/
# (see benchmarks/README.md), then the preflight runs again.
preflight() {
  python3 -m prismrec --help > "$LOGS/preflight.log" 2>&1 &&
    python3 benchmarks/gpu_preflight.py "$RUN" --device "$DEVICE" $BACKBONE $PRECISION --set recommender.batch_size=512 ${PREFLIGHT_ARGS:-} \
      --out "$LOGS/preflight.json" >> "$LOGS/preflight.log" 2>&1
}
if ! preflight; then
  tail -n 20 "$LOGS/preflight.log"
  if compgen -G ".whl/*.whl" > /dev/null; then
    echo "preflight failed: installing the carried wheels and trying again"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PYTHONPATH
  fi
  preflight || { tail -n 40 "$LOGS/preflight.log"; tar -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")"; exit 3; }
fi
tail -n 1 "$LOGS/preflight.log"

pack() { tar -czf "$OUT/results.tar.gz.tmp" -C "$RUN" --exclude='*.pt' --exclude='data' --exclude='features' \
           models eval 2>/dev/null; mv -f "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz";
         tar -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")"; }

# the models, by model directory name: `--model NAME` sets the switches and seed the name
# encodes (prismrec.recommender.registry.select_model); the generative models train with $GEN,
# SASRec with the reference row's own settings
JOBS=(
  prism prism-seed1 prism-seed2 tiger sasrec prism-no-dsi prism-no-ssa prism-no-ats prism-item-ids
  prism-item-ids-seed1 prism-item-ids-seed2 tiger-item-ids prism-item-ids-item-head
  prism-item-ids-item-head-seed1 prism-item-ids-item-head-seed2 tiger-item-ids-item-head
  prism-item-ids-item-head-item-std1 prism-item-ids-item-head-item-std1-seed1
  prism-item-ids-item-head-item-scale11.3 prism-item-ids-item-head-item-scale11.3-seed1
  tiger-item-ids-item-head-item-scale11.3 prism-item-ids-item-head-item-scale32-item-drop0.25
  prism-item-ids-item-head-item-scale32-item-drop0.25-seed1
  prism-item-ids-item-head-item-scale32-item-drop0.25-seed2
  tiger-item-ids-item-head-item-scale32-item-drop0.25
  tiger-item-ids-item-head-item-scale32-item-drop0.25-seed1
  tiger-item-ids-item-head-item-scale32-item-drop0.25-seed2
  prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger
  prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger-seed1
  prism-item-ids-item-head-item-scale32-item-drop0.25-sids-tiger-seed2
  prism-item-ids-sids-tiger prism-item-ids-item-head-sids-tiger sasrec-seed1 sasrec-seed2
  prism-item-ids-item-head-item-recent-item-scale32-item-drop0.25-sids-tiger
  prism-item-ids-item-head-item-recent-item-scale32-item-drop0.25-sids-tiger-seed1
)
# ONLY="prism tiger ..." runs a subset: each job on the one GPU slows the others
if [ -n "${ONLY:-}" ]; then
  kept=(); for name in "${JOBS[@]}"; do [[ " $ONLY " == *" $name "* ]] && kept+=("$name"); done; JOBS=("${kept[@]}")
fi
start=$(date +%s)
pids=()
for name in "${JOBS[@]}"; do
  case $name in sasrec*) args=$PRECISION ;; *) args=$GEN ;; esac
  ( python3 -m prismrec train "$RUN" --model "$name" $args --device "$DEVICE" --max-minutes "$MIN" \
      && python3 -m prismrec evaluate "$RUN" --model "$name" $args --device "$DEVICE" ) > "$LOGS/$name.log" 2>&1 &
  pids+=($!)
done
while :; do
  alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive+1)); done
  pack; echo "t=$(( $(date +%s) - start ))s running=$alive"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  [ "$alive" -eq 0 ] && break; sleep 20
done
for name in "${JOBS[@]}"; do echo "== $name"; tail -n 4 "$LOGS/$name.log"; done
# RECENT="prism prism-item-ids ...": what each model makes of the most recent history item
# (benchmarks/recent_item_value.py), on the GPU, for models trained above
if [ -n "${RECENT:-}" ]; then
  models=(); for m in $RECENT; do models+=(--model "$m"); done
  timeout "${RECENT_SECONDS:-120}" python3 benchmarks/recent_item_value.py "$RUN" "${models[@]}" $GEN --device "$DEVICE" \
    --out "$LOGS/recent-item-value" > "$LOGS/recent.log" 2>&1; tail -n 12 "$LOGS/recent.log"
fi
# WEIGHTS="prism-item-ids-item-head ...": validation and test metrics of item-head models for
# several item_score_weight values, from one ranking pass each (benchmarks/item_head_weight.py)
for m in ${WEIGHTS:-}; do
  timeout "${WEIGHTS_SECONDS:-120}" python3 benchmarks/item_head_weight.py "$RUN" --model "$m" $GEN --device "$DEVICE" \
    --out "$LOGS/item-head-weight-$m" > "$LOGS/weights-$m.log" 2>&1; tail -n 10 "$LOGS/weights-$m.log"
done
if [ "${LATENCY_SECONDS:-90}" -gt 0 ]; then
  timeout "${LATENCY_SECONDS:-90}" python3 benchmarks/isr_latency.py --device "$DEVICE" --threads 8 --repeats 3 --latency-repeats 50 \
    --out "$LOGS/isr_latency-gpu.json" > "$LOGS/latency.log" 2>&1; tail -n 15 "$LOGS/latency.log"
fi
pack
echo "total $(( $(date +%s) - start ))s"
