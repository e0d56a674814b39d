"""Mixed-language example, tool (Python): score the tone of a text with a small lexicon.

Read-only and deterministic. Logs what it found and reports the words it scored as usage.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import tool_host
from wit_world.imports.types import Descriptor, Effect, Failure, FailureKind, Level

NEGATIVE = {"angry", "broken", "cannot", "down", "error", "fail", "failed", "frustrated", "urgent", "worst", "wrong"}
POSITIVE = {"great", "happy", "love", "please", "thanks", "thank", "appreciate", "works", "helpful"}


class Tool(exports.Tool):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="sentiment",
            description="Scores the tone of a text: negative, neutral or positive, from a small word list.",
            input_schema=json.dumps(
                {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
            ),
            output_schema=json.dumps(
                {
                    "type": "object",
                    "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
                }
            ),
            effect=Effect.READ_ONLY,
        )

    def call(self, input: str) -> str:
        try:
            text = json.loads(input).get("text")
        except (ValueError, AttributeError):
            text = None
        if not isinstance(text, str):
            raise Err(Failure(kind=FailureKind.INVALID_INPUT, message="expected {\"text\": string}"))
        words = re.findall(r"[a-z']+", text.lower())
        score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
        label = "negative" if score < 0 else "positive" if score > 0 else "neutral"
        tool_host.log(Level.DEBUG, f"{len(words)} words, score {score}")
        tool_host.report_usage("words_scored", float(len(words)))
        return json.dumps({"label": label, "score": score})
