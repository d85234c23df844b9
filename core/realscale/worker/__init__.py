"""The realscale worker: a long-lived process that hosts (GIMP, Krita, Resolve) call.

``server`` holds the request loop (the framing, message types and error kinds are
``realscale.wire``, shared with the host client), ``models`` the loaded models and the model
files a request may name, ``commands`` the ``worker`` sub-command.
"""
