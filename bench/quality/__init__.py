"""Retrieval quality, ours beside BM25, the zero-shot backbone and sentence-transformers peers, in one run.

    python -m bench.quality                                   # peers + ours + ours_augmented, SciFact train -> test
    python -m bench.quality --systems all --seeds 42 43 44         # + ablations, 3 seeds
    python -m bench.quality --systems all --seeds 42 43 --cached_only   # the report of what has run, starting nothing
    python -m bench.quality --systems ours list_size_8 --dev_queries 200 --dev_seed 0 --output /tmp/dev  # choose
    python -m bench.quality --systems bm25 zeroshot st_biencoder st_crossencoder ours --max_train_queries 16 \
        --max_steps 2 --eval_queries 10 --corpus_limit 300 --threads 1 --output /tmp/q_smoke  # smoke: ~6 min, 1 core

Run from the repository root. Systems: ``bm25`` (bm25s); ``zeroshot`` (the backbone untrained); ``st_biencoder``
(SentenceTransformer + MultipleNegativesRankingLoss on (anchor, positive, negative_1..3) rows, batch 16, grid
``--st_lrs`` x ``--st_epochs``); ``st_biencoder_mined`` (the same on negatives from sentence-transformers'
``mine_hard_negatives`` with a positive-aware margin, at the selected bi-encoder point); ``st_crossencoder``
(CrossEncoder, ListNet or BCE with pos_weight 3, 8 queries a step, grid ``--ce_losses`` x ``--ce_lrs`` x
``--ce_epochs``, re-ranking the selected st_biencoder's top ``--rerank_top_k`` through our pipeline: pure and
z-score fused as ours); ``ours`` (``run_training``, the default recipe: 3 joint epochs); ``ours_1_epoch`` (the
peers' budget); ``ours_augmented`` (the chain, 1 + 1 epochs: ``--augment true --augment_top_n 30``; its warm-up
stage is the ``ours_1_epoch`` job's models when that job ran with the same settings and seed; ``ours`` is its
control: about as many optimizer steps, no augmentation); the ablations of ``systems.SYSTEMS`` (``--systems
ablations``), each one change to ``ours_1_epoch`` (or, for ``undenoised`` and ``denoised``, to the chain); the
levers (``--systems levers``: a second augmentation round, denoising's thresholds, the re-ranker's learning rate,
its length and the training passages' length, separate towers, the official input format), candidate changes to
the recipe, reported paired against their baseline like the ablations and chosen on a dev split.

Every system starts from the same backbone (the offline all-MiniLM-L6-v2) and trains on the same lists (each
training query, one positive and BM25 negatives from the top 50; ``build_instances`` + ``ListwiseDataset``, epoch 0)
with our lengths (query 64, passage 128 in training, 256 at evaluation, pairs 128 or ``--reranker_max_length``
for every re-ranker, ours and the CrossEncoder's). All are scored by
``modeling_rq2``'s own evaluation (exact search, top 100, trec_eval definitions). The peers' grid points are selected
on the evaluation split itself (optimistic for the peers); with several ``--seeds``, our systems and the peers'
selected points run once per seed (the grid runs at the first seed) and the report gives mean ± standard deviation,
and each ablation's difference from its baseline paired by seed. ``--dev_queries N --dev_seed S``: every system
trains on SciFact's training claims less N drawn with S and is scored on those N, where our settings are chosen;
the test split is not read. ``--out_of_domain DIR...``: every reported job's models are also scored on other
collections (a job of its own, ``<job>-ood``, so the trained job's key does not change), fused at each of
``--ood_fusions`` too; the report checks the out-of-domain goals and names the ranking best on
``--ood_choose_on`` with its figures on the other collections. ``--fusions W...``: every reported job with a
re-ranker is also scored on its evaluation split fused at each weight (``<job>-fusions``, likewise a job of its own);
the report names the best ranking, the choice of the fusion weight when that split is the dev split.

Each job (system, grid point, seed) runs in a fresh subprocess and writes WORK_DIR/<job>/result.json (its
settings and the commit it ran included; model folders and a log beside it), copied into the ledger
(OUTPUT-jobs/<job>.json), which is committed with the report. A rerun with the same settings skips completed jobs,
from WORK_DIR or, on another machine, from the ledger, so a killed benchmark resumes where it stopped (our training
runs resume from their last checkpoint) and three seeds accumulate across sessions. A job that reads another's
models (the cross-encoder its bi-encoder's, static distillation its teacher's) runs that job again where only its
ledger entry is left. A change of this package's code does not invalidate the cache: delete WORK_DIR/<job> and its
ledger entry to rerun a job. WORK_DIR defaults to outputs/bench/<name of --output>. Writes OUTPUT.json and
OUTPUT.md (default bench/results/quality). Never run in CI.

Modules: ``systems`` (the registry: what each system is, its flags, what it ablates), ``jobs`` (one function per
kind of job, run in the subprocess), ``runner`` (job folders, the cache, grids, seeds), ``report`` (summaries,
comparisons, goals, Markdown), ``__main__`` (the command line).
"""
