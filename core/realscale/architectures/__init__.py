"""The network architectures realscale runs, each with its own detect/load adapter."""
