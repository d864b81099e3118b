"""`python -m transfer` runs the command line."""

import sys

from transfer.cli import main

sys.exit(main())
