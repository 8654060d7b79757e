"""``python -m casdb``: the casdb command."""

import sys

from casdb.cli import main

sys.exit(main())
