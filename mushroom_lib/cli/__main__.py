"""`python -m mushroom_lib.cli`: the `mushroom` command."""

import sys

from .commands import main

sys.exit(main())
