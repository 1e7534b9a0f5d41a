"""yamnet-beam download and model discovery, against a loopback HTTP server and file:// URLs only.

Expected hashes are the ones published in the shared README, not computed from the code under test.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from tests.support.helpers import LoopbackHTTPServer
from yamnet_beam.model import ModelError, download
from yamnet_beam.model.download import (
    DownloadError,
    add_download_parser,
    default_model_uri,
    default_models_dir,
    download_model,
    main_download,
    resolve_class_map,
)

MODEL_SHA256 = "469be6a3421cbc52cf97e9f2f966cba984198e8e7af9854d68b3e3ebb1e04194"
CLASS_MAP_SHA256 = "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2"
FINAL_FILES = {"yamnet.tflite", "yamnet.tflite.sha256", "yamnet_class_map.csv", "yamnet_class_map.csv.sha256"}


@pytest.fixture
def served(tmp_path: Path, model_path: Path, class_map_path: Path, http_server) -> LoopbackHTTPServer:
    """The shared model and class map (symlinked, not copied) plus some wrong files, over HTTP."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "yamnet.tflite").symlink_to(model_path)
    (root / "yamnet_class_map.csv").symlink_to(class_map_path)
    (root / "notes.txt").write_text("This is not a model.\n" * 50)
    (root / "short_map.csv").write_text("index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/0ytgt,Child speech\n")
    return http_server(root)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_http_download_lands_checked_files(served: LoopbackHTTPServer, dest: Path) -> None:
    r = download_model(dest, model_url=served.url("yamnet.tflite"), class_map_url=served.url("yamnet_class_map.csv"))
    assert r.model_path == dest / "yamnet.tflite" and r.class_map_path == dest / "yamnet_class_map.csv"
    assert r.model_downloaded and r.class_map_downloaded
    assert r.model_sha256 == MODEL_SHA256 == _sha(r.model_path)
    assert r.class_map_sha256 == CLASS_MAP_SHA256 == _sha(r.class_map_path)
    assert r.model_info.kind == "fixed" and r.model_info.embedding_dim == 1024
    assert _listing(dest) == FINAL_FILES  # no temp files left
    record = (dest / "yamnet.tflite.sha256").read_text().splitlines()
    assert record[0] == f"{MODEL_SHA256}  yamnet.tflite"  # `sha256sum -c` format
    assert served.url("yamnet.tflite") in record[1]
    assert (dest / "yamnet_class_map.csv.sha256").read_text().startswith(f"{CLASS_MAP_SHA256}  yamnet_class_map.csv")


def test_second_call_skips_and_force_fetches_again(served: LoopbackHTTPServer, dest: Path) -> None:
    kw = {"model_url": served.url("yamnet.tflite"), "class_map_url": served.url("yamnet_class_map.csv")}
    download_model(dest, **kw)
    fetched_first = len(served.requests)
    assert fetched_first >= 2

    again = download_model(dest, **kw)
    assert len(served.requests) == fetched_first  # nothing fetched
    assert not again.model_downloaded and not again.class_map_downloaded
    assert again.model_sha256 == MODEL_SHA256 and again.class_map_sha256 == CLASS_MAP_SHA256

    forced = download_model(dest, force=True, **kw)
    assert forced.model_downloaded and forced.class_map_downloaded
    assert {"/yamnet.tflite", "/yamnet_class_map.csv"} <= set(served.requests[fetched_first:])
    assert _listing(dest) == FINAL_FILES


def test_file_url(model_path: Path, class_map_path: Path, dest: Path) -> None:
    r = download_model(dest, model_url=model_path.as_uri(), class_map_url=class_map_path.as_uri())
    assert r.model_sha256 == MODEL_SHA256 and r.class_map_sha256 == CLASS_MAP_SHA256
    assert _listing(dest) == FINAL_FILES


def test_a_different_url_replaces_the_kept_file(served: LoopbackHTTPServer, model_path: Path, dest: Path) -> None:
    download_model(dest, model_url=served.url("yamnet.tflite"), class_map_url=None)
    r = download_model(dest, model_url=model_path.as_uri(), class_map_url=None)
    assert r.model_downloaded
    assert model_path.as_uri() in (dest / "yamnet.tflite.sha256").read_text()


