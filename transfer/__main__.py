"""`python -m transfer` runs the command line."""

import sys

from transfer.cli.main import main

sys.exit(main())
