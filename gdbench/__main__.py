"""``python -m gdbench``: the gdbench command, for a checkout or a box without the script."""

import sys

from gdbench.commands.cli import main

sys.exit(main())
