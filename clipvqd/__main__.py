import sys

from clipvqd.cli import main

sys.exit(main())