def test_text_file_is_rejected_and_nothing_is_left(served: LoopbackHTTPServer, dest: Path) -> None:
    with pytest.raises(DownloadError, match="not a usable YAMNet model.*not a TFLite model"):
        download_model(dest, model_url=served.url("notes.txt"), class_map_url=served.url("yamnet_class_map.csv"))
    assert _listing(dest) == set()


def test_wrong_expected_sha256_is_rejected_and_nothing_is_left(served: LoopbackHTTPServer, dest: Path) -> None:
    with pytest.raises(DownloadError, match=f"SHA-256 mismatch.*expected {'0' * 64}, got {MODEL_SHA256}"):
        download_model(dest, model_url=served.url("yamnet.tflite"), expected_sha256="0" * 64)
    assert _listing(dest) == set()


def test_right_expected_sha256_in_any_case_is_accepted(served: LoopbackHTTPServer, dest: Path) -> None:
    r = download_model(
        dest, model_url=served.url("yamnet.tflite"), class_map_url=None, expected_sha256=MODEL_SHA256.upper()
    )
    assert r.model_sha256 == MODEL_SHA256


def test_known_hash_for_the_url_is_enforced(
    served: LoopbackHTTPServer, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = served.url("yamnet.tflite")
    monkeypatch.setitem(download.KNOWN_SHA256, url, "f" * 64)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_model(dest, model_url=url, class_map_url=None)
    assert _listing(dest) == set()


@pytest.mark.parametrize("pinned,ok", [(CLASS_MAP_SHA256, True), ("e" * 64, False)])
def test_known_hash_for_the_class_map_is_enforced(
    served: LoopbackHTTPServer, dest: Path, monkeypatch: pytest.MonkeyPatch, pinned: str, ok: bool
) -> None:
    url = served.url("yamnet_class_map.csv")
    monkeypatch.setitem(download.KNOWN_SHA256, url, pinned)
    if ok:
        assert download_model(dest, model_url=served.url("yamnet.tflite"), class_map_url=url).class_map_sha256 == pinned
    else:
        with pytest.raises(DownloadError, match="SHA-256 mismatch"):
            download_model(dest, model_url=served.url("yamnet.tflite"), class_map_url=url)
        assert _listing(dest) == set()


def test_defaults_are_versioned_urls_with_pinned_hashes() -> None:
    """Reproducible by default: both default URLs name fixed content, and both hashes are enforced."""
    assert "/float32/1/" in download.MODEL_URL and "/master/" not in download.CLASS_MAP_URL
    assert download.KNOWN_SHA256[download.CLASS_MAP_URL] == CLASS_MAP_SHA256
    assert len(download.KNOWN_SHA256[download.MODEL_URL]) == 64


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63])
def test_malformed_expected_sha256(dest: Path, model_path: Path, bad: str) -> None:
    with pytest.raises(DownloadError, match="64 hex digits"):
        download_model(dest, model_url=model_path.as_uri(), expected_sha256=bad)


def test_short_class_map_is_rejected_and_the_model_is_not_kept(served: LoopbackHTTPServer, dest: Path) -> None:
    with pytest.raises(DownloadError, match="has 2 classes"):
        download_model(dest, model_url=served.url("yamnet.tflite"), class_map_url=served.url("short_map.csv"))
    assert _listing(dest) == set()


def test_missing_url_is_a_clear_error(served: LoopbackHTTPServer, dest: Path) -> None:
    with pytest.raises(DownloadError, match="could not fetch .*missing.tflite"):
        download_model(dest, model_url=served.url("missing.tflite"))
    assert _listing(dest) == set()


def test_failed_forced_download_keeps_the_good_files(served: LoopbackHTTPServer, dest: Path) -> None:
    good = {"model_url": served.url("yamnet.tflite"), "class_map_url": served.url("yamnet_class_map.csv")}
    download_model(dest, **good)
    with pytest.raises(DownloadError):
        download_model(dest, model_url=served.url("notes.txt"), class_map_url=good["class_map_url"], force=True)
    assert _listing(dest) == FINAL_FILES
    assert _sha(dest / "yamnet.tflite") == MODEL_SHA256
    assert good["model_url"] in (dest / "yamnet.tflite.sha256").read_text()


