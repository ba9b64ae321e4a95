import sys

from r8.cli import main

sys.exit(main())
