"""Customize: train a head on the stored embeddings, calibrate its thresholds, save it as safe data, export it.

Beam-free. :mod:`.head` (the head file and its numpy forward pass) needs only numpy, so the job may import
it for ``run --head`` and ``apply``; :mod:`.train` and :mod:`.calibrate` need scikit-learn
(``pip install "yamnet-beam[train]"``), imported lazily. May import :mod:`yamnet_beam.model`,
:mod:`yamnet_beam.table.schema` and :mod:`yamnet_beam.analysis` (to read an output's embeddings), never the
rest of the job.
"""
