# Custom SDK container for Dataflow (--sdk_container_image) and Flink (--environment_type DOCKER):
# Beam's Python SDK image at the apache-beam version of requirements/lock.txt (the launching environment must
# run the same apache-beam version: install it from the same lock), plus yamnet-beam with PyAV (its wheels
# bundle ffmpeg: AAC/M4A, WMA, video containers) and the GCS filesystem, every distribution at the lock's
# version. The entrypoint stays Beam's /opt/apache/beam/boot.
FROM apache/beam_python3.11_sdk:2.78.0

WORKDIR /opt/yamnet-beam
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY requirements/lock.txt ./requirements/lock.txt
COPY yamnet_beam ./yamnet_beam
RUN pip install --no-cache-dir -c requirements/lock.txt ".[av,gcp]" && python -c "import yamnet_beam.job.pipeline, av"
# At most two glibc malloc arenas: per-thread arenas retained ~100 MB per SDK process on long files.
ENV MALLOC_ARENA_MAX=2
