import sys

from reglens.cli import main

sys.exit(main())
