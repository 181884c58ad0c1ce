"""``python -m deepscope`` runs the CLI."""

import sys

from deepscope.cli import main

sys.exit(main())