def test_corrupt_existing_model_is_fetched_again(served: LoopbackHTTPServer, dest: Path) -> None:
    kw = {"model_url": served.url("yamnet.tflite"), "class_map_url": None}
    download_model(dest, **kw)
    (dest / "yamnet.tflite").write_bytes(b"truncated")
    r = download_model(dest, **kw)
    assert r.model_downloaded and _sha(dest / "yamnet.tflite") == MODEL_SHA256


def test_cli_prints_what_where_and_hash(
    served: LoopbackHTTPServer, dest: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YAMNET_BEAM_MODEL", raising=False)
    parser = argparse.ArgumentParser()
    add_download_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "download",
            "-o",
            str(dest),
            "--model_url",
            served.url("yamnet.tflite"),
            "--class_map_url",
            served.url("yamnet_class_map.csv"),
            "--sha256",
            MODEL_SHA256,
        ]
    )
    assert main_download(args) == 0
    out = capsys.readouterr().out
    for expected in (served.url("yamnet.tflite"), MODEL_SHA256, CLASS_MAP_SHA256, str(dest / "yamnet.tflite")):
        assert expected in out
    assert "--model" in out  # dest is not a searched folder, so it says how to use it


# --------------------------------------------------------------------------------------------
# Finding the model again


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """No env vars, an empty working directory, a private cache and no checkout models folder."""
    work, cache, checkout = tmp_path / "work", tmp_path / "cache", tmp_path / "checkout"
    for d in (work, cache, checkout):
        d.mkdir()
    monkeypatch.delenv("YAMNET_BEAM_MODEL", raising=False)
    monkeypatch.delenv("YAMNET_BEAM_CLASS_MAP", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.chdir(work)
    monkeypatch.setattr(download, "_repo_root", lambda: checkout)
    return {"work": work, "cache": cache / "yamnet-beam" / "models", "checkout": checkout / "models"}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_nothing_found_says_how_to_get_a_model(isolated: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="yamnet-beam download`") as e:
        default_model_uri()
    assert "YAMNET_BEAM_MODEL" in str(e.value) and "--model" in str(e.value)
    assert resolve_class_map() is None


def test_env_var_wins_and_is_not_checked(isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(isolated["work"] / "models" / "yamnet.tflite")
    monkeypatch.setenv("YAMNET_BEAM_MODEL", "gs://bucket/yamnet.tflite")
    monkeypatch.setenv("YAMNET_BEAM_CLASS_MAP", "gs://bucket/yamnet_class_map.csv")
    assert default_model_uri() == "gs://bucket/yamnet.tflite"
    assert resolve_class_map() == "gs://bucket/yamnet_class_map.csv"


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["work", "checkout", "cache"], "work"),
        (["checkout", "cache"], "checkout"),
        (["cache"], "cache"),
    ],
)
def test_search_order(isolated: dict[str, Path], present: list[str], expected: str) -> None:
    for where in present:
        folder = isolated["work"] / "models" if where == "work" else isolated[where]
        _touch(folder / "yamnet.tflite")
        _touch(folder / "yamnet_class_map.csv")
    want = (isolated["work"] / "models") if expected == "work" else isolated[expected]
    assert Path(default_model_uri()) == want / "yamnet.tflite"
    assert Path(resolve_class_map()) == want / "yamnet_class_map.csv"


def test_class_map_beside_an_env_model_is_found(
    isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = _touch(tmp_path / "elsewhere" / "yamnet.tflite")
    cmap = _touch(tmp_path / "elsewhere" / "yamnet_class_map.csv")
    _touch(isolated["cache"] / "yamnet_class_map.csv")
    monkeypatch.setenv("YAMNET_BEAM_MODEL", str(model))
    assert resolve_class_map() == str(cmap)


def test_download_then_found(isolated: dict[str, Path], model_path: Path, class_map_path: Path) -> None:
    r = download_model(model_url=model_path.as_uri(), class_map_url=class_map_path.as_uri())
    assert r.model_path == isolated["cache"] / "yamnet.tflite"  # no ./models here: the user cache
    assert default_model_uri() == str(r.model_path)
    assert resolve_class_map() == str(r.class_map_path)


def test_default_models_dir(isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_models_dir() == isolated["cache"]
    (isolated["work"] / "models").mkdir()
    assert default_models_dir().resolve() == (isolated["work"] / "models").resolve()
    monkeypatch.chdir(isolated["checkout"].parent)  # the checkout itself, models/ not made yet
    assert default_models_dir().resolve() == isolated["checkout"].resolve()
