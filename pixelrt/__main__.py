"""`python -m pixelrt` is the `pixelrt` command."""
import sys

from pixelrt.cli import main

sys.exit(main())
