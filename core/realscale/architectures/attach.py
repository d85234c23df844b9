"""Turn a descriptor and its tensors into a torch module, the same way for every architecture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..descriptor import ModelDescriptor
from ..errors import UnsupportedModelError
from .detect import StateDict


def attach_network(descriptor: ModelDescriptor, state: StateDict,
                   network_class: Callable[..., Any]) -> ModelDescriptor:
    """Build ``network_class(**descriptor.params)`` without memory, hand it the tensors
    (random initialisation and a copy of RRDBNet's 16 million weights would cost seconds),
    and set it as the descriptor's network, in eval mode."""
    import torch

    with torch.device("meta"):
        network = network_class(**descriptor.params)
    try:
        network.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        msg = (f"{descriptor.name}: the {descriptor.architecture} tensors do not fit together "
               f"({first}); the file may be damaged")
        raise UnsupportedModelError(msg) from None
    network.eval()
    descriptor.network = network
    return descriptor
