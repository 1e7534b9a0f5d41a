# Custom SDK container for Dataflow (--sdk_container_image) and Flink (--environment_type DOCKER):
# Beam's Python SDK image at the Beam version pinned in pyproject.toml (the launching environment must run
# the same apache-beam version), plus yamnet-beam with PyAV (its wheels bundle ffmpeg: AAC/M4A, WMA, video
# containers) and the GCS filesystem. The entrypoint stays Beam's /opt/apache/beam/boot.
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/yamnet-beam
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY yamnet_beam ./yamnet_beam
RUN pip install --no-cache-dir ".[av,gcp]" && python -c "import yamnet_beam.job.pipeline, av"
# At most two glibc malloc arenas: per-thread arenas retained ~100 MB per SDK process on long files.
ENV MALLOC_ARENA_MAX=2
