"""`python -m diffscope.cli`: the `diffscope` command."""

import sys

from diffscope.cli import main

sys.exit(main())
