#!/usr/bin/env bash
# The GPU benchmark batch, run once on a lent H100 within a fixed time budget.
# Usage (from the repo root): OUT=/some/folder DATA=path/to/mnist bash benchmarks/gpu_suite.sh
# Each step has its own time limit and the whole batch stops starting steps near BUDGET
# seconds, so one slow step cannot take the others' time. Results: benchmarks/results/*.json
# and PNGs under docs/, collected into $OUT/results.tgz at the end.
source "$(dirname "$0")/_gpu_step.sh" 530
step gpu-tests 40 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_rbm.py
step hinton2006 110 python3 benchmarks/mnist_hinton2006.py --device cuda --data-dir "$DATA" --out $R/hinton2006_h100.json
step hot2006 120 python3 benchmarks/mnist_hot2006.py --device cuda --data-dir "$DATA" --pretrain-epochs 30 --updown-epochs 30 --out $R/hot2006_updown_h100.json
step loglik 100 python3 benchmarks/mnist_loglik.py --device cuda --data-dir "$DATA" --epochs 100 --layer2-epochs 40 --figure docs/mnist_loglik.png --out $R/mnist_loglik_h100.json
step cd-throughput 40 python3 benchmarks/cd_throughput.py --gpu --device cuda --data-dir "$DATA" --out $R/cd_throughput_h100.json
step patches 50 python3 benchmarks/realvalued_patches.py --device cuda --out $R/realvalued_patches_h100.json
step nrelu-mnist 70 python3 benchmarks/realvalued_nrelu_mnist.py --device cuda --data-dir "$DATA" --epochs 20 --finetune-epochs 20 --out $R/realvalued_mnist_h100.json
step lecture14 60 python3 benchmarks/reproduce_lecture14.py --device cuda --data-dir "$DATA" --out $R/lecture14_h100.json
step erhan 70 python3 benchmarks/reproduce_erhan.py --device cuda --data-dir "$DATA" --out $R/erhan_h100.json
step scaling 30 python3 benchmarks/scaling.py --device cuda --data-dir "$DATA" --out $R/scaling_h100.json --table docs/scaling-cuda.md --plot docs/scaling-cuda.png
tar czf "$OUT/results.tgz" $R docs
echo "=== done after $(( $(date +%s) - T0 ))s"
