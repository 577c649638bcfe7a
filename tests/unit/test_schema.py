# SPDX-License-Identifier: MIT
"""The --json schema is generated from the TypedDicts, valid, and what docs/tbctl.md shows."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema

from tbctl.schema import SCHEMA_VERSION, envelope_error, envelope_ok, json_schema, schema_markdown

DOCS = Path(__file__).parents[2] / "docs/tbctl.md"


def test_schema_is_valid_and_covers_both_envelopes():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(envelope_error("usage", "bad --pool"))
    validator.validate(envelope_ok({"host_a": "a", "host_b": "b", "removed_a": True,
                                    "removed_b": False}))
    assert not validator.is_valid({"tbctl": SCHEMA_VERSION, "ok": False, "error": "text"})
    assert not validator.is_valid({"tbctl": SCHEMA_VERSION + 1, "ok": True, "result": {}})
    pair = schema["$defs"]["PairResult"]
    assert pair["properties"]["verified"] == {"anyOf": [{"type": "boolean"},
                                                        {"type": "null"}]}
    assert "file" not in schema["$defs"]["HostEnv"]["required"]


def test_docs_show_the_generated_types():
    text = DOCS.read_text()
    published = re.search(r"<!-- schema:begin[^>]*-->\n(.*?)<!-- schema:end -->", text, re.S)
    assert published, "docs/tbctl.md lost its schema section"
    assert published.group(1) == schema_markdown(), \
        "docs/tbctl.md is out of date: paste tbctl.schema.schema_markdown() between the markers"
