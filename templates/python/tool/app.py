"""The `{{name}}` tool: a tether tool component written in Python (componentize-py).

Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
`describe` tells the host and the steps what it does and what it changes in the world.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import tool_host
from wit_world.imports.types import Descriptor, Effect, Failure, FailureKind, Level


class Tool(exports.Tool):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="{{name}}",
            description="Counts the characters of a text.",
            input_schema=json.dumps({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}),
            output_schema=json.dumps({"type": "object", "properties": {"chars": {"type": "integer"}}}),
            # READ_ONLY, IDEMPOTENT or EXTERNAL: policies and approvals look at it.
            effect=Effect.READ_ONLY,
        )

    def call(self, input: str) -> str:
        try:
            text = json.loads(input).get("text")
        except (ValueError, AttributeError):
            text = None
        if not isinstance(text, str):
            raise Err(Failure(kind=FailureKind.INVALID_INPUT, message='expected {"text": string}'))
        tool_host.log(Level.DEBUG, f"{len(text)} characters")
        tool_host.report_usage("chars", float(len(text)))
        return json.dumps({"tool": "{{name}}", "chars": len(text)})
