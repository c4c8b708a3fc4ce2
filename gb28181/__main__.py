"""``python -m gb28181`` runs the command line."""

import sys

from .cli import main

sys.exit(main())
