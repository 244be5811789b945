"""Where a ``$import`` job may read its inputs from, and how it reads them.

The Bulk Data import draft has the server pull NDJSON files from URLs the client names, which
would turn the server into a tool for reaching anything it can reach (server-side request
forgery: cloud metadata endpoints, internal admin pages, local files). So nothing is allowed
by default: ``file://`` URLs must point below the configured import folder (``bulk_import_dir``,
checked after resolving symlinks and ``..``), and ``http(s)://`` URLs must fall under one of the
configured prefixes (``bulk_import_urls``), compared as parsed URLs (scheme, host, port, then
the path by whole segments), never as strings, and never with credentials in the URL. Redirects
are not followed: a redirect could lead anywhere.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from medarchive.errors import BadRequest, FhirError, Forbidden

_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL without credentials; None otherwise."""
    if "\\" in url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or _PORTS[scheme], parts.path or "/"


def url_allowed(url: str, prefixes: Sequence[str]) -> bool:
    """True when the http(s) ``url`` falls under one of ``prefixes``: same scheme, host and
    port, and a path equal to the prefix's or below it by whole segments (no ``..``)."""
    target = _origin(url)
    if target is None:
        return False
    segments = unquote(target[3]).split("/")
    if ".." in segments or "." in segments:
        return False
    for prefix in prefixes:
        allowed = _origin(prefix)
        if allowed is None or allowed[:3] != target[:3]:
            continue
        base = allowed[3].rstrip("/")
        if target[3] == allowed[3] or target[3].startswith(base + "/"):
            return True
    return False


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """The import folder (None: no ``file://`` inputs) and the allowed URL prefixes."""

    folder: Path | None
    prefixes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: object) -> InputPolicy:
        folder = str(getattr(settings, "bulk_import_dir", "") or "")
        prefixes = str(getattr(settings, "bulk_import_urls", "") or "")
        return cls(Path(folder) if folder else None,
                   tuple(p.strip() for p in prefixes.split(",") if p.strip()))

    def local_path(self, url: str) -> Path:
        """The file a ``file://`` URL names, when it lies below the import folder."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise Forbidden("file:// inputs must be local (file:///path)")
        if self.folder is None:
            raise Forbidden("file:// inputs are not allowed (no bulk_import_dir is set)")
        root = self.folder.resolve()
        path = Path(url2pathname(posixpath.normpath(unquote(parts.path)))).resolve()
        if not path.is_relative_to(root):
            raise Forbidden(f"{url[:200]}: file:// inputs must lie below the import folder "
                            "(bulk_import_dir)")
        return path

    def check(self, url: str) -> None:
        """Refuse (403) an input URL the server may not read; 400 for other schemes."""
        scheme = url.split(":", 1)[0].lower()
        if scheme == "file":
            self.local_path(url)
        elif scheme in _PORTS:
            if not url_allowed(url, self.prefixes):
                raise Forbidden(f"{url[:200]}: not under an allowed import URL prefix "
                                "(bulk_import_urls)")
        else:
            raise BadRequest(f"{url[:200]}: input URLs are file:// or http(s)://")


def fetch(url: str, policy: InputPolicy, into: Path, *, timeout_s: float = 60.0) -> Path:
    """The input as a local file: a ``file://`` input where it lies, an http(s) one downloaded
    (streamed) into ``into``. Non-200 answers and redirects fail the input."""
    policy.check(url)
    if url.split(":", 1)[0].lower() == "file":
        path = policy.local_path(url)
        if not path.is_file():
            raise BadRequest(f"{url[:200]}: no such file")
        return path
    import httpx
    try:
        with httpx.stream("GET", url, follow_redirects=False, timeout=timeout_s,
                          headers={"Accept": "application/fhir+ndjson"}) as response:
            if response.status_code != 200:
                raise BadRequest(f"{url[:200]}: answered {response.status_code} (redirects "
                                 "are not followed)")
            with into.open("wb") as handle:
                for block in response.iter_bytes(1 << 20):
                    handle.write(block)
    except httpx.HTTPError as exc:
        raise FhirError(f"{url[:200]}: could not be read ({type(exc).__name__})",
                        status=502) from None
    return into
