"""Train a RocketQAv2 retriever and re-ranker jointly.

    python train.py                                   # bundled SciFact + offline MiniLM, 3 joint epochs
    python train.py configs/scifact.yaml --epochs 2   # a preset, with flags overriding it
    python train.py configs/scifact-augmented.yaml    # warm-up -> hybrid data augmentation -> joint training
    accelerate launch train.py configs/msmarco.yaml   # several GPUs

Writes OUTPUT/retriever, OUTPUT/reranker (from_pretrained-ready), metrics.json and checkpoints.
"""

import sys

from modeling_rq2.training.chain import run_training
from modeling_rq2.training.config_files import parse_arguments

if __name__ == "__main__":
    run_training(*parse_arguments(sys.argv[1:]))
