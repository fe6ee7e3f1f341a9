"""``python -m cli <command> ...`` (e.g. under ``torchrun``) is ``entropy-mech <command> ...``."""

import sys

from cli.main import main

sys.exit(main())
