"""Moved to the `harness.cli` package (`record`, `cassette`, `captures`, `conformance`); this path stays
importable for one release."""

import warnings

from .cli.captures import cmd_audit, cmd_inspect, cmd_repro, cmd_view, print_repro  # noqa: F401
from .cli.cassette import cmd_cassette_merge, cmd_cassette_recover, cmd_conversations, cmd_export, cmd_extract  # noqa: F401
from .cli.conformance import cmd_conformance  # noqa: F401
from .cli.record import cmd_chaos, cmd_record, cmd_record_suite, cmd_replay  # noqa: F401

warnings.warn("harness.cli_cassettes moved to the harness.cli package", DeprecationWarning, stacklevel=2)
