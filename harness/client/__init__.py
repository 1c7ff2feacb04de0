"""The TITO transport client: wire bytes -> parsed response -> tokens -> trajectory."""

from .client import Conversation, TitoClient, TurnResult
from .config import ClientConfig
from .errors import (BadRequestError, ContextLengthError, IncompleteStreamError, LogprobMismatchError,
                     MalformedResponseError, ModelNotFoundError, RouteNotFoundError, RoutedExpertsError,
                     ServerError, TitoError, TokenizerMismatchError, TransportError)
from .parity import ParityReport
from ..wire.routed_experts import RoutedExperts, decode_payload, split_body
from .stitching import REASONS

__all__ = [
    "ClientConfig", "Conversation", "TitoClient", "TurnResult", "ParityReport", "RoutedExperts",
    "decode_payload", "split_body", "REASONS", "BadRequestError", "ContextLengthError",
    "IncompleteStreamError", "LogprobMismatchError", "MalformedResponseError", "ModelNotFoundError",
    "RouteNotFoundError", "RoutedExpertsError", "ServerError", "TitoError", "TokenizerMismatchError",
    "TransportError",
]
