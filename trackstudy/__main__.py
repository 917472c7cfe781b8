import sys

from trackstudy.cli import main

sys.exit(main())
