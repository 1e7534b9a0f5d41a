"""Runnable entry point for runners that launch a script (e.g. Dataflow with --setup_file ./setup.py).

    python pipelines/yamnet_to_parquet.py --input gs://bucket/audio/** --output gs://bucket/out \
        --model gs://bucket/models/yamnet.tflite --runner DataflowRunner --setup_file ./setup.py ...
"""

import logging
import sys

from yamnet_beam.pipeline import run

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run(sys.argv[1:])
