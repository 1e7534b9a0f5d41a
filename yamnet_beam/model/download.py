"""Fetch the YAMNet model and class map once, check them, and find them again later.

Model files are never committed to git: ``yamnet-beam download`` puts them in a models
directory, and the pipeline finds them there with :func:`default_model_uri`. Downloads go through
fsspec, so the source may be ``https://``, ``file://``, ``gs://``, ``s3://`` or a plain path (a
mirror inside a firewall, for instance). No Beam here, so a notebook can call it too.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import fsspec

from yamnet_beam.errors import UserError
from yamnet_beam.model import NUM_CLASSES, ModelError, ModelInfo, inspect_model
from yamnet_beam.model.labels import LabelsError, load_class_map
from yamnet_beam.uris import absolute_uri

# MediaPipe's hosting of TensorFlow's YAMNet (Apache-2.0): input float32 [1, 15600], scores
# [1, 521], int8 weights, label list packed in its TFLite metadata. The default is the versioned
# URL, whose content and hash are fixed, so that stored tables are reproducible; ".../float32/latest/"
# may move.
MODEL_URL = "https://storage.googleapis.com/mediapipe-models/audio_classifier/yamnet/float32/1/yamnet.tflite"
# TensorFlow's class map at a fixed commit of tensorflow/models (the file has not changed since).
CLASS_MAP_URL = (
    "https://raw.githubusercontent.com/tensorflow/models/dfffd623b6be8d1d9744b8e261fbac370d17c46d/"
    "research/audioset/yamnet/yamnet_class_map.csv"
)
# SHA-256 for exact URLs whose content cannot change (versioned or commit-pinned URLs only). The
# model hash (4,126,810 bytes) is the one published for that URL by Google's mediapipe_audio package
# and the projects that pin it; the class map hash is that of the file the project's tests use.
KNOWN_SHA256: dict[str, str] = {
    MODEL_URL: "4d8b4a53282dc83ef04e3e7dbc4fbc98082e34e44ed798e16c3a0cdd4c584faf",
    CLASS_MAP_URL: "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2",
}

MODEL_FILENAME = "yamnet.tflite"
CLASS_MAP_FILENAME = "yamnet_class_map.csv"
RECORD_SUFFIX = ".sha256"
MODEL_ENV = "YAMNET_BEAM_MODEL"
CLASS_MAP_ENV = "YAMNET_BEAM_CLASS_MAP"
# A wrong URL (a web page, a dataset) must not fill the disk; YAMNet is 4-16 MB.
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_T = TypeVar("_T")
_LOG = logging.getLogger(__name__)

# What a user without network access does instead of downloading; every command that needs the model says it.
OFFLINE_HINT = f"set {MODEL_ENV} / pass --model with the path or URL of a YAMNet .tflite file"
NOT_FOUND_HINT = f"run `yamnet-beam download` to fetch it, or {OFFLINE_HINT}"
_OFFLINE = f"without network access, {OFFLINE_HINT}"


class DownloadError(UserError, ValueError):
    """A download was asked wrongly, failed, or fetched something unusable.

    Nothing new is left in the destination when it is raised.
    """


@dataclass(frozen=True)
class DownloadResult:
    """Where the files are and what they are, so callers can print or record provenance."""

    model_path: Path
    model_sha256: str
    model_url: str
    model_downloaded: bool
    model_info: ModelInfo
    class_map_path: Path | None
    class_map_sha256: str | None
    class_map_url: str | None
    class_map_downloaded: bool


# --------------------------------------------------------------------------------------------
# Where models live


def _repo_root() -> Path | None:
    """The source checkout this module runs from, or None when installed as a package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "yamnet_beam").is_dir() else None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/yamnet-beam/models`` (default ``~/.cache/yamnet-beam/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "yamnet-beam" / "models"


def _search_dirs() -> list[Path]:
    dirs = [Path.cwd() / "models"]
    root = _repo_root()
    if root is not None:
        dirs.append(root / "models")
    dirs.append(user_cache_dir())
    return dirs


def default_models_dir() -> Path:
    """Where ``yamnet-beam download`` puts files when no ``-o``/``--out`` is given.

    ``./models`` when the working directory has a ``models`` folder or is the project checkout
    (the files then sit beside the code that uses them, git-ignored); anywhere else the per-user
    cache, so an installed package never scatters model files into random working directories.
    Both are places :func:`default_model_uri` looks in.
    """
    cwd = Path.cwd()
    root = _repo_root()
    if (cwd / "models").is_dir() or (root is not None and cwd.resolve() == root):
        return cwd / "models"
    return user_cache_dir()


def default_model_uri() -> str:
    """The model the pipeline uses when none is given.

    Order: ``$YAMNET_BEAM_MODEL`` (any path or URL, not checked here), ``./models/yamnet.tflite``,
    ``<checkout>/models/yamnet.tflite``, then the user cache. Raises :class:`ModelError` saying
    how to get one if none exists, rather than letting a later step fail on a missing file.
    """
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        return env
    for d in _search_dirs():
        if (d / MODEL_FILENAME).is_file():
            return str(d / MODEL_FILENAME)
    looked = ", ".join(str(d / MODEL_FILENAME) for d in _search_dirs())
    _LOG.info("No YAMNet model in %s", looked)  # -v; the error stays one short line
    raise ModelError(f"no YAMNet model found (not in ./models/ nor the user cache); {NOT_FOUND_HINT}")


def resolve_class_map(explicit: str | None = None, model_uri: str | None = None) -> str | None:
    """The class map every command uses (``run``, ``export``, a query's model), or None (the model may carry
    its own labels). One precedence, stated in README "Models":

    1. the explicit ``--class_map``;
    2. ``$YAMNET_BEAM_CLASS_MAP`` (any path or URL, not checked here);
    3. ``yamnet_class_map.csv`` beside the model (``model_uri``, else the default model);
    4. the default places, in :func:`default_model_uri`'s order.
    """
    if explicit:
        return absolute_uri(explicit)
    env = os.environ.get(CLASS_MAP_ENV, "").strip()
    if env:
        return env
    if model_uri is None:
        with contextlib.suppress(ModelError):
            model_uri = default_model_uri()
    if model_uri:
        fs, path = fsspec.core.url_to_fs(absolute_uri(model_uri))
        sibling = path.rsplit("/", 1)[0] + "/" + CLASS_MAP_FILENAME
        if fs.exists(sibling):
            return fs.unstrip_protocol(sibling) if "://" in model_uri else sibling
    for d in _search_dirs():
        if (d / CLASS_MAP_FILENAME).is_file():
            return str(d / CLASS_MAP_FILENAME)
    return None


# --------------------------------------------------------------------------------------------
# Fetching


def _normalise_sha256(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    v = value.strip().lower()
    if not _SHA256_RE.match(v):
        raise DownloadError(f"expected SHA-256 must be 64 hex digits, got {value!r}")
    return v


def _fetch(url: str, dest_dir: Path, name: str) -> tuple[Path, str]:
    """Copy ``url`` into a temporary file in ``dest_dir``; return its path and SHA-256.

    The temporary file is in the destination folder so the final rename is atomic (same file
    system); it is removed if anything fails.
    """
    import fsspec

    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        # Plain HTTP: stream one GET (block_size=0) instead of HEAD + ranged reads, which some
        # servers and mirrors do not support.
        kwargs = {"block_size": 0} if url.lower().startswith(("http://", "https://")) else {}
        with os.fdopen(fd, "wb") as out, fsspec.open(url, "rb", **kwargs) as src:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DownloadError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes: not a YAMNet file")
                digest.update(chunk)
                out.write(chunk)
    except DownloadError:
        tmp.unlink(missing_ok=True)
        raise
    except FileNotFoundError as e:  # fsspec's http also reports refused connections this way
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"could not fetch {url}: not found or server unreachable; {_OFFLINE}") from e
    except Exception as e:  # fsspec backends raise assorted errors (OSError, aiohttp, ...)
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"could not fetch {url}: {type(e).__name__}: {e}; {_OFFLINE}") from e
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions of a new file
    return tmp, digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_model(path: Path, url: str, sha: str, expected: str | None) -> ModelInfo:
    if expected is not None and sha != expected:
        raise DownloadError(f"SHA-256 mismatch for {url}: expected {expected}, got {sha}")
    try:
        return inspect_model(path.read_bytes(), uri=url)
    except ModelError as e:
        raise DownloadError(f"{url} is not a usable YAMNet model: {e}") from e


