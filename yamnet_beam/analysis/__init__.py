"""Analysis: questions asked of a finished output, where it lies (local or any fsspec URL).

Owns opening an output (:mod:`.output`: DuckDB views over the committed parts, streaming scans),
top classes, events and the summary (:mod:`.query`), the clip table (:mod:`.pool`), similarity search
(:mod:`.similar`), printing results (:mod:`.render`), pictures (:mod:`.plot`) and the HTML report
(:mod:`.report`). May import :mod:`yamnet_beam.model`, :mod:`yamnet_beam.audio` (to embed a query file
now), :mod:`yamnet_beam.table.schema` (the tables' contract) and :mod:`yamnet_beam.model.head` (``--head``
queries), never the rest of :mod:`yamnet_beam.job`:
reading results needs no Beam.
"""
