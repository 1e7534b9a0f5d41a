"""``yamnet-beam explore`` as a user starts it: the printed URL with its token, a real HTTP client, the
warning for a non-loopback address, Ctrl-C; every process stopped by its PID."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.explore.conftest import start_explorer as _start
from tests.explore.conftest import stop_explorer as _stop
from yamnet_beam.cli import main


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_printed_url_works_and_nothing_without_its_token(fresh_out, host):
    proc = _start(str(fresh_out), "--host", host)
    try:
        line = proc.stdout.readline()
        url = line.split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        base, token = url.split("/?token=")
        assert len(token) >= 32
        assert _status(url) == 200
        assert _status(base + "/api/classes") == 403
        assert _status(f"{base}/api/classes?token={token}x") == 403
    finally:
        code, err = _stop(proc)
    assert code == 130, err
    warned = "warning: listening on 0.0.0.0" in err
    assert warned == (host == "0.0.0.0")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--port", "70000"], "--port"), (["--hots", "x"], "--hots"), (["--head", "/nonexistent/head"], "head")],
)
def test_bad_options_exit_2_naming_them(fresh_out, argv, flag, capsys):
    assert main(["explore", str(fresh_out), *argv]) == 2
    assert flag in capsys.readouterr().err


def test_not_an_output_exits_2(tmp_path, capsys):
    assert main(["explore", str(tmp_path)]) == 2
    assert "yamnet-beam run" in capsys.readouterr().err
