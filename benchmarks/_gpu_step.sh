# Shared prelude of the GPU batches (gpu_suite.sh, gpu_suite_b.sh): sourced, not run.
# Sets PYTHONPATH, DATA, BUDGET (default $1), R and T0, prints the GPU, and defines
#   step NAME LIMIT_SECONDS command...
# which runs the command under `timeout`, shortened to what is left of BUDGET seconds,
# and skips it when less than 10 s are left.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
DATA=${DATA:-../shared/data/mnist}
BUDGET=${BUDGET:-$1}
R=benchmarks/results
mkdir -p "$R" "$OUT"
T0=$(date +%s)
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then echo "=== SKIP $name (budget spent)"; return; fi
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  timeout "$limit" "$@"; echo "=== $name rc=$? after $(( $(date +%s) - T0 ))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
