"""Job: the Apache Beam batch pipeline from ``--input`` patterns to the Parquet tables.

Owns the options (:mod:`.options`), matching inputs (:mod:`.inputs`; checked on the launcher and
listed on workers: :mod:`.listing`), parts and their commits and resume (:mod:`.parts`), the
bookkeeping steps of the pipeline (listing, resume join, part cutting, summary: :mod:`.planning`),
the tables' schemas and the output layout (:mod:`.schema`, defined once), the
DoFns that adapt audio and model to Beam (:mod:`.transforms`), ``run()`` (:mod:`.pipeline`), and a
RunInference ``ModelHandler`` for users' own pipelines (:mod:`.runinference`), and ``apply`` (a head over
stored embeddings: :mod:`.apply`). May import :mod:`yamnet_beam.audio`, :mod:`yamnet_beam.model`,
:mod:`yamnet_beam.framing`, :mod:`yamnet_beam.uris` and :mod:`yamnet_beam.model.head` (the head file);
never :mod:`yamnet_beam.analysis`.
"""
