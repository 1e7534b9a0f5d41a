"""Customize: train a head on an output's stored embeddings, calibrate its thresholds, export it with YAMNet.

Beam-free, and the top stage: :mod:`.train` reads an output through :mod:`yamnet_beam.analysis` and saves
the head with :mod:`yamnet_beam.model.head` (the head file and its forward pass are a model, used by
``run --head``, ``apply`` and queries); :mod:`.calibrate` chooses per-class thresholds and :mod:`.metrics`
reports what the head measured; they need scikit-learn (``pip install "yamnet-beam[train]"``), imported
lazily by :mod:`.learn`; :mod:`.export` appends a head to YAMNet as one .tflite. May import every stage
below it but the job.
"""
