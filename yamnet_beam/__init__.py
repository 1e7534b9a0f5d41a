"""yamnet-beam: large audio collections to queryable Parquet tables of YAMNet scores and embeddings.

The tree follows the data, and nothing imports upward:

- :mod:`.framing` (YAMNet's framing arithmetic) and :mod:`.uris` (paths and URLs): no I/O of their own;
- :mod:`.audio`: files and URLs to 16 kHz mono blocks (no Beam);
- :mod:`.errors`: :class:`~yamnet_beam.errors.UserError`, the base of every error a user can mend;
  :mod:`.versions`: the installed versions launcher and workers must share;
- :mod:`.model`: the TFLite model, its labels, heads and download; frames to scores and embeddings (no Beam);
- :mod:`.table`: the output directory every stage shares: schemas, layout, atomic commits, the lease;
- :mod:`.job`: the Beam pipeline that writes an output (audio + model, adapted to Beam);
- :mod:`.analysis`: queries, clip tables, similarity, plots and the report over a finished output;
- :mod:`.customize`: training, calibrating and exporting heads;
- :mod:`.cli` and :mod:`.demo`: the command line on top of all of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("yamnet-beam")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
