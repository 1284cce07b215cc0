"""``python -m paradoxplex.node.cli.main``: the ``paradoxplex`` command."""

import sys

from paradoxplex.node.cli.main import main

sys.exit(main())
