#!/usr/bin/env bash
# Every GPU check in one run of under 10 minutes (prepared in advance: a GPU is lent to a session
# only by chance, for 15 minutes in all). Results land in $OUT (default ./gpu_out):
#   gpu_check.json  mixed-precision checks (issue 12): KL exactly 0 at iteration 1 in bf16, fp16
#                   loss scaling in every stage, the CUDA generator left as seeded
#   gpu_scale.json  bigger models (issue 15): bf16 tiny PPO and GRPO, GPT-2-small PPO full and
#                   LoRA, a ~1B policy with LoRA + shared value head: s/iteration, tokens/s,
#                   peak GPU memory, MFU
# The machine's Python must have torch (CUDA) and transformers; wheels of what it may lack
# (omegaconf, antlr4-python3-runtime, peft) are installed from .gpu-wheels/ when present:
#   pip download --no-deps omegaconf antlr4-python3-runtime==4.9.3 peft -d .gpu-wheels
# and pass .gpu-wheels in the device run's `carry`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH=src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if compgen -G ".gpu-wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/rlhf-site .gpu-wheels/*.whl && export PYTHONPATH=src:/tmp/rlhf-site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 benchmarks/gpu_scale.py --out "$OUT" > "$OUT/gpu_scale.log" 2>&1
tail -25 "$OUT/gpu_scale.log"
timeout 200 python3 benchmarks/gpu_check.py --out "$OUT" > "$OUT/gpu_check.log" 2>&1
tail -25 "$OUT/gpu_check.log"
