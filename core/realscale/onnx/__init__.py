"""ONNX: build a model's graph from its weights (no torch), export it, load exported files.

``graph.build`` makes the graph, ``models.load_arrays`` loads weights without torch, and
``commands`` adds ``realscale export-onnx``. The ONNX Runtime engine is in
``realscale.backends.ort``. Needs the ``onnx`` package (a dependency of realscale).
"""
