"""Read ncnn ``.param``/``.bin`` pairs into the PyTorch state dict the ``.pth`` files give.

The official Real-ESRGAN ncnn files carry the same trained weights as the ``.pth`` releases.
The ``.param`` file is text: the magic ``7767517``, a layer and blob count, then one layer a
line (``type name n_in n_out inputs... outputs... key=value...``; a negative key ``-233NN``
is an array). The ``.bin`` file holds, in layer order, each Convolution's weights behind a
4-byte storage tag (float16 or float32) and its float32 bias without a tag, and each PReLU's
float32 slopes without a tag. Weighted layers map in file order onto the state-dict keys.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import architectures
from ..errors import ModelError, UnsupportedModelError

if TYPE_CHECKING:
    import torch

MAGIC = "7767517"
TAG_FLOAT16 = 0x01306B47
TAG_FLOAT32 = 0


@dataclass
class NcnnLayer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str | list[str]]

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        return int(value) if isinstance(value, (str, int)) else default


@dataclass
class NcnnModel:
    """The weights of an ncnn model as a canonical state dict, plus its output resize."""

    state: dict[str, Any]
    """torch tensors from ``read_ncnn``; float32 numpy arrays from ``read_ncnn_arrays``."""
    post_resize: float | None
    layers: list[NcnnLayer]


def accept(prefix: bytes) -> bool:
    """True when a file starts like an ncnn ``.param`` file."""
    return prefix.lstrip().startswith(MAGIC.encode())


def parse_param(text: str, source: str = "model") -> list[NcnnLayer]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != MAGIC:
        msg = f"{source} is not an ncnn .param file (it should start with {MAGIC})"
        raise ModelError(msg)
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        try:
            layers.append(_parse_layer(line))
        except (IndexError, ValueError):
            msg = f"{source} line {number} is not a valid ncnn layer; the file is damaged"
            raise ModelError(msg) from None
    return layers


def _parse_layer(line: str) -> NcnnLayer:
    fields = line.split()
    kind, name = fields[0], fields[1]
    n_in, n_out = int(fields[2]), int(fields[3])
    inputs = fields[4 : 4 + n_in]
    outputs = fields[4 + n_in : 4 + n_in + n_out]
    params: dict[int, str | list[str]] = {}
    for item in fields[4 + n_in + n_out :]:
        key_text, _, value = item.partition("=")
        key = int(key_text)
        if key <= -23300:
            # Array parameter: "-233NN=count,v1,v2,..." stands for key NN.
            params[-key - 23300] = value.split(",")[1:]
        else:
            params[key] = value
    return NcnnLayer(kind, name, inputs, outputs, params)


class _BinReader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def _take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            msg = (
                f"{self.source} ends early; the .bin file is truncated or does not match "
                "the .param"
            )
            raise ModelError(msg)
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == TAG_FLOAT16:
            return np.frombuffer(self._take(2 * count), dtype="<f2").astype(np.float32)
        if tag == TAG_FLOAT32:
            return np.frombuffer(self._take(4 * count), dtype="<f4").copy()
        msg = f"{self.source} stores weights in a format realscale cannot read (tag {tag:#x})"
        raise UnsupportedModelError(msg)

    def raw(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").copy()


def _weighted_layers(layers: list[NcnnLayer], reader: _BinReader) -> list[tuple[str, list]]:
    """(kind, tensors) for each layer that carries weights, in file order."""
    found: list[tuple[str, list]] = []
    for layer in layers:
        if layer.kind == "Convolution":
            out_ch = layer.int_param(0)
            kernel = layer.int_param(1)
            size = layer.int_param(6)
            in_ch = size // (out_ch * kernel * kernel)
            weight = reader.tagged(size).reshape(out_ch, in_ch, kernel, kernel)
            tensors = [weight]
            if layer.int_param(5):
                tensors.append(reader.raw(out_ch))
            found.append(("conv", tensors))
        elif layer.kind == "PReLU":
            found.append(("prelu", [reader.raw(layer.int_param(0))]))
        elif layer.kind in ("Deconvolution", "InnerProduct", "ConvolutionDepthWise"):
            msg = f"{reader.source} uses a {layer.kind} layer, which no supported model has"
            raise UnsupportedModelError(msg)
    return found


def _post_resize(layers: list[NcnnLayer]) -> float | None:
    """The factor of a bicubic Interp applied to the network output, if the graph ends so."""
    last = layers[-1]
    if last.kind == "Interp" and last.int_param(0) == 3:
        factor = float(str(last.params.get(1, "1")))
        return factor
    return None


def read_ncnn(param_path: Path, bin_path: Path) -> NcnnModel:
    """Convert an ncnn model to a canonical state dict (about 0.2 s for x4plus)."""
    import torch

    model = read_ncnn_arrays(param_path, bin_path)
    state: dict[str, torch.Tensor] = {k: torch.from_numpy(v) for k, v in model.state.items()}
    return NcnnModel(state=state, post_resize=model.post_resize, layers=model.layers)


def read_ncnn_arrays(param_path: Path, bin_path: Path) -> NcnnModel:
    """The canonical state dict as float32 numpy arrays: without torch (for ONNX Runtime)."""
    source = param_path.name
    try:
        text = param_path.read_text(encoding="utf-8")
        data = bin_path.read_bytes()
    except OSError as exc:
        msg = f"cannot read the ncnn model {param_path} / {bin_path}: {exc.strerror}"
        raise ModelError(msg) from None
    layers = parse_param(text, source)
    reader = _BinReader(data, bin_path.name)
    weighted = _weighted_layers(layers, reader)
    if reader.pos != len(data):
        msg = f"{bin_path.name} has {len(data) - reader.pos} bytes more than {source} describes"
        raise ModelError(msg)
    # Each architecture knows how its weighted layers map onto its keys (registry order).
    for arch in architectures.ARCHITECTURES:
        found = arch.ncnn_state(weighted, source)
        if found is not None:
            state: dict[str, np.ndarray] = found
            break
    else:
        msg = f"{source} has {len(weighted)} convolutions, which fits no supported network"
        raise UnsupportedModelError(msg)
    return NcnnModel(state=state, post_resize=_post_resize(layers), layers=layers)
