"""Train a RocketQAv2 retriever and re-ranker jointly.

    python train.py                                   # bundled SciFact + offline MiniLM, 3 joint epochs
    python train.py configs/scifact.yaml --epochs 2   # a preset, with flags overriding it
    python train.py configs/scifact-augmented.yaml    # warm-up -> hybrid data augmentation -> joint training
    accelerate launch train.py configs/msmarco.yaml   # several GPUs

Writes OUTPUT/retriever, OUTPUT/reranker (from_pretrained-ready), metrics.json and checkpoints. Installed as
``rq2-train`` too (``modeling_rq2.training.chain:main``).
"""

from modeling_rq2.cli import train

if __name__ == "__main__":
    train()
