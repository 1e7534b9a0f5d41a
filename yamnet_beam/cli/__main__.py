"""``python -m yamnet_beam.cli``: the same as the ``yamnet-beam`` command."""

import sys

from yamnet_beam.cli import main

sys.exit(main())
