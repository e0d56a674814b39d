"""The `{{name}}` step: a tether step component written in Python (componentize-py).

It receives the run's (or the previous step's) JSON input and returns JSON. Replace the
body of `run` with your own logic; the host calls it once per attempt, in a fresh sandbox.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Failure, FailureKind, Level


class Step(exports.Step):
    def run(self, input: str) -> str:
        # `raise Err(Failure(...))` ends the step with class `guest_error`; any other
        # uncaught exception traps (class `trap`, the traceback is in the step's log).
        try:
            fields = json.loads(input)
        except ValueError as e:
            raise Err(Failure(kind=FailureKind.INVALID_INPUT, message=f"input is not JSON: {e}"))
        if not isinstance(fields, dict):
            raise Err(Failure(kind=FailureKind.INVALID_INPUT, message="input must be a JSON object"))
        who = fields.get("name", "world")
        host.log(Level.INFO, f"greeting {who}")

        # Tools are called by name; the workflow must grant them to this step. A tool's
        # failure arrives as `Err` and, unhandled here, becomes this step's failure.
        tool = None
        if isinstance(fields.get("tool"), str):
            tool = json.loads(host.call_tool(fields["tool"], json.dumps({"text": who})))

        # Usage the host cannot measure itself (model tokens, money) is reported by name.
        host.report_usage("tokens", float(len(str(who).split())))
        return json.dumps({"greeting": f"hello, {who}", "step": "{{name}}", "tool": tool})
