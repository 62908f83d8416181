#!/usr/bin/env bash
# Dress rehearsal of the `paper` profile: every notebook on a miniature data root, for a few steps.
#
#   scripts/rehearse.sh [DIR]     (default DIR: the checkout's ignored data/rehearsal/)
#
# 1. `python -m avlib.data.rehearsal DIR/root` writes the miniature data root (docs/datasets.md layouts,
#    made from the synthetic world; re-used when already there).
# 2. Pretraining (notebook 01's work) runs under `torchrun --nproc_per_node 2 -m avlib.tasks.pretrain`
#    (gloo on CPU), into DIR/checkpoints/.
# 3. Every notebook (00-06) runs with `--profile paper --data-root DIR/root` into DIR/results/paper/ (never
#    results/paper/); notebook 01 finds the finished pretraining and only evaluates and plots.
#
# The paper's full architecture and input sizes (125 frames of 224 x 224, 4.2 s of 21 kHz audio, the
# full-width networks, the official-shape I3D); only steps, batch sizes and evaluation sizes are
# overridden (OVERRIDES below), the same for the torchrun task and the notebooks. Tables and figures
# are marked as a rehearsal's (the data root holds REHEARSAL.md). Environment:
#   REHEARSAL_SET="key=value ..."   extra overrides, appended (e.g. to try one setting)
#   REHEARSAL_DEVICE=cpu|cuda|auto  where to run (default: cpu)
#   REHEARSAL_ONLY=NN[,NN]          notebooks to run (default: all; pretraining runs when 01 or a later one is selected)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=${1:-data/rehearsal}
device=${REHEARSAL_DEVICE:-cpu}
only=${REHEARSAL_ONLY:-}
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python; fi
# this checkout's avlib, also in the notebook kernels (which start in notebooks/)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONHASHSEED=0 AVLIB_THREADS=${AVLIB_THREADS:-2}
export OMP_NUM_THREADS=$AVLIB_THREADS MKL_NUM_THREADS=$AVLIB_THREADS

OVERRIDES=(
  # pretraining: one step per stage, one clip per process, one held-out pair per clip
  pretrain.stages.0.batch_size=2 pretrain.stages.0.steps=1 pretrain.stages.1.batch_size=2 pretrain.stages.1.steps=2
  pretrain.eval_every=1 pretrain.eval_pairs_per_video=1
  pretrain.train.checkpoint_every=1 pretrain.train.log_every=1 pretrain.train.workers=1
  # CAM: one fine-tuning step, one held-out clip mapped by windows that do not overlap (3 instead of 4 on a 10 s clip)
  cam.fine_tune_steps=1 cam.fine_tune_batch=1 cam.eval_clips=1 cam.eval_frame_stride=30 cam.bootstrap=20 cam.top_frames=1
  cam.hop=1.0
  # UCF-101: one step of one clip per row, one test clip per video, one test video for the training curve
  ucf101.batch_size=1 ucf101.train.steps=1 "ucf101.train.lr_milestones=[]" ucf101.train.checkpoint_every=1
  ucf101.train.log_every=1 ucf101.train.workers=1 ucf101.test_clips=1 ucf101.eval_every=1 ucf101.curve_videos=1
  ucf101.eval_batch=2 ucf101.probe_steps=1 "ucf101.probe_milestones=()"
  # separation and its ablations: one step per model, two test mixtures
  separation.train.steps=1 "separation.train.lr_milestones=[]" separation.train.checkpoint_every=1
  separation.train.log_every=1 separation.train.workers=1 separation.batch_size=2 separation.pit_steps=1
  separation.pit_batch_size=2 separation.test_pairs=2 separation.eval_batch=2 separation.examples_shown=1
  ablations.steps=1 ablations.i3d_test_clips=1 ablations.i3d_batch_size=2
)
# shellcheck disable=SC2206
OVERRIDES+=(${REHEARSAL_SET:-})

dir=$(mkdir -p "$dir" && cd "$dir" && pwd)  # absolute: the notebooks run in notebooks/
root="$dir/root" checkpoints="$dir/checkpoints"
echo "== rehearsal data root: $root"
"$PY" -m avlib.data.rehearsal "$root"
echo "   ${SECONDS} s"

if [[ -z $only || $only =~ (01|02|03|04|05|06) ]]; then
  echo "== pretraining under torchrun, 2 processes (one thread each)"
  AVLIB_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m avlib.tasks.pretrain --profile paper --data-root "$root" --checkpoints "$checkpoints" --out "$dir/runs/pretrain" \
    --device "$device" "${OVERRIDES[@]}"
  echo "   ${SECONDS} s"
fi

echo "== notebooks, paper profile, into $dir/results/paper/"
args=(--profile paper --data-root "$root" --results-root "$dir/results" --checkpoint-root "$checkpoints"
      --device "$device" --set "${OVERRIDES[*]}")
[[ -n $only ]] && args+=(--only "$only")
exec "$PY" -m avlib.notebooks "${args[@]}"
