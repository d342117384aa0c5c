"""`python cli.py CONTENT STYLE -o OUT.png`: the jaxstyle command line (see jaxstyle/cli.py)."""
import sys

from jaxstyle.cli import main

sys.exit(main())
