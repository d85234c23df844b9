"""The sample clip and tiny models (tests/fakes/fixtures.py)."""

from fakes.fixtures import identity_model, sample, tiny_model

__all__ = ["identity_model", "sample", "tiny_model"]
