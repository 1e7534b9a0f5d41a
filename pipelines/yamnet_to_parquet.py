"""Runnable entry point for runners that launch a script (e.g. Dataflow with --setup_file ./setup.py).

    python pipelines/yamnet_to_parquet.py --input gs://bucket/audio/** --output gs://bucket/out \
        --model gs://bucket/models/yamnet.tflite --runner DataflowRunner --setup_file ./setup.py ...

The same as ``yamnet-beam run ...``: same options, output and summary, same exit codes (2 and one line for a
bad or unknown option, input, model or labels; 1 when more files failed than ``--fail_threshold`` allows; 130
on Ctrl-C), and ``-v`` for Beam's INFO logs.
"""

import sys

from yamnet_beam.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]], console=True))
