#!/bin/bash
# The GPU ablation: phase 1 trains each group's teacher (and select-assistant) once; phase 2 copies that run
# directory per seed (and per variant set) and trains the sub-runs in parallel; phase 3 gathers every finished
# sub-run's result.json and tabulates them with edgekd's summarize / grid_check (merge.py).
# Written for a GPU machine with many cores (each process is launch-bound: one core each, the GPU shared). On a
# 2-core CPU machine run one group with its teacher on both cores: ONLY=r20 PHASE1_THREADS=2 (the 3 per-seed
# processes of phase 2 then share the 2 cores, one thread each).
# Usage, from the repository root: bash benchmarks/ablation/parallel.sh OUTDIR DEADLINE_S [--smoke]
# ($EDGEKD_DATA: where fashion-mnist's IDX files are, when not in /usr/share/datasets; $PY: the python to use; $RUNS:
# the scratch folder, default /tmp/runs: run again with the same one and an interrupted invocation resumes, phase 1
# and every sub-run from its last finished epoch (reuse it only with the same settings); $ONLY: the groups to run,
# default "r20 r56"; $PHASE1_THREADS: threads of the teacher phase, default 1; $R20_VARIANTS: the r20 variants,
# default "no-kd, kd, dkd"; $R56_VARIANTS: the r56 variants, trained in one process per seed, default two processes
# per seed, "kd, takd" and "ta-grid"; $TRAIN: the sub-runs' budget, default the recipe's 50 epochs below; $EXTRA: more
# edgekd arguments for both phases, e.g. "--set teacher.train.epochs=8", words without spaces.)
set -u
OUTDIR=$1; DEADLINE=$2; SMOKE=${3:-}
START=$(date +%s)
R=${RUNS:-/tmp/runs}; mkdir -p "$R" "$OUTDIR"
echo "invocation at $(date -u +%FT%TZ)" >> "$R/status"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
command -v nvidia-smi >/dev/null && { nvidia-smi -L; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 > "$OUTDIR/gpu-util.csv" & }
"${PY:-python3}" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
PY=${PY:-python3}
TRAIN=${TRAIN:-'{epochs: 50, batch_size: 128, lr: 0.1, nesterov: true, weight_decay: 5.0e-4, warmup_epochs: 1, augment: {crop_padding: 2, hflip: true}, augment_views: 8}'}
read -ra EXTRA_ARGS <<< "${EXTRA:-}"
left() { local l=$(( DEADLINE - ($(date +%s) - START) )); echo $(( l > 1 ? l : 1 )); }
split() {  # group seed tag variants
  local g=$1 s=$2 tag=$3 v=$4 d=$R/$1-$3$2
  [ -d "$d" ] || cp -r "$R/$g" "$d"
  timeout -k 20 -s INT "$(left)" "$PY" -m edgekd run "benchmarks/ablation/$g.yaml" --device x86-cpu $SMOKE "${EXTRA_ARGS[@]}" --out "$d" \
    --set "ablation={seeds: [$s], variants: [$v], train: $TRAIN}" >> "$d.log" 2>&1
  echo "$g $tag $s rc=$?" | tee -a "$R/status"
}
group() {  # group  then (tag variants)...
  local g=$1; shift
  OMP_NUM_THREADS=${PHASE1_THREADS:-1} MKL_NUM_THREADS=${PHASE1_THREADS:-1} timeout -k 20 -s INT "$(left)" "$PY" -m edgekd run "benchmarks/ablation/$g.yaml" \
    --device x86-cpu $SMOKE "${EXTRA_ARGS[@]}" --out "$R/$g" >> "$R/$g.log" 2>&1 || { echo "$g phase1 failed" | tee -a "$R/status"; return; }
  echo "$g phase1 done at $(( $(date +%s) - START )) s" | tee -a "$R/status"
  while [ $# -gt 0 ]; do
    for s in 0 1 2; do split "$g" "$s" "$1" "$2" & done
    shift 2
  done
  wait
}
GROUPS_RUN=" ${ONLY:-r20 r56} "
[[ $GROUPS_RUN == *" r20 "* ]] && group r20 a "${R20_VARIANTS:-no-kd, kd, dkd}" &
if [[ $GROUPS_RUN == *" r56 "* ]]; then
  if [[ -n ${R56_VARIANTS:-} ]]; then group r56 a "$R56_VARIANTS" & else group r56 a "kd, takd" g "ta-grid" & fi
fi
wait
echo "phase 2 ended at $(( $(date +%s) - START )) s" | tee -a "$R/status"
"$PY" benchmarks/ablation/merge.py "$R" "$OUTDIR" 2>&1 | tee "$R/merge.log"
cp "$R/status" "$OUTDIR/"
(cd "$R" && tar czf "$OUTDIR/runs.tgz" --exclude='*.pt' --exclude='*.npy' --exclude='*.npz' --exclude='*.onnx' .)
echo "total $(( $(date +%s) - START )) s"
