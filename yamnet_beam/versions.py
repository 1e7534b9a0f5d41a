"""The versions that decide a run's numbers, so launcher and workers can be held to the same ones.

Beam requires the same SDK version at submission and on the workers, and LiteRT, numpy, pyarrow and soxr
decide the scores, the resampled signal and the Parquet bytes. The launcher records its versions of these
(:func:`installed`), stages them as pins for workers that pip-install the package (:func:`worker_requirements`),
and every worker compares its own before its first bundle (:func:`check_worker`). Imports neither Beam nor
anything else of the package: it reads installed distributions' metadata only.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Iterable, Mapping

# The distributions whose version must be the same on launcher and workers (names as on PyPI).
PINNED = ("apache-beam", "ai-edge-litert", "numpy", "pyarrow", "soxr")


class VersionMismatchError(RuntimeError):
    """A worker runs other versions of the pinned distributions than the launcher that planned the job."""


def version_of(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def installed(names: Iterable[str] = PINNED) -> dict[str, str]:
    """``{distribution: version}`` of this interpreter for ``names`` (missing ones as ``"not installed"``)."""
    return {n: version_of(n) or "not installed" for n in names}


def extras_installed() -> list[str]:
    """The package's extras (from its own metadata; not ``dev``) whose distributions are all installed here."""
    try:
        requires = md.requires("yamnet-beam") or []
    except md.PackageNotFoundError:
        return []
    needs: dict[str, set[str]] = {}
    for line in requires:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;.*extra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if m and m.group(2) != "dev":
            needs.setdefault(m.group(2), set()).add(m.group(1))
    return sorted(extra for extra, dists in needs.items() if all(version_of(d) for d in dists))


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(?:==\s*([^\s;]+))?")


def worker_requirements(pins: Mapping[str, str], user_requirements: str = "") -> str:
    """A requirements file for staged workers: ``user_requirements`` plus ``name==version`` for each pin.

    A user line that names a pinned distribution must pin the same version (extras may be added), else
    ValueError: a worker installing another Beam or LiteRT than the launcher's would fail (Beam) or change
    the numbers (LiteRT).
    """
    lines = []
    for line in user_requirements.splitlines():
        requirement = line.split("#", 1)[0].strip()
        m = _REQUIREMENT.fullmatch(requirement) or _REQUIREMENT.match(requirement)
        name = re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None
        if name in pins:
            if m.end() != len(requirement) or m.group(3) != pins[name]:
                raise ValueError(
                    f"requirements file line {line.strip()!r} differs from this launcher's {name}=={pins[name]}: "
                    f"workers must run the launcher's version; remove the line or pin {name}=={pins[name]}"
                )
            if not m.group(2):
                continue  # the pin below says the same
        lines.append(line)
    lines += [f"{n}=={v}" for n, v in pins.items()]
    return "\n".join(lines).strip() + "\n"


def check_worker(expected: Mapping[str, str]) -> None:
    """Raises :class:`VersionMismatchError` naming both versions if this process differs from ``expected``."""
    here = installed(expected)
    differ = [f"{n} {here[n]} (launcher {v})" for n, v in expected.items() if here[n] != v]
    if differ:
        raise VersionMismatchError(
            f"this worker runs {', '.join(differ)}: give workers the launcher's versions "
            "(the job stages them as pins with --setup_file; images: build from requirements/lock.txt)"
        )


def describe(model: str) -> str:
    """What a bug report needs first: the package, the pinned distributions, Python, the model, the extras."""
    import platform

    lines = [
        f"yamnet-beam {version_of('yamnet-beam') or 'not installed'}",
        f"python {platform.python_version()} ({platform.platform()})",
    ]
    lines += [f"{name} {version}" for name, version in installed().items()]
    lines.append(f"model: {model}")
    lines.append(f"extras: {', '.join(extras_installed()) or 'none'}")
    return "\n".join(lines)
