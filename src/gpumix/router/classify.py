"""Which request class a request belongs to: the ``x-gpumix-class`` header, else an estimate.

The router carries no tokenizer (it must stay small and fast, and the served model can be any
Hugging Face id), so the prompt length is estimated:

- text: ``ceil(characters / 4)`` tokens (:data:`CHARS_PER_TOKEN`), the usual rule of thumb for
  English with BPE tokenizers (Llama 3, GPT-4 class vocabularies);
- a completion prompt given as token ids is counted exactly; a batch of prompts counts its
  longest prompt (the one that decides whether the batch meets the TTFT target);
- chat: the text of every message (string content, or the ``text`` parts of a list content;
  images and other parts are not counted) plus :data:`CHAT_TOKENS_PER_MESSAGE` per message for
  the role and the template's delimiters, plus :data:`CHAT_REPLY_PRIMING_TOKENS` once for the
  assistant header the template appends.

Output tokens are ``max_completion_tokens`` (chat), else ``max_tokens``, else
:data:`DEFAULT_OUTPUT_TOKENS` (256, the output size of the LLMService's default class).

The estimate is mapped to the nearest class in log space over (input tokens, output tokens):
a 2 000-token prompt is as far from a 1 000-token class as from a 4 000-token one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpumix.router.table import RequestClass

CHARS_PER_TOKEN = 4
CHAT_TOKENS_PER_MESSAGE = 4
CHAT_REPLY_PRIMING_TOKENS = 3
DEFAULT_OUTPUT_TOKENS = 256

CLASS_HEADER = "x-gpumix-class"


@dataclass(frozen=True)
class RequestSize:
    input_tokens: int
    output_tokens: int


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return text_tokens(prompt)
    if isinstance(prompt, Sequence) and prompt:
        if all(isinstance(item, int) for item in prompt):
            return len(prompt)  # token ids: exact
        return max(_prompt_tokens(item) for item in prompt)  # a batch: its longest prompt
    return 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, Sequence):
        return sum(
            text_tokens(part["text"])
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return 0


def _output_tokens(body: Mapping[str, Any], keys: Sequence[str]) -> int:
    for key in keys:
        value = body.get(key)
        # bool is an int in Python; a JSON true is not a token count.
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_OUTPUT_TOKENS


def completion_size(body: Mapping[str, Any]) -> RequestSize:
    """Size of a ``/v1/completions`` request (malformed fields count as empty, never raise:
    the backend, not the router, tells the client what is wrong with its request)."""
    return RequestSize(
        input_tokens=max(1, _prompt_tokens(body.get("prompt"))),
        output_tokens=_output_tokens(body, ("max_tokens",)),
    )


def chat_size(body: Mapping[str, Any]) -> RequestSize:
    """Size of a ``/v1/chat/completions`` request."""
    messages = body.get("messages")
    tokens = CHAT_REPLY_PRIMING_TOKENS
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        for message in messages:
            if isinstance(message, Mapping):
                tokens += CHAT_TOKENS_PER_MESSAGE + _content_tokens(message.get("content"))
    return RequestSize(
        input_tokens=tokens,
        output_tokens=_output_tokens(body, ("max_completion_tokens", "max_tokens")),
    )


def nearest_class(size: RequestSize, classes: Sequence[RequestClass]) -> RequestClass:
    """The class closest to ``size`` in log space (ties: the first in spec order)."""
    log_in = math.log(max(1, size.input_tokens))
    log_out = math.log(max(1, size.output_tokens))

    def distance(request_class: RequestClass) -> float:
        return (log_in - math.log(request_class.input_tokens)) ** 2 + (
            log_out - math.log(request_class.output_tokens)
        ) ** 2

    return min(classes, key=distance)
