"""An HTTP step in Python: GETs the URL its input names over wasi:http (componentize-py's
bindings of the `step-plugin-http` world) and returns the status and body.

What the request may reach is decided by the host: the step's `http` grants in the
workflow (and the identity's, under a policy). A refused request raises `Err` with the
host's error code; this step returns it as a `denied` failure.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.tether_plugin_types import Failure, FailureKind
from wit_world.imports.wasi_http_types import (
    ErrorCode_HttpRequestDenied,
    Fields,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)
from wit_world.imports.streams import StreamError_Closed


def get(url: str) -> tuple[int, bytes]:
    """One GET, blocking until the whole answer is read."""
    scheme, rest = url.split("://", 1)
    authority, _, path = rest.partition("/")
    request = OutgoingRequest(Fields.from_list([]))
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Https() if scheme == "https" else Scheme_Http())
    request.set_authority(authority)
    request.set_path_with_query("/" + path)
    body = request.body()
    pending = outgoing_handler.handle(request, None)
    OutgoingBody.finish(body, None)
    pending.subscribe().block()
    # option<result<result<incoming-response, error-code>>>: nested results are values.
    outer = pending.get()
    if outer is None or isinstance(outer, Err):
        raise RuntimeError("the answer was not ready, or was taken twice")
    inner = outer.value
    if isinstance(inner, Err):
        raise inner  # the host's error code: a refusal, or the network
    response = inner.value
    status = response.status()
    incoming = response.consume()
    stream = incoming.stream()
    data = b""
    while True:
        try:
            data += stream.blocking_read(65536)
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                break
            raise
    return status, data


class Step(exports.Step):
    def run(self, input: str) -> str:
        url = json.loads(input)["url"]
        try:
            status, data = get(url)
        except Err as e:
            if isinstance(e.value, ErrorCode_HttpRequestDenied):
                raise Err(Failure(kind=FailureKind.DENIED, message=f"the host refused {url}"))
            raise Err(Failure(kind=FailureKind.TRANSIENT, message=f"{url}: {e.value}"))
        return json.dumps({"status": status, "body": data.decode("utf-8", "replace")})
