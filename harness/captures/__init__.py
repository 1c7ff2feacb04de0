"""Captures: production traffic of any client, turned into conversations and audited for TITO health.

A capture is a cassette of many interleaved multi-turn rollouts, sent by whatever client the team runs.
Data flows through the package in this order, one module per question:

- `turns`: is this exchange a generation turn, which ids went in and came out, what is wrong in it alone;
- `linking`: which rollout does each turn continue (tokens, messages, session header, retry);
- `kinds`: the anomaly kinds the audit names, one row each;
- `index`: where each exchange sits in the file, written beside the capture;
- `audit`: the capture's health, conversation by conversation;
- `bridge`: is each stitched turn's bridge what the deployment's template renders;
- `extract`, `export`: cut conversations out, or write one row per exchange (Parquet);
- `view`: one conversation, token by token;
- `repro`: send a capture again (as its client sent it, or through our client);
- `emit`: a pytest file that serves a capture to a client and fails while its bug shows.

The names of the old `harness.captures` module stay importable from here.
"""

from .audit import Audit, audit, capture_index
from .extract import (Selection, conversation_exchanges, exchange_map, extract, parse_exchanges, read_exchanges,
                      read_selection, select)
from .export import COLUMNS, export_columns, export_parquet, export_rows
from .index import INDEX_VERSION, CaptureIndex, index_path
from .kinds import KINDS, Kind
from .linking import INVALID, KEY, WINDOW, Anomaly, Conversation, Linker
from .turns import Turn

__all__ = ["Audit", "audit", "capture_index", "conversation_exchanges", "exchange_map", "extract", "parse_exchanges",
           "read_exchanges", "read_selection", "select", "Selection", "COLUMNS", "export_columns", "export_parquet", "export_rows",
           "INDEX_VERSION", "CaptureIndex", "index_path", "KINDS", "Kind", "INVALID", "KEY", "WINDOW", "Anomaly",
           "Conversation", "Linker", "Turn"]
