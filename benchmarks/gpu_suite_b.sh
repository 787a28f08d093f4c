#!/usr/bin/env bash
# The second GPU batch (2026-11-27, evening): the figures the first batch
# (benchmarks/gpu_suite.sh) ran out of time for, on the binary fast step and the
# hand-written fine-tuning backward pass.
# Usage (from the repo root): OUT=/some/folder DATA=path/to/mnist BUDGET=560 bash benchmarks/gpu_suite_b.sh
# Each step has its own time limit and the batch stops starting steps near BUDGET seconds.
# Results: benchmarks/results/*_h100*.json, figures under docs/, all in $OUT/results.tgz;
# the log is what the command prints (kept as benchmarks/results/gpu_suite_b_h100_log.txt).
source "$(dirname "$0")/_gpu_step.sh" 560
step gpu-tests 40 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_finetune_fast.py
step loglik 160 python3 benchmarks/mnist_loglik.py --device cuda --data-dir "$DATA" --epochs 100 --layer2-epochs 40 \
  --figure docs/mnist_loglik.png --out $R/mnist_loglik_h100.json
step nrelu-mnist 100 python3 benchmarks/realvalued_nrelu_mnist.py --device cuda --data-dir "$DATA" --epochs 20 \
  --finetune-epochs 20 --out $R/realvalued_mnist_h100.json
step lecture14 110 python3 benchmarks/reproduce_lecture14.py --device cuda --data-dir "$DATA" --out $R/lecture14_h100.json
step cd-throughput 25 python3 benchmarks/cd_throughput.py --gpu --device cuda --data-dir "$DATA" --out $R/cd_throughput_h100_b.json
[ -f benchmarks/finetune_throughput.py ] && step finetune-throughput 25 python3 benchmarks/finetune_throughput.py \
  --device cuda --data-dir "$DATA" --out $R/finetune_throughput_h100.json
step scaling 40 python3 benchmarks/scaling.py --device cuda --data-dir "$DATA" --out $R/scaling_h100.json \
  --table docs/scaling-cuda.md --plot docs/scaling-cuda.png
step hinton2006 100 python3 benchmarks/mnist_hinton2006.py --device cuda --data-dir "$DATA" --out $R/hinton2006_h100_b.json
step erhan 200 python3 benchmarks/reproduce_erhan.py --device cuda --data-dir "$DATA" --out $R/erhan_h100.json
tar czf "$OUT/results.tgz" $R docs
echo "=== done after $(( $(date +%s) - T0 ))s"
