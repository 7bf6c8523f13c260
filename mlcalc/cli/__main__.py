import sys

from mlcalc.cli import main

sys.exit(main())
