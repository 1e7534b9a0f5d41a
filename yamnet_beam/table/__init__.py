"""Table: the output directory every stage shares, at the bottom of the stages.

Owns what an output holds and how it is written and read: the Arrow schemas and row builders
(:mod:`.schema`, defined once; list columns back to numpy), every name in the directory and the commit
rule (:mod:`.layout`), atomic part writing (:mod:`.parts`), the one output-directory class with its
listing, run values and clean-up (:mod:`.output`), and the lease that lets one job at a time write
into it (:mod:`.lease`). May import :mod:`yamnet_beam.framing`, :mod:`yamnet_beam.uris`,
:mod:`yamnet_beam.errors` and :mod:`yamnet_beam.model` (the widths and class names of what it stores);
no Beam, no DuckDB, so the job, analysis and customize stages all read and write it the same way.
"""
