"""The `{{name}}` tool: a tether tool component written in Python (componentize-py).

Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
`describe` tells the host and the steps what it does and what it changes in the world.
"""

import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import tool_host
from wit_world.imports.types import Descriptor, Effect, Failure, FailureKind, Level

# Where the tool records its results by idempotency key, if the workflow grants it this
# directory: dirs = [{ host = "state", guest = "/state", write = true }] in [tools.{{name}}].
STATE = "/state"


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

        def count() -> str:
            tool_host.log(Level.DEBUG, f"{len(text)} characters")
            tool_host.report_usage("chars", float(len(text)))
            return json.dumps({"tool": "{{name}}", "chars": len(text)})

        # Counting changes nothing, so it needs no idempotency. A tool with an external
        # effect (it pays, sends mail) declares Effect.EXTERNAL and does the effect inside
        # at_most_once, as this one does with its count when /state is granted.
        if os.path.isdir(STATE):
            return at_most_once(tool_host.idempotency_key(), count)
        return count()


def at_most_once(key: str, act) -> str:
    """Runs `act` at most once per idempotency key, however often the call is repeated
    (retries, resumes after a crash, two hosts at once), and returns its result each time.

    The claim is atomic: creating /state/<the key in hex> with open(path, "x")
    (O_CREAT|O_EXCL) succeeds for exactly one call per key; only that call acts, then
    writes its result into the file. Every other call returns the recorded result instead
    of acting again. `act` raises only if it did nothing: the claim is then removed so that
    a retry may act. If the tool is killed after claiming and before recording, whether
    `act` happened is unknown, so later calls fail rather than act again.
    """
    path = f"{STATE}/{key.encode().hex()}"
    try:
        claim = open(path, "x")
    except FileExistsError:
        with open(path) as f:
            recorded = f.read()
        # One line: a record without its final newline was cut short.
        if not recorded.endswith("\n"):
            message = f"a call with idempotency key {key} started and recorded no result: not repeated"
            raise Err(Failure(kind=FailureKind.INTERNAL, message=message))
        return recorded[:-1]
    with claim:
        try:
            result = act()
        except BaseException:
            os.remove(path)
            raise
        claim.write(result + "\n")
        claim.flush()
        os.fsync(claim.fileno())
    return result
