"""Hashing methods as plug-ins of one training engine (``deephash.train.trainer.Trainer``).

The engine owns everything methods share: the run config (``TrainConfig``, with ``method`` and the
method's ``method_options``), device and rank, the uint8 training arrays, seeded epoch batches, the
optimiser (sgd/adam/adamw over the method's parameter groups), the LR schedule with warmup, mirror and
crop augmentation, the frozen-backbone feature store, an atomic checkpoint every epoch
(``deephash-train/2``) that resumes exactly, the progress bar and the per-epoch history.

A method is a ``deephash.runs.Method`` subclass in a module of this package, registered with
``@register_method``; the registry imports every module here when a method is first looked up, so a new method
is one new file (and its tests) with nothing else to edit. It supplies:

- ``Options`` (a dataclass of its own settings) and ``defaults`` (the TrainConfig values it starts from);
- ``build_model(num_classes)``: its network, from the config alone (also used to load checkpoints);
- ``prepare(data)``/``setup(model, data)``: per-run extras (IAH: proposals; DSH: input normalisation);
- ``parameter_groups(model)``;
- ``frozen_store(model, images)``: (views, N, ...) what a frozen backbone gives per image and mirror;
- ``forward(model, x, idx, flipped, stored)``: a batch of images (or stored features) to outputs;
- ``objective(outputs, labels)``: {"loss": total, terms...}, every term logged in the history;
- ``state()``/``load_state()``: its RNG state (e.g. sampling miners) for exact resume;
- ``encode(model, dataset, ..., rows=None)`` → ``Encoded`` (semantic codes; IAH also category codes, probs,
  boxes); ``rows`` [lo, hi) encodes one shard (``deephash encode --shard``, torchrun).

and says what it can do by class flags (``Method``'s docstring). The pooled-network methods (``dsh``, ``dpsh``,
``hashnet``, ``greedyhash``, ``csq``, docs/methods.md; ``itq``, unsupervised, fitted in closed form) are siblings
on ``pooled.PooledMethod``; ``iah`` stands alone. Opening a trained run (any method, any checkpoint format) and
encoding with it is ``deephash.runs`` (``load_trained``, ``Run``, ``encode``).
"""
