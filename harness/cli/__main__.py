"""`python -m harness.cli`: the `harness` command (the recorder's workers start themselves this way)."""

import sys

from . import main

sys.exit(main())
