"""``python -m retrain.cli``: the ``retrain`` command."""

import sys

from retrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
