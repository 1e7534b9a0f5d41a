"""The explorer's web API through Werkzeug's test client: the token and Host gates, what may be read, labels
as stored, search results against direct computations, and a hostile file name served as data."""

from __future__ import annotations

import csv
import io
import json
import re
import wave

import numpy as np
import pytest
import soundfile as sf
from werkzeug.test import Client

from tests.explore.conftest import HOSTILE
from tests.support.helpers import png_stats
from yamnet_beam.analysis.output import open_output, sql_table
from yamnet_beam.explore.app import ExploreApp, host_allowed
from yamnet_beam.explore.session import Explorer
from yamnet_beam.table.labels import read_labels

TOKEN = "s3cret-token"


@pytest.fixture
def client(fresh_out):
    return Client(ExploreApp(Explorer(str(fresh_out)), token=TOKEN))


def _authed(client: Client) -> Client:
    assert client.get(f"/?token={TOKEN}").status_code == 200  # sets the cookie
    return client


@pytest.mark.parametrize(
    "url", ["/", "/api/classes", "/api/search?kind=class&q=Static", "/api/labels.csv", "/static/app.js"]
)
def test_no_token_or_a_wrong_one_is_403(client, url):
    assert client.get(url).status_code == 403
    assert client.get(url + ("&" if "?" in url else "?") + "token=wrong").status_code == 403
    assert client.get(url, headers={"Cookie": "yamnet_beam_token=wrong"}).status_code == 403


