# SPDX-License-Identifier: MIT
"""Checks of tbctl's output contract, shared by the integration tests: stdout with --json is
exactly one envelope valid against `tbctl schema`; an error is one line on stderr."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from typing import Any

import jsonschema

from tbctl.schema import SCHEMA_VERSION, json_schema

# What tbctl prints on stderr besides its one error line: one progress line per step.
PROGRESS = re.compile(r"^tbctl: (?!error: )[a-zA-Z].*$")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def envelope(result: subprocess.CompletedProcess, command: str | None = None) -> dict[str, Any]:
    """The parsed envelope; stdout must hold nothing else. With `command`, the result must
    match that command's result schema exactly."""
    data = json.loads(result.stdout)  # fails on anything but one JSON document
    _validator().validate(data)
    assert data["tbctl"] == SCHEMA_VERSION
    assert data["ok"] == ("result" in data) != ("error" in data), data
    if command and data["ok"]:
        schema = json_schema()
        sub = {**schema["x-result-by-command"][command], "$defs": schema["$defs"]}
        jsonschema.Draft202012Validator(sub).validate(data["result"])
    return data


def json_result(result: subprocess.CompletedProcess, command: str) -> Any:
    data = envelope(result, command)
    assert data["ok"], (result.returncode, result.stdout, result.stderr)
    return data["result"]


def stderr_error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The error lines on stderr; every other line must be a progress line."""
    lines = result.stderr.strip().splitlines()
    others = [line for line in lines if not line.startswith("tbctl: error: ")]
    assert all(PROGRESS.match(line) for line in others), result.stderr
    return [line for line in lines if line.startswith("tbctl: error: ")]


def one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    errors = stderr_error_lines(result)
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], \
        result.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]
