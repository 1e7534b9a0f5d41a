"""Index: an approximate nearest-neighbour index over an output's embeddings, in shards next to the table.

Owns ``OUTPUT/index/``: which parts each shard covers and whether it is still current (:mod:`.covers`, no
ANN library needed), building one shard from a group of committed frames parts (:mod:`.shards`) and
searching the current shards (:mod:`.search`), both with USearch (the ``index`` extra), plus writing a
perch-hoplite database from an output (:mod:`.hoplite`). May import :mod:`yamnet_beam.table` and the
foundations; no Beam, no DuckDB: the ``index`` job (:mod:`yamnet_beam.job.index`) only adapts
:func:`.shards.build_shard`, and ``query similar`` (:mod:`yamnet_beam.analysis.similar`) calls :mod:`.search`.
"""
