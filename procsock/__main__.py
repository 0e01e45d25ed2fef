"""`python -m procsock` runs the command."""

import sys

from procsock.cli import main

sys.exit(main())
