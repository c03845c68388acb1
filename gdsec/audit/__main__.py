"""``python -m gdsec.audit``: the ``gdsec-audit`` command of :mod:`gdsec.audit.cli`."""

import sys

from gdsec.audit.cli import main

if __name__ == "__main__":
    sys.exit(main())
