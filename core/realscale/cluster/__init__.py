"""``--ray``: ``realscale upscale`` and ``realscale video`` spread over a Ray cluster.

The driver (the machine the command runs on) reads every input and writes every output, so
the cluster needs no shared storage: files of a batch travel as their encoded bytes, video
frames as numpy arrays through Ray's object store. Each Ray worker (an actor) loads the model
once and runs realscale's own per-file or per-frame code on what it is given, so a result is
the one a single machine of the same kind would give, bit for bit on a CPU.

- ``options``: the ``--ray`` flags (imported at every start of ``realscale``: nothing heavy).
- ``placement``: how many workers go where, from the cluster's CPUs and GPUs.
- ``models``: what the driver sends so that every worker loads the same model.
- ``worker``: what a worker does (a plain class; Ray runs it as an actor).
- ``session``, ``pool`` and ``run``: joining Ray, starting the workers, keeping a bounded
  number of items in flight, running the items of a worker that dies on the others.
- ``batch`` and ``video``: the two commands' sides of it.

docs/cluster.md says how to run it and what bounds it.
"""
