"""``python -m pyfacex``: the command line (see :mod:`pyfacex.cli`)."""
import sys

from .cli import main

sys.exit(main())
