"""Job: the Apache Beam batch pipeline from ``--input`` patterns to the output's tables.

Owns the options, each default stated once (:mod:`.options`); matching inputs (:mod:`.inputs`; checked on
the launcher and listed on workers: :mod:`.listing`); the launcher's checks and the lease it takes
(:mod:`.checks`); the pipeline's steps, each in its own module: listing (:mod:`.list_inputs`), the resume
join (:mod:`.resume`), cutting parts (:mod:`.form_parts`, with the Beam-free rules of :mod:`.parts`), the
embed step (:mod:`.embed`, over the DoFn bases of :mod:`.frames`) and the summary (:mod:`.summary`);
``run()`` (:mod:`.pipeline`) with its progress lines (:mod:`.progress`) and the workers' version pins
(:mod:`.staging`); ``apply`` (a head over stored embeddings: :mod:`.apply`); and a RunInference
``ModelHandler`` for users' own pipelines (:mod:`.runinference`).
May import :mod:`yamnet_beam.table` (the output it writes), :mod:`yamnet_beam.audio`, :mod:`yamnet_beam.model`
and the foundations; never :mod:`yamnet_beam.analysis` or :mod:`yamnet_beam.customize`.
"""
