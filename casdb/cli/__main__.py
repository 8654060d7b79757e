"""``python -m casdb.cli``."""

import sys

from casdb.cli import main

sys.exit(main())
