import sys

from moebench.cli import main

sys.exit(main())
