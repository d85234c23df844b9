"""Fetching official weights into the per-user cache, resumably and checksum-verified.

Only the standard library is used, so downloading works in every host's bundled Python.
Nothing here runs unless a caller asks for a download: no default code path touches the
network. A ``.pth`` file is a pickle, so nothing is kept whose sha256 has not been checked
against the catalogue.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from realscale.catalogue import (
    CatalogueEntry,
    PackageSource,
    UrlSource,
    cache_dir,
    package_files,
)
from realscale.errors import DownloadError, ModelError

Progress = Callable[[int, int | None], None]

_CHUNK = 1 << 20
_USER_AGENT = "realscale-weights-downloader/1"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def download(
    source: UrlSource,
    dest_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    timeout: float = 30,
) -> Path:
    """Download ``source`` into ``dest_dir`` (default: the cache) and return the verified file.

    A partial ``<filename>.part`` left by an interrupted call is resumed with an HTTP Range
    request; a file that is already complete and correct is returned without any request.
    ``progress(done, total)`` is called as bytes arrive; ``total`` is None when unknown.
    """
    folder = Path(dest_dir) if dest_dir is not None else cache_dir()
    final = folder / source.filename
    expected = source.sha256
    if expected is None:
        raise DownloadError(
            f"The catalogue has no verified sha256 for {source.filename}, so realscale will not "
            f"download it: fetch it yourself from {source.url} and save it as {final}."
        )
    scheme = urllib.parse.urlsplit(source.url).scheme
    if scheme not in ("https", "http"):
        raise DownloadError(f"Cannot download {source.url}: only http(s) addresses are supported.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(
            f"Cannot create the download folder {folder} ({error.strerror or error}): "
            "set REALSCALE_CACHE_DIR to a writable folder."
        ) from error

    if final.is_file():
        if _sha256(final) == expected:
            return final
        _remove(final)  # damaged or replaced since it was verified: fetch it again

    part = folder / (source.filename + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if source.size is not None and offset > source.size:
        _remove(part)
        offset = 0
    if source.size is None or offset < source.size:
        _fetch(source, part, offset, progress, timeout)

    if _sha256(part) != expected:
        _remove(part)
        raise DownloadError(
            f"The downloaded {source.filename} does not match its published sha256 and was "
            "deleted: run the download again, and report it if this keeps happening."
        )
    try:
        os.replace(part, final)
    except OSError as error:
        raise DownloadError(
            f"Cannot move the verified download to {final} ({error.strerror or error}): "
            "check the folder's permissions and run the download again."
        ) from error
    return final


def ensure_weights(entry: CatalogueEntry, *, allow_download: bool) -> Path | tuple[Path, Path]:
    """The weights for ``entry``: its embedded ``(.param, .bin)`` pair, else its cached file.

    Sources are tried in catalogue order. A download only happens when ``allow_download`` is
    True, so an upscale never reaches the network unless the user asked for it.
    """
    package_error: ModelError | None = None
    url_error: ModelError | None = None
    for source in entry.sources:
        if isinstance(source, PackageSource):
            try:
                return package_files(source)
            except ModelError as exc:
                package_error = package_error or exc
            continue
        cached = cache_dir() / source.filename
        if source.sha256 is None:
            # Only usable when the user saved the file there themselves (see the README).
            if cached.is_file():
                return cached
            url_error = url_error or ModelError(
                f"Model {entry.name!r} has no verified checksum, so realscale cannot download it: "
                f"fetch {source.url} yourself and save it as {cached}."
            )
            continue
        if allow_download:
            return download(source)
        if cached.is_file() and _sha256(cached) == source.sha256:
            return cached
        url_error = url_error or ModelError(
            f"The weights of model {entry.name!r} are not downloaded yet: "
            f"run `realscale download {entry.name}` or pass --download."
        )
    failure = url_error or package_error
    if failure is None:  # pragma: no cover - the catalogue refuses entries without sources
        failure = ModelError(f"Model {entry.name!r} lists no weights: reinstall realscale.")
    raise failure


def _fetch(
    source: UrlSource,
    part: Path,
    offset: int,
    progress: Progress | None,
    timeout: float,
) -> None:
    """Append the missing bytes to ``part``, or rewrite it when the server ignores Range."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(source.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return  # the part already holds every byte; the checksum decides
        raise DownloadError(
            f"The server answered HTTP {error.code} ({error.reason}) for {source.url}: "
            "try again later, or update realscale if the address has moved."
        ) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(
            f"Cannot reach {urllib.parse.urlsplit(source.url).netloc} ({reason}): "
            "check the network connection and run the download again."
        ) from error

    with response:
        status = response.status
        if status == 206 and offset:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                _remove(part)
                raise DownloadError(
                    f"The server sent the wrong part of {source.filename} and the partial "
                    "download was deleted: run the download again."
                )
        elif status in (200, 206):
            offset = 0  # the server ignored Range (or there was none): start from zero
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(
                f"The server answered HTTP {status} for {source.url}: try again later."
            )
        if total is None:
            total = source.size
        elif source.size is not None and total != source.size:
            _remove(part)
            raise DownloadError(
                f"The server offers {total} bytes for {source.filename} but the official file "
                f"has {source.size}: try again later, or update realscale."
            )
        _copy(response, part, offset, total, progress, source.filename)


def _copy(
    response: http.client.HTTPResponse,
    part: Path,
    done: int,
    total: int | None,
    progress: Progress | None,
    filename: str,
) -> None:
    """Stream the response body into ``part`` from byte ``done`` on, keeping what arrived."""
    try:
        handle = open(part, "r+b" if done else "wb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise DownloadError(
            f"Cannot write {part} ({error.strerror or error}): "
            "check the folder's permissions and free space, then run the download again."
        ) from error
    with handle:
        handle.seek(done)
        handle.truncate()
        if progress is not None:
            progress(done, total)
        while True:
            try:
                # read1 hands over what has arrived; read(n) would discard it on a timeout.
                chunk = response.read1(_CHUNK)
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(
                    f"The download of {filename} stopped after {done} bytes ({error}): "
                    "run it again to resume where it stopped."
                ) from error
            if not chunk:
                break
            try:
                handle.write(chunk)
            except OSError as error:
                raise DownloadError(
                    f"Cannot write {part} ({error.strerror or error}): free some disk space "
                    "and run the download again to resume."
                ) from error
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done < total:
        raise DownloadError(
            f"The connection closed after {done} of {total} bytes of {filename}: "
            "run the download again to resume where it stopped."
        )
    if total is not None and done > total:
        _remove(part)
        raise DownloadError(
            f"The server sent more than the {total} bytes it announced for {filename}, so the "
            "download was deleted: run it again."
        )


def _content_range(value: str | None) -> tuple[int, int | None]:
    """The first byte and the total size from a ``Content-Range`` header."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return -1, None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
