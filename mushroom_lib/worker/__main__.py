"""`python -m mushroom_lib.worker --home H`: the home's background worker (see ``process``)."""

import sys

from .process import main

sys.exit(main())
