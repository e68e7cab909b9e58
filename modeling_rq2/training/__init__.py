"""Joint training, by pipeline stage: ``arguments`` (the run's settings, ``RunConfig``), ``lists`` (data -> listwise
instances), ``collator`` (instances -> a typed batch), ``joint`` (both models in one module, the step's loss),
``losses``, ``trainer`` (``JointTrainer``), ``checkpoints``, ``augmentation`` and ``chain`` (warm-up -> augmentation
-> joint training), ``config_files`` (the command line and presets), ``interpolation`` (WiSE-FT of a trained model
with its starting point).

Nothing is imported here, so that ``modeling_rq2.training.arguments`` stays light (the model cards read it).
"""
