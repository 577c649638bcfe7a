# SPDX-License-Identifier: MIT
"""The node agent: runs on every host, standard library only, answers in versioned JSON.

The controller runs it as `tbctl node <command>` where tbctl is installed, or from a zipapp it
ships, so nothing here may import click, jinja2, paramiko or rich.
"""

AGENT_PROTOCOL = 1
MIN_PYTHON = (3, 9)
