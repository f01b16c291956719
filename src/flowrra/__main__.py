"""``python -m flowrra`` runs the ``flowrra`` command."""

import sys

from flowrra.cli import main

sys.exit(main())
