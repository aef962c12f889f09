"""The toy world and the embedded toy model: everything the demo, the offline benchmark and the tests need
without downloading weights (docs/toy.md).

It depends on the core (models, pipeline, data, training, evaluation) and the core never imports it:

- ``world``: procedural subjects with an identity, scenes, renders, held-out test cases;
- ``dataset``: base-training examples rendered on the fly, and ``ToyWorldData`` for ``train --toy-world``;
- ``write``: the world written to disk in the project's data formats (``toy world``);
- ``recipe`` and ``stages``: training every component of the toy model on a CPU (``toy train``);
- ``export``: a finished run into the package's embedded weights (``toy export``; ``weights/`` holds them);
- ``evaluator``: the identity encoder that scores painted subjects; ``outline``: the painted outline's reader;
- ``bench``: the offline benchmark (``bench toy``); ``demo``: the grid picture of ``subject-inpaint demo``.
"""
