"""`python -m fkb ...`, the same as the `fkb` command."""

import sys

from .cli import main

sys.exit(main())
