"""Tests for mrcnn.download.download_file and utils.download_trained_weights against a local HTTP server."""

import hashlib
import http.server
import os
import threading

import pytest

from mrcnn import utils
from mrcnn.download import DownloadError, download_file

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path == "/weights.h5":
            self._send(200, PAYLOAD, len(PAYLOAD))
        elif self.path == "/truncated.h5":
            # announce the full size, send only part of it, then close the connection
            self._send(200, PAYLOAD[:1000], len(PAYLOAD))
        elif self.path == "/nolength.h5":
            self._send(200, PAYLOAD, None)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/weights.h5")
            self.end_headers()
        else:
            self._send(404, b"not here", 8)

    def _send(self, code, body, length):
        self.send_response(code)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def server_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _leftovers(directory):
    return [name for name in os.listdir(directory) if name.endswith(".part")]


def test_success_with_sha256_and_size(server_url, tmp_path, capsys):
    target = tmp_path / "sub" / "w.h5"
    out = download_file(
        f"{server_url}/weights.h5",
        target,
        sha256=PAYLOAD_SHA.upper(),
        expected_size=len(PAYLOAD),
        allow_http=True,
    )
    assert out == str(target)
    assert target.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "sub") == []
    err = capsys.readouterr().err
    assert "100%" in err and "10.0 KiB / 10.0 KiB" in err


def test_wrong_sha256_leaves_no_file(server_url, tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(DownloadError, match="checksum"):
        download_file(f"{server_url}/weights.h5", target, sha256="0" * 64, allow_http=True, progress=False)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_wrong_expected_size_leaves_no_file(server_url, tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(DownloadError, match="expected 10"):
        download_file(f"{server_url}/weights.h5", target, expected_size=10, allow_http=True, progress=False)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_truncated_transfer_fails_and_keeps_existing_file(server_url, tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(DownloadError, match="truncated"):
        download_file(f"{server_url}/truncated.h5", target, allow_http=True, progress=False)
    assert not target.exists() and _leftovers(tmp_path) == []
    target.write_bytes(b"old weights")
    with pytest.raises(DownloadError, match="truncated"):
        download_file(f"{server_url}/truncated.h5", target, allow_http=True, progress=False)
    assert target.read_bytes() == b"old weights"
    assert _leftovers(tmp_path) == []


def test_http_refused_without_allow_http(server_url, tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(ValueError, match="allow_http=True"):
        download_file(f"{server_url}/weights.h5", target)
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        download_file("ftp://example.com/w.h5", target)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_404_is_a_clear_error(server_url, tmp_path):
    target = tmp_path / "w.h5"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_file(f"{server_url}/missing.h5", target, allow_http=True, progress=False)
    assert "/missing.h5" in str(info.value)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_no_content_length_and_redirect(server_url, tmp_path):
    a = download_file(f"{server_url}/nolength.h5", tmp_path / "a.h5", allow_http=True, progress=False)
    b = download_file(
        f"{server_url}/redirect", tmp_path / "b.h5", sha256=PAYLOAD_SHA, allow_http=True, progress=False
    )
    assert open(a, "rb").read() == PAYLOAD and open(b, "rb").read() == PAYLOAD


def test_bad_sha256_argument(tmp_path):
    with pytest.raises(ValueError, match="64-character hex"):
        download_file("https://example.invalid/w.h5", tmp_path / "w.h5", sha256="abc")


def test_download_trained_weights_wrapper(server_url, tmp_path, capsys):
    target = tmp_path / "mask_rcnn_coco.h5"
    utils.download_trained_weights(
        str(target), url=f"{server_url}/weights.h5", sha256=PAYLOAD_SHA, allow_http=True
    )
    assert target.read_bytes() == PAYLOAD
    out = capsys.readouterr().out
    assert f"Downloading pretrained model to {target}" in out and "done downloading" in out
    quiet = tmp_path / "quiet.h5"
    utils.download_trained_weights(str(quiet), verbose=0, url=f"{server_url}/weights.h5", allow_http=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "" and quiet.read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match="plain HTTP"):
        utils.download_trained_weights(str(tmp_path / "x.h5"), verbose=0, url=f"{server_url}/weights.h5")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/w.h5", "data:,abc", "//example.com/w.h5"]
)
def test_only_https_by_default(tmp_path, url):
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        download_file(url, tmp_path / "w.h5")
    assert os.listdir(tmp_path) == []


def test_redirect_from_https_to_http_is_refused():
    import urllib.request

    from mrcnn.download import _redirect_handler

    request = urllib.request.Request("https://example.com/weights.h5")
    message = r"redirect from 'https://example.com/weights.h5' refused: refusing to download over plain HTTP"
    with pytest.raises(DownloadError, match=message):
        _redirect_handler(False).redirect_request(request, None, 302, "Found", {}, "http://example.com/w.h5")
    assert (
        _redirect_handler(True)
        .redirect_request(request, None, 302, "Found", {}, "http://example.com/w.h5")
        .full_url
        == "http://example.com/w.h5"
    )
