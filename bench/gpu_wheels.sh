#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for bench/gpu_check.sh (its Python is 3.12; nothing can be fetched there):
# the versions this project is tested with. Run here; .whl/ is kept out of git (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
WHEELS=(
    transformers==5.25.0 huggingface-hub==2.4.0 tokenizers==0.23.3 kernels==0.19.1 tomlkit httpx2==2.17.0
    httpcore2 truststore accelerate==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 bm25s==0.3.16
    faiss-cpu==1.15.1 safetensors==0.8.0 regex==2026.12.2
)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
du -sh .whl
