"""The wire layer's answer reading (harness.wire.answers), with its shape errors raised as the client's own:
`MalformedResponseError`, and `IncompleteStreamError` for a stream without its finish chunk."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from ..wire import answers
from ..wire.answers import TurnTokens
from .errors import IncompleteStreamError, MalformedResponseError

__all__ = ["TurnTokens", "assemble_stream", "from_chat", "from_generate"]


def _client_errors(read: Callable) -> Callable:
    @wraps(read)
    def call(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        except answers.StreamEndError as exc:
            raise IncompleteStreamError(str(exc)) from None
        except answers.AnswerError as exc:
            raise MalformedResponseError(str(exc)) from None
    return call


from_chat = _client_errors(answers.from_chat)
from_generate = _client_errors(answers.from_generate)
assemble_stream = _client_errors(answers.assemble_stream)
