"""``python -m pydeconv``: the same command line as the ``pydeconv`` script."""

import sys

from pydeconv.cli import main

sys.exit(main())
