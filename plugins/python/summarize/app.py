"""Mixed-language example, step 3 (Python): summarize a redacted support message.

A deterministic stand-in for a model call. It logs, asks the `sentiment` tool for the
message's tone, reports the tokens a model would have used, and returns a typed failure
for input it cannot use. `{"crash": true}` raises an ordinary exception instead, which
traps: the host records it as class `trap` (tests use it).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Failure, FailureKind, Level

MAX_SUMMARY = 160


def fail(kind: FailureKind, message: str) -> Err:
    return Err(Failure(kind=kind, message=message))


def first_sentences(text: str, limit: int) -> str:
    """The leading sentences of `text` that fit in `limit` characters (at least one, cut)."""
    summary = ""
    for sentence in text.replace("\n", " ").split(". "):
        sentence = sentence.strip().rstrip(".")
        if not sentence:
            continue
        candidate = f"{summary} {sentence}." if summary else f"{sentence}."
        if len(candidate) > limit:
            break
        summary = candidate
    return summary or text[: limit - 1].rstrip() + "…"


class Step(exports.Step):
    def run(self, input: str) -> str:
        try:
            message = json.loads(input)
        except ValueError as e:
            raise fail(FailureKind.INVALID_INPUT, f"input is not JSON: {e}")
        if not isinstance(message, dict):
            raise fail(FailureKind.INVALID_INPUT, "input must be a JSON object")
        if message.get("crash"):
            raise RuntimeError("asked to crash")
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(FailureKind.INVALID_INPUT, "`text` must be a non-empty string")

        host.log(Level.INFO, f"summarizing {len(text)} characters")
        tone = json.loads(host.call_tool("sentiment", json.dumps({"text": text})))
        summary = first_sentences(text, MAX_SUMMARY)
        # A model would report its real count; this stand-in charges one token per word.
        host.report_usage("tokens", float(len(text.split()) + len(summary.split())))
        host.log(Level.INFO, f"tone {tone['label']} ({tone['score']:+d})")
        return json.dumps({"summary": summary, "tone": tone["label"], "tone_score": tone["score"]})
