"""The worker's loaded models, and which model files a request may name."""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..loading import MODEL_SUFFIXES, names_a_file

if TYPE_CHECKING:
    from ..upscale import Upscaler


class ModelCache:
    """Upscalers by (model, device, precision, backend), most recently used kept; thread-safe."""

    def __init__(self, model_dirs: Sequence[str | os.PathLike[str]] = (), keep: int = 3) -> None:
        self.model_dirs = [Path(d).expanduser().resolve() for d in model_dirs]
        self.keep = max(1, keep)
        self._items: collections.OrderedDict[tuple[str, str, str, str], Upscaler] = (
            collections.OrderedDict())
        self.lock = threading.Lock()
        """Held around each upscale: one network at a time, whatever the number of sessions."""

    def resolve(self, spec: str) -> str:
        """A catalogue name, or the real path of a weights file inside a model folder.

        Paths in a request are never followed outside the configured model folders: a host
        (or anything that can write to the worker) cannot make it unpickle arbitrary files.
        """
        from .. import catalogue

        text = spec.strip()
        if not text:
            raise ModelError("The request names no model.")
        if not names_a_file(text):
            return catalogue.get(text).name
        if not self.model_dirs:
            msg = (
                f"Model files such as {text!r} can only be used from a model folder; start the "
                "worker with --model-dir DIR (or `realscale install --model-dir DIR`)."
            )
            raise ModelError(msg)
        candidates = [Path(text)] if os.path.isabs(text) else [d / text for d in self.model_dirs]
        for candidate in candidates:
            try:
                real = candidate.resolve()
                found = self._inside(real) and real.is_file()
            except (OSError, ValueError):  # a loop of links, a NUL in the name
                continue
            if found:
                self._check_companions(real, text)
                return str(real)
        folders = ", ".join(map(str, self.model_dirs))
        msg = f"Model file {text!r} is not in a model folder ({folders}); copy it there."
        raise ModelError(msg)

    def _inside(self, real: Path) -> bool:
        return any(real.is_relative_to(folder) for folder in self.model_dirs)

    def _check_companions(self, real: Path, text: str) -> None:
        """An ncnn pair is read as two files: the loaders open the ``.bin`` beside a
        ``.param`` (and the ``.param`` beside a ``.bin``), so that file must lie inside a
        model folder too, symlinks resolved."""
        suffix = real.suffix.lower()
        if suffix == ".param":
            companions = [real.with_suffix(".bin")]
        elif suffix == ".bin":
            companions = [real.with_suffix(".param"), real.with_suffix(".PARAM")]
        else:
            return
        for companion in companions:
            if os.path.lexists(companion) and not self._inside(companion.resolve()):
                msg = (f"Model file {text!r} comes with {companion.name}, which leads outside "
                       "the model folders; copy the real file there.")
                raise ModelError(msg)

    def get(self, spec: str, device: str, precision: str, allow_download: bool,
            backend: str = "auto") -> Upscaler:
        from ..upscale import Upscaler

        key = (self.resolve(spec), device, precision, backend)
        upscaler = self._items.get(key)
        if upscaler is None:
            upscaler = Upscaler(key[0], device=device, precision=precision,
                                allow_download=allow_download, backend=backend)
            self._items[key] = upscaler
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return upscaler

    def loaded(self) -> list[dict[str, str]]:
        return [{"model": m, "device": d, "precision": pr, "backend": b}
                for m, d, pr, b in self._items]

    def catalogue(self) -> list[dict[str, Any]]:
        from .. import catalogue

        rows: list[dict[str, Any]] = []
        for entry in catalogue.entries():
            cached = any(
                (catalogue.cache_dir() / s.filename).is_file()
                for s in entry.sources if isinstance(s, catalogue.UrlSource)
            )
            rows.append({
                "name": entry.name, "scale": entry.scale, "architecture": entry.architecture,
                "embedded": entry.embedded, "default": entry.default, "licence": entry.licence,
                "description": entry.description, "available": entry.embedded or cached,
            })
        for folder in self.model_dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in MODEL_SUFFIXES or not self._usable(path):
                    continue
                rows.append({
                    "name": path.name, "scale": None, "architecture": None,
                    "embedded": False, "default": False, "licence": None,
                    "description": f"user weights in {folder}", "available": True,
                })
        return rows

    def _usable(self, path: Path) -> bool:
        """Whether a request naming this file would be served (only those are listed)."""
        try:
            self.resolve(str(path))
        except ModelError:
            return False
        return True
