"""Shared pieces of the benchmarks: processes and RSS (:mod:`.procs`), the synthetic corpus (:mod:`.corpus`),
the floor of the pipeline's work (:mod:`.floor`), the model alone (:mod:`.model`), what a child measures
(:mod:`.children`) and the report (:mod:`.report`). Each ``benchmarks/*_bench.py`` script asks one question.
"""
