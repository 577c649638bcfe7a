# SPDX-License-Identifier: MIT
from tbctl.cli import main

main()
