#!/usr/bin/env bash
# Reproduce the companion's experiments, or run its tests.
#
#   ./reproduce.sh [options]        set up if needed, then run every notebook into results/<profile>/
#   ./reproduce.sh test [pytest args] set up if needed, then run the whole test suite
#   ./reproduce.sh lab [jupyter lab args]  set up if needed, then open JupyterLab on the notebooks
#                                   (notebooks/NN_*.py open as notebooks; a notebook run by hand writes
#                                   into results/<profile>-interactive/, never into the recorded results)
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
# successful run, and whose products outside results/ (the synthetic world under data/, the
# pretrained checkpoint) still exist, is skipped. While a notebook runs, a line shows its cell
# (n/N), the training step and the time left, estimated from its last run. Every run ends by
# rewriting results/README.md (the index, with the time budget) and
# results/<profile>/tables/paper_comparison.{csv,md}.
#
# Set-up: a conda environment made from environment.yml is used when active; otherwise a
# virtual environment .venv is created with pip from requirements.txt (torch pinned) and
# avlib installed editable. A second run re-uses it and starts in seconds. AVLIB_PYTHON=PATH
# uses that interpreter (an environment with requirements.txt installed) and skips the set-up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

mode=run
case "${1:-}" in
  test) mode=test; shift ;;
  lab) mode=lab; shift ;;
esac

# the value of option $1 (its next argument), or a clear message when it has none
value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    echo "reproduce.sh: $1 needs a value (see --help)" >&2; exit 2
  fi
}

profile=synth only="" data_root="" device=auto seed=0 setup_only=0 force=0
extra_args=()  # what follows test or lab, for pytest or jupyter lab
sets=()
while [[ $# -gt 0 ]]; do
  if [[ $mode != run ]]; then extra_args+=("$1"); shift; continue; fi
  case "$1" in
    --profile) value "$@"; profile="$2"; shift 2 ;;
    --only) value "$@"; only="$2"; shift 2 ;;
    --data-root) value "$@"; data_root="$2"; shift 2 ;;
    --device) value "$@"; device="$2"; shift 2 ;;
    --seed) value "$@"; seed="$2"; shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    --force) force=1; shift ;;
    --set) value "$@"; sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "reproduce.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $profile in smoke|synth|paper) ;; *) echo "reproduce.sh: --profile must be smoke, synth or paper, not '$profile'" >&2; exit 2 ;; esac
case $device in cpu|cuda|auto) ;; *) echo "reproduce.sh: --device must be cpu, cuda or auto, not '$device'" >&2; exit 2 ;; esac
[[ $seed =~ ^[0-9]+$ ]] || { echo "reproduce.sh: --seed must be a whole number, not '$seed'" >&2; exit 2; }
[[ -z $only || $only =~ ^[0-9]{1,2}(,[0-9]{1,2})*$ ]] || {
  echo "reproduce.sh: --only takes notebook numbers separated by commas (e.g. 01 or 00,03), not '$only'" >&2; exit 2; }

setup() {
  # AVLIB_PYTHON: an interpreter whose environment already has requirements.txt (the tests use their own)
  if [[ -n "${AVLIB_PYTHON:-}" ]]; then
    PY=$AVLIB_PYTHON
    return
  fi
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
  exec "$PY" -m pytest "${extra_args[@]}"
fi

if [[ $mode == lab ]]; then
  # Jupyter reads its configuration from jupyter/ and writes its state into the ignored .jupyter-state/:
  # nothing in the user's home (jupyter/README.md). Notebooks run by hand write into
  # results/<profile>-interactive/, never over a recorded run (AVLIB_INTERACTIVE, avlib/report/results.py).
  state=$PWD/.jupyter-state
  export JUPYTER_CONFIG_PATH=$PWD/jupyter/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}
  export JUPYTER_PATH=$PWD/jupyter/share${JUPYTER_PATH:+:$JUPYTER_PATH}
  export JUPYTER_CONFIG_DIR=$state/config JUPYTER_DATA_DIR=$state/data JUPYTER_RUNTIME_DIR=$state/runtime
  export JUPYTERLAB_SETTINGS_DIR=$state/lab/user-settings JUPYTERLAB_WORKSPACES_DIR=$state/lab/workspaces
  export IPYTHONDIR=$state/ipython MPLCONFIGDIR=$state/matplotlib NPM_CONFIG_CACHE=$state/npm
  export AVLIB_INTERACTIVE=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  if ! "$PY" -c "import jupyterlab" 2>/dev/null; then
    echo "reproduce.sh: JupyterLab is not installed in $PY's environment (it is in requirements.txt: re-run the set-up)" >&2
    exit 2
  fi
  echo "== JupyterLab on the notebooks (open notebooks/NN_*.py; results of hand runs go to results/<profile>-interactive/)"
  as_root=()  # containers and CI run as root, which Jupyter refuses unless told
  [[ $(id -u) == 0 ]] && as_root=(--allow-root)
  exec "$PY" -m jupyter lab --ServerApp.root_dir="$PWD" "${as_root[@]}" "${extra_args[@]}"
fi

args=(--profile "$profile" --device "$device" --seed "$seed")
[[ -n $only ]] && args+=(--only "$only")
[[ -n $data_root ]] && args+=(--data-root "$data_root")
[[ $force == 1 ]] && args+=(--force)
args+=("${sets[@]}")
exec "$PY" -m avlib.notebooks "${args[@]}"
