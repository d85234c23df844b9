"""ONNX: build a model's graph from its weights (no torch), export it, load exported files.

``graph.build`` makes the graph, ``models.read_onnx_file`` reads an exported file's
descriptor, and ``commands`` adds ``realscale export-onnx`` (weights load through
``realscale.loading``, as numpy arrays). The ONNX Runtime engine is in
``realscale.backends.ort``. Needs the ``onnx`` package (a dependency of realscale).
"""
