"""Analysis: questions asked of a finished output, where it lies (local or any fsspec URL).

Owns the DuckDB views over an output (:mod:`.output`; the output itself is
:class:`yamnet_beam.table.output.OutputDir`), top classes, events and the summary (:mod:`.query`), the clip
table (:mod:`.pool`), similarity search (:mod:`.similar`), printing results (:mod:`.render`), pictures
(:mod:`.plot`) and the HTML report (:mod:`.report`). May import :mod:`yamnet_beam.table`,
:mod:`yamnet_beam.model` (heads too, for ``--head`` queries), :mod:`yamnet_beam.audio` (to embed a query file
now) and the foundations; never :mod:`yamnet_beam.job`: reading results needs no Beam.
"""
