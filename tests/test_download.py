"""Downloads against a local HTTP server: resume, drops, 404, mirrors, hash checks."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from ttscli.download import download, mirror_url
from ttscli.errors import DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DATA = Path(__file__).parent / "data"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    drop_after: int | None = None  # bytes sent before the connection is cut (first GET only)
    ranges_seen: list[str | None] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[1]
        type(self).ranges_seen.append(self.headers.get("Range"))
        body = self.files.get(name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if type(self).drop_after is not None:
            self.wfile.write(chunk[: type(self).drop_after])
            self.wfile.flush()
            type(self).drop_after = None
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {"weights.bin": PAYLOAD}, "ranges_seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/files"
    httpd.shutdown()


def test_download_writes_the_whole_file_and_records_its_hash(server, tmp_path):
    _, base = server
    path = download(f"{base}/weights.bin", tmp_path)
    assert path == tmp_path / "weights.bin"
    assert path.read_bytes() == PAYLOAD
    recorded = (tmp_path / "sha256.json").read_text()
    assert hashlib.sha256(PAYLOAD).hexdigest() in recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sha256.json", "weights.bin"]


def test_dropped_connection_leaves_no_final_file_and_resumes(server, tmp_path):
    handler, base = server
    handler.drop_after = 300_000
    with pytest.raises(DownloadError, match="run the same command again"):
        download(f"{base}/weights.bin", tmp_path)
    assert not (tmp_path / "weights.bin").exists()
    partial = tmp_path / ".weights.bin.part"
    assert partial.stat().st_size == 300_000
    path = download(f"{base}/weights.bin", tmp_path)
    assert handler.ranges_seen[-1] == "bytes=300000-"
    assert path.read_bytes() == PAYLOAD
    assert not partial.exists()


def test_404_is_a_download_error_naming_the_status(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base}/missing.bin", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/x/weights.bin", tmp_path, timeout_seconds=2)


def test_hash_mismatch_with_an_earlier_download_is_refused(server, tmp_path):
    handler, base = server
    (tmp_path / "sha256.json").write_text('{"weights.bin": "' + "0" * 64 + '"}')
    with pytest.raises(DownloadError, match="does not match"):
        download(f"{base}/weights.bin", tmp_path)
    assert not (tmp_path / "weights.bin").exists()
    assert not (tmp_path / ".weights.bin.part").exists()


def test_mirror_base_replaces_everything_before_the_file_name(monkeypatch):
    monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", "http://mirror.local/nv/")
    assert mirror_url("https://api.ngc.nvidia.com/v2/a/b/files/f_20190427") == (
        "http://mirror.local/nv/f_20190427"
    )


def test_cli_download_through_a_mirror_installs_the_pair(server, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ttscli.cli import cli
    from ttscli.voices import NVIDIA_VOICES

    handler, base = server
    voice = NVIDIA_VOICES["nvidia-ljspeech"]
    handler.files = {voice.files[kind]: _CHECKPOINTS[kind] for kind in voice.files}
    monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", base)
    result = CliRunner().invoke(cli, ["download", "nvidia-ljspeech", "-q"])
    assert result.exit_code == 0, result.output
    home = Path(__import__("os").environ["TTSCLI_HOME"])
    for kind, name in voice.files.items():
        assert (home / name).read_bytes() == _CHECKPOINTS[kind]


_CHECKPOINTS = {  # small checkpoints in NVIDIA's torch.hub format
    "tacotron2": (DATA / "tacotron2_dle_checkpoint.pt").read_bytes(),
    "waveglow": (DATA / "waveglow_dle_checkpoint.pt").read_bytes(),
}


@pytest.mark.parametrize(
    ("tacotron2_body", "problem"),
    [
        (b"junk\n", "not usable"),  # e.g. a mirror's error page
        (_CHECKPOINTS["tacotron2"][:5000], "not usable"),  # truncated at the source
        (_CHECKPOINTS["waveglow"], "holds a waveglow checkpoint, expected a tacotron2 one"),
    ],
)
def test_cli_download_refuses_a_file_that_is_not_the_model(
    server, monkeypatch, tacotron2_body, problem
):
    from click.testing import CliRunner

    from ttscli.cli import cli
    from ttscli.voices import NVIDIA_VOICES

    handler, base = server
    voice = NVIDIA_VOICES["nvidia-ljspeech"]
    handler.files = {voice.files["tacotron2"]: tacotron2_body}
    monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", base)
    result = CliRunner().invoke(cli, ["download", "nvidia-ljspeech", "-q"])
    assert result.exit_code == 1
    assert problem in result.output and "Traceback" not in result.output
    home = Path(__import__("os").environ["TTSCLI_HOME"])
    assert list(home.iterdir()) == []  # nothing installed, no part file, no hash recorded


def test_a_failed_verification_removes_the_file_and_records_no_hash(server, tmp_path):
    _, base = server

    def refuse(path: Path) -> None:
        assert path.read_bytes() == PAYLOAD  # called on the complete file, before install
        raise ValueError("wrong model")

    with pytest.raises(DownloadError, match="not usable .wrong model."):
        download(f"{base}/weights.bin", tmp_path, verify=refuse)
    assert list(tmp_path.iterdir()) == []
    assert download(f"{base}/weights.bin", tmp_path, verify=lambda path: None).exists()


@pytest.mark.parametrize("base", ["junk", "mirror.local/nv", "/srv/mirror"])
def test_a_download_base_that_is_not_a_url_is_a_clear_error(monkeypatch, tmp_path, base):
    monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", base)
    with pytest.raises(DownloadError, match="is not a URL"):
        download("https://example.com/files/weights.bin", tmp_path)


def test_cli_download_without_network_says_where_to_put_files(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ttscli.cli import cli

    monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", "http://127.0.0.1:9/none")
    result = CliRunner().invoke(cli, ["download", "nvidia-ljspeech", "-q"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
    assert "nvidia_tacotron2pyt_fp32_20190427" in result.output
    assert "nvidia_waveglowpyt_fp32_20190427" in result.output
    assert "Traceback" not in result.output


def test_cli_download_unknown_name_is_a_usage_error():
    from click.testing import CliRunner

    from ttscli.cli import cli

    result = CliRunner().invoke(cli, ["download", "no-such-voice"])
    assert result.exit_code == 2
    assert "nvidia-ljspeech" in result.output
