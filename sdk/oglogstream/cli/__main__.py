"""`python -m oglogstream.cli`: the `oglog` command."""

import sys

from . import main

sys.exit(main())
