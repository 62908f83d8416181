#!/usr/bin/env bash
# Reproduce the companion's experiments, or run its tests.
#
#   ./reproduce.sh [options]        set up if needed, then run every notebook into results/<profile>/
#   ./reproduce.sh test [pytest args] set up if needed, then run the whole test suite
#
# Options (experiments):
#   --profile smoke|synth|paper   size of the run (default: synth)
#   --only NN[,NN]                run only these notebooks (e.g. --only 01 or --only 00,01)
#   --data-root DIR               real datasets for the paper profile (see docs/datasets.md)
#   --device cpu|cuda|auto        where to train (default: auto)
#   --seed N                      seed of every notebook (default: 0)
#   --force                       re-run notebooks that are up to date
#   --set "key=value ..."         config overrides for every notebook (avlib.config keys, e.g. cam.eval_clips=2)
#   --setup-only                  create/refresh the environment and stop
#
# A notebook whose source, avlib code, parameters and inputs are unchanged since its last
# successful run is skipped. Every run ends by rewriting results/README.md (the index, with
# the time budget) and results/<profile>/tables/paper_comparison.{csv,md}.
#
# Set-up: a conda environment made from environment.yml is used when active; otherwise a
# virtual environment .venv is created with pip from requirements.txt (torch pinned) and
# avlib installed editable. A second run re-uses it and starts in seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

mode=run
if [[ "${1:-}" == "test" ]]; then mode=test; shift; fi

profile=synth only="" data_root="" device=auto seed=0 setup_only=0 force=0
pytest_args=() sets=()
while [[ $# -gt 0 ]]; do
  if [[ $mode == test ]]; then pytest_args+=("$1"); shift; continue; fi
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --data-root) data_root="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    --force) force=1; shift ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "reproduce.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

setup() {
  if [[ "${CONDA_DEFAULT_ENV:-}" == "multisensory" ]] && python -c "import avlib" 2>/dev/null; then
    PY=python
    return
  fi
  local stamp=.venv/.avlib-setup
  local want
  want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ -x .venv/bin/python && -f $stamp && "$(cat $stamp)" == "$want" ]]; then
    PY=.venv/bin/python
    return
  fi
  echo "== set-up: creating .venv and installing requirements.txt (first run only)"
  local base=${PYTHON:-python3}
  "$base" -m venv .venv
  # (the filter drops pip's notes about absent local index folders on some machines)
  .venv/bin/python -m pip install --quiet -r requirements.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | { grep -vE "^WARNING: Location|BuildBackendWarning" || true; }
  # papermill needs a named kernel; install it inside the venv so nothing outside changes.
  .venv/bin/python -m ipykernel install --sys-prefix --name avlib --display-name "avlib (.venv)" >/dev/null
  echo "$want" > $stamp
  PY=.venv/bin/python
}

setup
export PYTHONHASHSEED=0
# torch's thread count decides CPU sums bit for bit: fixed from the process's start (avlib/determinism.py)
export AVLIB_THREADS=${AVLIB_THREADS:-2}
export OMP_NUM_THREADS=$AVLIB_THREADS MKL_NUM_THREADS=$AVLIB_THREADS
if [[ $setup_only == 1 ]]; then echo "== set-up done: $PY"; exit 0; fi

if [[ $mode == test ]]; then
  exec "$PY" -m pytest "${pytest_args[@]}"
fi

args=(--profile "$profile" --device "$device" --seed "$seed")
[[ -n $only ]] && args+=(--only "$only")
[[ -n $data_root ]] && args+=(--data-root "$data_root")
[[ $force == 1 ]] && args+=(--force)
args+=("${sets[@]}")
exec "$PY" -m avlib.notebooks "${args[@]}"
