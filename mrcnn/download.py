"""Safe file download: HTTPS by default, streamed to a temporary file, verified, then moved into place.

The target path only ever holds a complete, verified file: the body is streamed into a temporary file in
the target's directory, checked against ``Content-Length`` (truncated transfers fail), ``expected_size``
and ``sha256`` when given, and renamed over the target with ``os.replace``. On any failure the temporary
file is removed and an existing target is left untouched.
"""

import hashlib
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException, IncompleteRead

__all__ = ["COCO_MODEL_URL", "DownloadError", "download_file", "download_trained_weights"]

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
"""Matterport's COCO-trained Mask R-CNN weights (ResNet-101, 81 classes)."""

_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(OSError):
    """A download failed: HTTP error, network error, truncated transfer, size or checksum mismatch."""


def _check_scheme(url, allow_http):
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "https":
        return
    if scheme == "http":
        if allow_http:
            return
        raise ValueError(
            f"refusing to download over plain HTTP: {url!r}. Use an https:// URL, "
            "or pass allow_http=True if you trust the network path."
        )
    raise ValueError(
        f"unsupported URL scheme {scheme!r} in {url!r}: only https:// (and http:// with "
        "allow_http=True) are supported."
    )


def _redirect_handler(allow_http):
    """A redirect handler that applies the same scheme policy to every redirect target."""

    class _Checked(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            try:
                _check_scheme(newurl, allow_http)
            except ValueError as e:
                raise DownloadError(f"redirect from {req.full_url!r} refused: {e}") from None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return _Checked()


def _format_bytes(n):
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024.0
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


class _Progress:
    """Single-line progress bar on stderr: ``[====    ] 12.0 MiB / 245.9 MiB  5%``."""

    def __init__(self, total, enabled):
        self.total = total
        self.enabled = enabled
        self._last = 0.0

    def update(self, done, final=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "=" * int(30 * frac)
            line = f"\r[{bar:<30}] {_format_bytes(done)} / {_format_bytes(self.total)} {100 * frac:3.0f}%"
        else:
            line = f"\r{_format_bytes(done)} downloaded"
        sys.stderr.write(line + ("\n" if final else ""))
        sys.stderr.flush()


def download_file(url, path, sha256=None, expected_size=None, progress=True, allow_http=False, timeout=60):
    """Download ``url`` to ``path`` atomically and return ``path``.

    url: an ``https://`` URL (``http://`` only with ``allow_http=True``; redirects follow the same rule).
    path: destination file; its parent directory is created if needed.
    sha256: optional hex digest (64 hex characters) the file must match.
    expected_size: optional size in bytes the file must have.
    progress: draw a progress bar on stderr.
    timeout: socket timeout in seconds for connecting and for each read.

    Raises ValueError for bad arguments (scheme, digest format) and DownloadError (an OSError) for HTTP
    errors (e.g. 404), network errors, truncated transfers, size or checksum mismatches. On failure no
    partial file is left behind and an existing file at ``path`` is not modified.
    """
    _check_scheme(url, allow_http)
    if sha256 is not None and not _SHA256_RE.match(sha256):
        raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}")
    if expected_size is not None and (not isinstance(expected_size, int) or expected_size < 0):
        raise ValueError(f"expected_size must be a non-negative int (bytes), got {expected_size!r}")

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".part")
    opener = urllib.request.build_opener(_redirect_handler(allow_http))
    request = urllib.request.Request(url, headers={"User-Agent": "mrcnn-download"})
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(opener, request, url, out, sha256, expected_size, progress, timeout)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def _fetch(opener, request, url, out, sha256, expected_size, progress, timeout):
    """Stream the response body into ``out`` and verify it; raises DownloadError on any problem."""
    hasher = hashlib.sha256()
    received = 0
    try:
        with opener.open(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
            total = int(header) if header is not None and header.strip().isdigit() else None
            bar = _Progress(total, progress)
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(received)
            bar.update(received, final=True)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url!r} failed: HTTP {e.code} {e.reason}") from e
    except IncompleteRead as e:
        raise DownloadError(
            f"download of {url!r} was truncated: connection closed after {received + len(e.partial)} bytes"
        ) from e
    except (urllib.error.URLError, HTTPException, OSError) as e:
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(f"download of {url!r} failed: {e}") from e

    if total is not None and received != total:
        raise DownloadError(
            f"download of {url!r} was truncated: received {received} bytes, Content-Length says {total}"
        )
    if expected_size is not None and received != expected_size:
        raise DownloadError(f"download of {url!r} has {received} bytes, expected {expected_size}")
    if sha256 is not None and hasher.hexdigest() != sha256.lower():
        raise DownloadError(
            f"download of {url!r} failed the checksum: sha256 {hasher.hexdigest()}, expected {sha256.lower()}"
        )


def download_trained_weights(
    coco_model_path,
    verbose: int = 1,
    url: str = COCO_MODEL_URL,
    sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = 60,
    allow_http: bool = False,
) -> None:
    """Download the COCO-trained weights (or ``url``) to ``coco_model_path``.

    Uses ``mrcnn.download.download_file``: HTTPS only unless allow_http, streamed to a temporary file,
    verified against Content-Length and the optional expected_size / sha256, then moved into place; a
    failed download leaves nothing behind. verbose > 0 prints start/done messages and a progress bar.
    """
    if verbose > 0:
        print(f"Downloading pretrained model to {coco_model_path} ...")
    download_file(
        url,
        coco_model_path,
        sha256=sha256,
        expected_size=expected_size,
        progress=verbose > 0,
        allow_http=allow_http,
        timeout=timeout,
    )
    if verbose > 0:
        print("... done downloading pretrained model!")