def _check_class_map(path: Path, url: str, sha: str) -> None:
    expected = KNOWN_SHA256.get(url)
    if expected is not None and sha != expected:
        raise DownloadError(f"SHA-256 mismatch for {url}: expected {expected}, got {sha}")
    try:
        labels = load_class_map(str(path))
    except (LabelsError, OSError) as e:
        raise DownloadError(f"{url} is not a usable YAMNet class map: {e}") from e
    if len(labels) != NUM_CLASSES:
        raise DownloadError(f"{url} has {len(labels)} classes, a YAMNet class map has {NUM_CLASSES}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_record(path: Path, sha: str, url: str) -> None:
    """``<sha>  <name>`` (checkable with ``sha256sum -c``) and the source URL as a comment."""
    record = path.with_name(path.name + RECORD_SUFFIX)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{sha}  {path.name}\n# url: {url}\n", encoding="utf-8")
    os.replace(tmp, record)


def _recorded_url(path: Path) -> str | None:
    record = path.with_name(path.name + RECORD_SUFFIX)
    try:
        text = record.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("# url: "):
            return line[len("# url: ") :].strip()
    return None


def _reusable(path: Path, url: str) -> bool:
    """An existing file is kept unless its record says it came from a different URL."""
    if not path.is_file():
        return False
    recorded = _recorded_url(path)
    return recorded is None or recorded == url


def _reuse_or_fetch(
    path: Path, url: str, force: bool, temps: list[Path], check: Callable[[Path, str], _T]
) -> tuple[Path | None, str, _T]:
    """The file at ``path`` if reusable and it passes ``check(file, sha256)``; else ``url`` fetched and checked.

    Returns the temporary file to move into place (None when reused), its SHA-256 and what ``check``
    returned. A fetched file is added to ``temps`` first, so the caller removes it on any failure.
    """
    if not force and _reusable(path, url):
        sha = _sha256_file(path)
        with contextlib.suppress(DownloadError):  # broken or different file: fetch a fresh one
            return None, sha, check(path, sha)
    tmp, sha = _fetch(url, path.parent, path.name)
    temps.append(tmp)
    return tmp, sha, check(tmp, sha)


def download_model(
    dest_dir: str | Path | None = None,
    *,
    model_url: str = MODEL_URL,
    class_map_url: str | None = CLASS_MAP_URL,
    expected_sha256: str | None = None,
    force: bool = False,
) -> DownloadResult:
    """Download (or reuse) ``yamnet.tflite`` and ``yamnet_class_map.csv`` in ``dest_dir``.

    Files are checked before they replace anything: the model must be a TFLite YAMNet (one
    waveform input, 521 scores, a findable 1024-D embedding) and match ``expected_sha256``
    (default: the hash known for ``model_url``, if any); the class map must have 521 rows.
    Existing files that pass the same checks are kept unless ``force``. On failure nothing new
    is left in ``dest_dir``. ``class_map_url=None`` skips the class map (the model's own labels
    are then used). ``dest_dir`` defaults to :func:`default_models_dir`.
    """
    model_url = absolute_uri(model_url)  # recorded absolute: the record still says where it came from
    class_map_url = absolute_uri(class_map_url) if class_map_url else None
    expected = _normalise_sha256(expected_sha256) or KNOWN_SHA256.get(model_url)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    model_path = dest / MODEL_FILENAME
    map_path = dest / CLASS_MAP_FILENAME if class_map_url else None

    temps: list[Path] = []
    try:
        model_tmp, model_sha, info = _reuse_or_fetch(
            model_path, model_url, force, temps, lambda p, sha: _check_model(p, model_url, sha, expected)
        )
        map_tmp = map_sha = None
        if map_path is not None:
            map_tmp, map_sha, _ = _reuse_or_fetch(
                map_path, class_map_url, force, temps, lambda p, sha: _check_class_map(p, class_map_url, sha)
            )
        # Everything checked: move into place (atomic renames) and record provenance. A kept file
        # keeps its record (or lack of one): we do not know where a hand-placed file came from.
        for tmp, path, sha, url in (
            (model_tmp, model_path, model_sha, model_url),
            (map_tmp, map_path, map_sha, class_map_url),
        ):
            if tmp is not None:
                os.replace(tmp, path)
                temps.remove(tmp)
                _write_record(path, sha, url)
    finally:
        for t in temps:
            t.unlink(missing_ok=True)

    return DownloadResult(
        model_path=model_path,
        model_sha256=model_sha,
        model_url=model_url,
        model_downloaded=model_tmp is not None,
        model_info=info,
        class_map_path=map_path,
        class_map_sha256=map_sha,
        class_map_url=class_map_url,
        class_map_downloaded=map_tmp is not None,
    )


# --------------------------------------------------------------------------------------------
# Command line (wired into `yamnet-beam` by cli.py)


def add_download_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``download`` subcommand."""
    p = subparsers.add_parser(
        "download",
        help="download and check the YAMNet model and class map",
        description=(
            "Download the YAMNet TFLite model and its class map, check them, and store them where "
            "`yamnet-beam run` finds them. Valid files already there are kept unless --mode overwrite."
        ),
    )
    p.add_argument("-o", "--out", dest="dest", default=None, help=f"folder (default: {default_models_dir()})")
    p.add_argument("--model_url", default=MODEL_URL, help="model URL or path (any fsspec URL)")
    p.add_argument("--class_map_url", default=CLASS_MAP_URL, help="class map URL or path; empty string to skip it")
    p.add_argument("--sha256", default=None, help="expected SHA-256 of the model file")
    p.add_argument(
        "--mode",
        choices=("error", "overwrite"),
        default="error",
        help="'overwrite' downloads again even if valid files exist (default: keep them; never replace others)",
    )
    return p


def _found_automatically(path: Path) -> bool:
    try:
        return Path(default_model_uri()).resolve() == path.resolve()
    except (ModelError, OSError):
        return False


def main_download(args: argparse.Namespace) -> int:
    """Run ``download``; errors propagate as :class:`DownloadError` (a ``ValueError``)."""
    r = download_model(
        args.dest,
        model_url=args.model_url,
        class_map_url=args.class_map_url or None,
        expected_sha256=args.sha256,
        force=args.mode == "overwrite",
    )
    verb = "Downloaded" if r.model_downloaded else "Already present"
    labels = "yes" if r.model_info.embedded_labels else "no"
    print(f"{verb}: {r.model_url}")
    print(f"  -> {r.model_path} ({r.model_info.size_bytes:,} bytes)")
    print(f"  SHA-256 {r.model_sha256}")
    print(f"  layout {r.model_info.kind}, embedding {r.model_info.embedding_tensor!r}, labels embedded: {labels}")
    if r.class_map_path is not None:
        verb = "Downloaded" if r.class_map_downloaded else "Already present"
        print(f"{verb}: {r.class_map_url}")
        print(f"  -> {r.class_map_path}")
        print(f"  SHA-256 {r.class_map_sha256}")
    if not _found_automatically(r.model_path):
        print(f"This folder is not searched by default: pass --model {r.model_path} or set {MODEL_ENV}.")
    return 0
