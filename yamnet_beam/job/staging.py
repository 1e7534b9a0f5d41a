"""Launcher = workers: a staged job installs the launcher's versions of what decides its numbers.

Workers that pip-install the package (``--setup_file``: Dataflow, Flink's PROCESS environment) resolve its
dependencies on their own, so a launcher on one Beam and workers on the newest allowed could disagree; Beam
requires the same SDK on both, and LiteRT, numpy, pyarrow and soxr decide the rows. So the job stages the
launcher's versions (:data:`yamnet_beam.versions.PINNED`) as a requirements file, which Beam's boot program
installs before the package. Where nothing is staged (EXTERNAL pools, custom images), every worker still
checks its versions against the launcher's before its first bundle (``versions.check_worker``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from yamnet_beam.job.options import OptionsError
from yamnet_beam.versions import worker_requirements

SKIP_CACHE = "skip"  # Beam's --requirements_cache value for "workers install from the index"


def pin_worker_versions(options: PipelineOptions, pins: Mapping[str, str]) -> str | None:
    """With ``--setup_file``, points ``--requirements_file`` at the user's requirements (if any) plus ``pins``.

    Returns the file written, or None when the job stages no package. A user requirements line that pins
    another version of a pinned distribution is an :class:`OptionsError`, before any work.
    """
    setup = options.view_as(SetupOptions)
    if not setup.setup_file or not pins:
        return None
    user = ""
    if setup.requirements_file:
        try:
            with open(setup.requirements_file, encoding="utf-8") as f:
                user = f.read()
        except OSError as e:
            raise OptionsError(f"--requirements_file {setup.requirements_file}: {e.strerror or e}") from e
    try:
        text = worker_requirements(pins, user)
    except ValueError as e:
        raise OptionsError(f"--requirements_file {setup.requirements_file}: {e}") from e
    if not setup.requirements_file and setup.requirements_cache is None:
        setup.requirements_cache = SKIP_CACHE  # no pip download of Beam & co. at submission: workers fetch them
    folder = tempfile.mkdtemp(prefix="yamnet-beam-pins-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "requirements.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    setup.requirements_file = path
    return path
