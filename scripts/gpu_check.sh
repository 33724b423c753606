#!/usr/bin/env bash
# The checks that issues 19 and 22 leave for a GPU, as one prepared call on a lent GPU machine that has PyTorch but
# no package index (../shared/gpu/README.md). Each stage writes into $OUT as soon as it has something, so a call cut
# off at its limit keeps what it finished.
#
# Here, once:  ../shared/gpu/fetch-wheels.sh .whl && echo /.whl/ >> .git/info/exclude   (then carry: [".whl"])
# There:       COURSE_COMMIT=<short hash> bash scripts/gpu_check.sh STAGE...     (the copy there has no .git)
#
#   recipe     retrain the MMDiT with its large-batch recipe into $OUT/mmdit-gpu, then score it on 500 captions per
#              mode at CFG 2 and 3 into $OUT/mmdit_gpu_recipe.json (commit it as data/results/; issue 22)
#   notebooks  every notebook top to bottom in full mode, one at a time; $OUT/notebooks/NAME.ipynb (executed) and
#              one line per notebook in $OUT/notebook_seconds.tsv: the README's "minutes on one GPU" column
#   suite      the FAST suite with COURSE_DEVICE=cuda on 8 pytest-xdist workers, each test file (so each notebook)
#              in one worker: $OUT/suite.log, $OUT/suite.xml
#   benchmark  scripts/benchmark.py: $OUT/benchmark.txt
#   nccl       a one-process NCCL smoke test: torchrun --nproc-per-node 1, 20 MMDiT steps, into $OUT/nccl (the report)
#
# With 15 minutes of device time (starts included), the course on CUDA comes first: one call of `notebooks suite`,
# then, if time is left, one of `recipe nccl benchmark`. A stage cut off by the call's limit loses only what it had not
# written yet (each notebook is written when it ends).
#
# A dry run on the CPU checks the mechanics: OUT=/tmp/g COURSE_DEVICE=cpu COURSE_FAST=1 RECIPE_STEPS=1 RECIPE_N=4
# NOTEBOOKS=00_start_here SUITE_PATHS=tests/test_adaln.py bash scripts/gpu_check.sh recipe notebooks suite
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
export COURSE_DEVICE=${COURSE_DEVICE:-cuda} COURSE_COMMIT=${COURSE_COMMIT:-unknown}
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the course, for the notebooks' kernels too (no install there)
if ! $PY -c "import nbclient, nbval, ipywidgets" 2>/dev/null; then  # the GPU machine: the notebook runner is missing
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/gpu_check.log"; }
{ nvidia-smi 2>&1 || true; $PY -c "import torch; print('torch', torch.__version__)"; } > "$OUT/machine.txt"
# the latent caches (FAST's cuts and the full splits), built up front with the whole machine (a test worker would
# build one on its share of the threads, its notebook's timing would include it)
for fast in 1 0; do
  COURSE_FAST=$fast $PY -c "from course_utils.latents import SPLITS, load_latents; [load_latents(s) for s in SPLITS]"
done

for stage in "$@"; do
  start=$(date +%s)
  log "stage $stage: start"
  case $stage in
    recipe)
      $PY -m course_utils.retrain mmdit ${RECIPE_STEPS:+--steps $RECIPE_STEPS} --out "$OUT/mmdit-gpu" \
        > "$OUT/recipe_train.log" 2>&1 &&
      rm -f "$OUT/mmdit-gpu/snapshot.pt" &&  # weights, EMA and optimizer: too large to bring back, not needed
      $PY -m course_utils.binding "$OUT/mmdit-gpu" --recipe --n "${RECIPE_N:-500}" \
        --save "$OUT/mmdit_gpu_recipe.json" > "$OUT/recipe_score.log" 2>&1
      ;;
    notebooks)
      mkdir -p "$OUT/notebooks"
      for nb in ${NOTEBOOKS:-00_start_here 01_receptive_fields 02_unet 03_patchify_vit 04_dit_adaln 05_rope \
                 06_mmdit 07_scaling gallery}; do
        t0=$(date +%s)
        COURSE_FAST=${COURSE_FAST:-0} $PY -c "import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], 4)
try:
    nbclient.NotebookClient(nb, timeout=1800, resources={'metadata': {'path': 'notebooks'}}).execute()
finally:
    nbformat.write(nb, sys.argv[2])" "notebooks/$nb.ipynb" "$OUT/notebooks/$nb.ipynb" > "$OUT/notebooks/$nb.log" 2>&1
        printf '%s\trc=%s\tseconds=%s\n' "$nb" $? $(( $(date +%s) - t0 )) >> "$OUT/notebook_seconds.tsv"
      done
      ;;
    suite)
      options=$($PY -c "import course; print(*(a for a in course.PYTEST_ARGS if a not in ('tests', 'notebooks')))")
      COURSE_FAST=1 OMP_NUM_THREADS=2 $PY -m pytest -n 8 $options -p no:cacheprovider --junitxml "$OUT/suite.xml" \
        ${SUITE_PATHS:-tests notebooks} > "$OUT/suite.log" 2>&1  # course.py test's options, on 8 workers
      ;;
    benchmark)
      $PY scripts/benchmark.py > "$OUT/benchmark.txt" 2>&1
      ;;
    nccl)
      $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m course_utils.retrain mmdit --steps 20 \
        --out "$OUT/nccl" > "$OUT/nccl.log" 2>&1 && rm -f "$OUT/nccl/snapshot.pt" "$OUT/nccl/mmdit.pt"
      ;;
    *)
      log "unknown stage $stage (stages: recipe notebooks suite benchmark nccl)"; exit 2
      ;;
  esac
  rc=$?
  log "stage $stage: rc=$rc after $(( $(date +%s) - start )) s"
done
