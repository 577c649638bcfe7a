# SPDX-License-Identifier: MIT
"""Entry point of the shipped zipapp: `python3 tbctl.pyz node <command> ...`."""

import sys

from tbctl.node.agent import main

sys.exit(main(sys.argv[1:]))
