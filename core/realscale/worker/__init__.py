"""The realscale worker: a long-lived process that hosts (GIMP, Krita, Resolve) call.

``protocol`` holds the framing (loaded from the host client, its one source), ``server``
the request loop, ``models`` the loaded models and the model files a request may name,
``commands`` the ``worker``, ``install``, ``uninstall``, ``package`` and ``doctor``
sub-commands.
"""
