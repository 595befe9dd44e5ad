"""ricl's applications, apart from the library (as ``open_clip_train`` is apart from
``open_clip``): the ``ricl`` command line, the demo, evaluation runs and experiment grids
with their reports, and encoder / VLM training.

The library (:mod:`ricl`) never imports this package (``tests/test_layers.py`` reads the
import graph and fails on a wrong-way import); everything here builds on the library's
public modules.
"""