def test_the_token_once_in_the_url_then_the_cookie(client):
    r = client.get(f"/?token={TOKEN}")
    assert (
        r.status_code == 200 and "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    )
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert client.get("/api/classes").status_code == 200  # the cookie now


def test_a_post_needs_the_token_header_not_only_the_cookie(client, synth):
    _authed(client)
    path = next(p for p, k in synth["truth"].items() if k == "target")
    body = json.dumps({"path": path, "start_s": 0, "end_s": 0.975, "class": "beep", "label": "positive"})
    assert client.post("/api/label", data=body).status_code == 403
    assert client.post("/api/label", data=body, headers={"X-Token": TOKEN}).status_code == 200


@pytest.mark.parametrize(
    ("host", "bound", "ok"),
    [
        ("127.0.0.1:8123", "127.0.0.1", True),
        ("localhost:8123", "127.0.0.1", True),
        ("[::1]:8123", "127.0.0.1", True),
        ("evil.example:8123", "127.0.0.1", False),  # DNS rebinding: a name that resolves here
        ("192.168.1.5:8123", "127.0.0.1", False),
        ("192.168.1.5:8123", "0.0.0.0", True),  # --host 0.0.0.0: IP literals
        ("evil.example", "0.0.0.0", False),
        (None, "127.0.0.1", False),
    ],
)
def test_host_header(host, bound, ok):
    assert host_allowed(host, bound) is ok


def test_a_rebound_host_is_403_even_with_the_token(client):
    r = client.get(f"/?token={TOKEN}", headers={"Host": "attacker.example:80"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "{audio}/../../etc/passwd", "{audio}/noise_0.wav/../noise_1.wav", "{audio}/broken.wav",
     "{audio}/not_there.wav", "{audio}//noise_0.wav", "{audio}/./noise_0.wav"],
)  # fmt: skip
def test_only_paths_files_lists_as_ok_are_read(client, synth, path):
    _authed(client)
    p = path.format(audio=synth["audio"])
    for what in ("audio", "spectrogram"):
        r = client.get(f"/api/{what}", query_string={"path": p, "start": 0, "end": 0.975})
        assert r.status_code == 404, (what, p)
    assert client.get("/static/..%2F__init__.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404  # only the page's own files, by name


@pytest.mark.parametrize("where", ["sql", "memory"])
def test_class_search_ranks_like_sql_and_pages(fresh_out, synth, where):
    ex = Explorer(str(fresh_out), preload=False)
    if where == "memory":
        ex.matrix()
    client = _authed(Client(ExploreApp(ex, token=TOKEN)))
    first = client.get("/api/search", query_string={"kind": "class", "q": "Beep, bleep"}).json
    second = client.get("/api/search", query_string={"kind": "class", "q": "Beep, bleep", "offset": 20}).json
    out = open_output(str(synth["out"]))
    i = out.labels.names.index("Beep, bleep")
    expected = sql_table(out.con, f"SELECT path, frame, scores[{i + 1}] AS s FROM frames").to_pylist()
    expected.sort(key=lambda r: (-r["s"], r["path"], r["frame"]))
    got = [(x["path"], x["frame"]) for x in first["items"] + second["items"]]
    assert got == [(r["path"], r["frame"]) for r in expected[:40]]
    assert first["method"] == {"sql": "scores", "memory": "scores (in memory)"}[where]
    assert first["more"] and len(first["items"]) == 20
    scores = {
        (r["path"], r["frame"]): r for r in sql_table(out.con, "SELECT path, frame, scores FROM frames").to_pylist()
    }
    for x in first["items"]:  # top labels: the 3 highest of the frame's stored scores
        s = np.asarray(scores[(x["path"], x["frame"])]["scores"])
        assert [name for name, _ in x["top"]] == [out.labels.names[j] for j in np.argsort(-s, kind="stable")[:3]]


def test_example_search_says_how_and_ranks_by_cosine(client, synth):
    _authed(client)
    path = next(p for p, k in synth["truth"].items() if k == "target")
    page = client.get("/api/search", query_string={"kind": "example", "q": f"{path}:4"}).json
    assert page["method"] == "exact: no index" and page["items"][0]["path"] == path and page["items"][0]["frame"] == 4
    assert page["items"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    scores = [x["score"] for x in page["items"]]
    assert scores == sorted(scores, reverse=True)


def test_example_search_uses_the_index_when_the_output_has_one(fresh_out, synth):
    """Every shard is larger than this output, so the index's answer must equal exact search's."""
    from yamnet_beam.cli import main

    assert main(["index", str(fresh_out)]) == 0
    client = _authed(Client(ExploreApp(Explorer(str(fresh_out), preload=False), token=TOKEN)))
    path = next(p for p, k in synth["truth"].items() if k == "target")
    page = client.get("/api/search", query_string={"kind": "example", "q": f"{path}:4"}).json
    assert page["method"].startswith("index: 1 shards"), page["method"]
    out = open_output(str(fresh_out))
    q = np.asarray(
        sql_table(out.con, "SELECT embedding FROM frames WHERE path = ? AND frame = 4", [path])[0][0].as_py()
    )
    rows = sql_table(out.con, "SELECT path, frame, embedding FROM frames").to_pylist()
    m = np.asarray([r["embedding"] for r in rows], np.float64)
    cos = m @ q / np.linalg.norm(m, axis=1) / np.linalg.norm(q)
    got = [x["score"] for x in page["items"]]
    np.testing.assert_allclose(got, np.sort(cos)[::-1][: len(got)], atol=2e-3)  # f16 vectors in the shard


def test_an_uploaded_clip_is_embedded_and_searched(client, synth):
    _authed(client)
    path = next(p for p, k in synth["truth"].items() if k == "target")
    data, _ = sf.read(path, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, data[:32000], 16000, format="WAV")
    r = client.post("/api/upload?name=my%20clip.wav", data=buf.getvalue(), headers={"X-Token": TOKEN})
    spec = r.json["query"]
    page = client.get("/api/search", query_string={"kind": "example", "q": spec}).json
    assert "uploaded 'my clip.wav'" in page["query"]
    top = [synth["truth"][x["path"]] for x in page["items"][:5]]
    assert top == ["target"] * 5


def test_audio_is_the_window_with_context_from_the_source(client, synth):
    _authed(client)
    path = next(p for p, k in synth["truth"].items() if k == "tone")
    r = client.get("/api/audio", query_string={"path": path, "start": 2.4, "end": 3.375})
    with wave.open(io.BytesIO(r.data)) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32767.0
    source, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(got, source[int(1.4 * 16000) : int(4.375 * 16000)], atol=1 / 32767 + 1e-6)
    edge = client.get("/api/audio", query_string={"path": path, "start": 0, "end": 0.975})
    with wave.open(io.BytesIO(edge.data)) as w:
        assert w.getnframes() == int(1.975 * 16000)  # no context before the start


def test_spectrogram_is_a_picture_with_the_window_marked(client, synth):
    _authed(client)
    path = next(p for p, k in synth["truth"].items() if k == "target")
    r = client.get("/api/spectrogram", query_string={"path": path, "start": 2.4, "end": 3.375})
    assert r.mimetype == "image/png"
    stats = png_stats(r.data)
    assert stats["height"] == 128 and stats["std"] > 20 and stats["colours"] > 50
    rgb = stats["rgb"].reshape(stats["height"], stats["width"], 3)
    white = np.flatnonzero((rgb == 255).all(axis=2).all(axis=0))
    assert white.tolist() == [100, 198]  # 1.0 s and 1.975 s into the clip, at 100 columns a second


def test_labels_are_stored_as_posted_and_exported(client, synth, fresh_out):
    _authed(client)
    paths = sorted(p for p, k in synth["truth"].items() if k == "target")
    posted = [(paths[0], 0.0, 0.975, "beep", "positive"), (paths[1], 0.48, 1.455, "beep", "uncertain"),
              (paths[0], 0.0, 0.975, "beep", "negative")]  # fmt: skip
    for p, a, b, c, lab in posted:
        body = json.dumps({"path": p, "start_s": a, "end_s": b, "class": c, "label": lab, "query": "class Beep"})
        assert client.post("/api/label", data=body, headers={"X-Token": TOKEN}).status_code == 200
    stored = read_labels(str(fresh_out / "labels"))
    assert [(x.path, x.start_s, x.end_s, x.cls, x.label) for x in stored] == posted
    rows = list(csv.DictReader(io.StringIO(client.get("/api/labels.csv").get_data(as_text=True))))
    assert [(r["path"], r["label"]) for r in rows] == [(paths[1], "uncertain"), (paths[0], "negative")]  # latest
    bad = json.dumps({"path": "/etc/passwd", "start_s": 0, "end_s": 1, "class": "beep", "label": "positive"})
    assert client.post("/api/label", data=bad, headers={"X-Token": TOKEN}).status_code == 404
    odd = json.dumps({"path": paths[0], "start_s": 0, "end_s": 1, "class": "beep", "label": "maybe"})
    assert client.post("/api/label", data=odd, headers={"X-Token": TOKEN}).status_code == 400
    assert len(read_labels(str(fresh_out / "labels"))) == 3


def test_a_hostile_file_name_is_data_everywhere(client, synth):
    _authed(client)
    page = client.get("/").get_data(as_text=True)
    js = client.get("/static/app.js").get_data(as_text=True)
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", js)  # textContent only
    assert HOSTILE not in page
    hostile = str(synth["audio"] / HOSTILE)
    r = client.get("/api/search", query_string={"kind": "example", "q": f"{hostile}:2"})
    assert r.mimetype == "application/json" and r.json["items"][0]["path"] == hostile
    assert client.get("/api/audio", query_string={"path": hostile, "start": 0, "end": 0.975}).status_code == 200
    raven = client.get("/api/raven", query_string={"class": "Static", "threshold": 0.3}).get_data(as_text=True)
    assert hostile in raven and len({len(line.split("\t")) for line in raven.splitlines()}) == 1
