"""Help for every subcommand and option, as data: `harness X --help` says what X does, each option what it
means, and which exit codes X gives. `document(parser)` fills what a command module left out (its own words
win), so a new option needs only a row here."""

from __future__ import annotations

import argparse

# exit codes, by what a command does: checks report findings with 1, servers and writers do not
CHECK = "exit codes: 0 nothing found, 1 {found}, 2 bad input (usage, a missing or malformed file, an output that exists)"
WRITE = "exit codes: 0 written, 2 bad input (usage, a missing or malformed file, an output that exists)"
SERVE = ("exit codes: 0 stopped cleanly (Ctrl-C or SIGTERM), 2 bad input (usage, a port in use or out of range, "
         "an upstream that cannot be reached)")
SHOW = "exit codes: 0 shown, 2 bad input (usage, a missing or malformed file)"
COMMON = "; 70 an internal error (a bug: -v shows the traceback), 130 interrupted, 141 output pipe closed"

EXIT: dict[str, str] = {
    "demo": CHECK.format(found="a rollout or the replay did not behave"),
    "rollout": "exit codes: 0 the rollout ran, 2 bad input or the rollout failed (the error is printed)",
    "parity": CHECK.format(found="the local tokenizer renders other ids than the engine")
    + ", 3 the server showed no ids to compare on any row",
    "fake": SERVE, "record": SERVE, "chaos": SERVE, "replay": SERVE,
    "rl-step": CHECK.format(found="the step broke a promise of its kind"),
    "record-suite": "exit codes: 0 every scenario recorded, 1 a scenario failed, 2 bad input",
    "cassette merge": WRITE, "cassette extract": WRITE, "cassette export": WRITE,
    "cassette recover": "exit codes: 0 recovered (or nothing to recover), 2 bad input (usage, no such cassette)",
    "cassette conversations": SHOW,
    "audit": CHECK.format(found="an anomaly fails the gate (see --fail-on, --ignore)"),
    "inspect": SHOW,
    "repro": CHECK.format(found="a turn answers otherwise than recorded"),
    "view": SHOW,
    "conformance": CHECK.format(found="a fake answers a recorded request otherwise than the real server"),
    "tokenizer build": WRITE, "profiles": SHOW, "faults": SHOW,
    "compat": CHECK.format(found="a cell of the matrix changed from the expected one"),
}

OPTIONS: dict[str, str] = {  # dest -> help, for any command
    "turns": "how many turns each conversation runs",
    "max_tokens": "the most completion tokens asked per turn",
    "model": "the served model name sent in each request",
    "transport": "how the client talks tokens-in: vllm_generate, dynamo_chat or dynamo_generate",
    "template": "the built-in tokenizer's chat template: chatml or thinking (strips earlier <think> blocks)",
    "api_key": "sent as the bearer token",
    "retries": "attempts per request on a 5xx or a dropped connection",
    "timeout": "seconds per request",
    "seed": "the sampling seed sent with each request",
    "base_url": "the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1",
    "json": "print one JSON object instead of tables",
    "kind": "which server: vllm or dynamo",
    "host": "the address to bind (default 127.0.0.1: this machine only)",
    "port": "the port to bind, 0..65535 (0 picks a free port, printed)",
    "max_model_len": "the context window, in tokens, that prompts are checked against",
    "fault_seed": "seed of the fault draws, so a run's faults repeat",
    "tokenizer": "a Hugging Face tokenizer directory (default: the built-in Qwen2.5 one)",
    "rollouts": "how many rollouts run before and across the step",
    "cassette": "the cassette file to write",
    "mode": "vcrpy record mode: once (refuse an existing file), new_episodes (append) or all (rewrite)",
    "out": "the file to write",
    "shards": "the shard cassettes to merge, in any order",
    "path": "the cassette or capture file (.yaml)",
    "parquet": "the Parquet file to write",
    "dir": "the directory to write the tokenizer into",
    "differences": "also print the table of differences between profiles (Markdown)",
    "wait": "seconds to wait for a dying recorder's writer",
}

DESCRIPTIONS: dict[str, str] = {  # longer than the one-line help, where it helps
    "cassette": "Work on cassette and capture files: merge shards, list conversations, extract some, export "
                "them as Parquet, recover an interrupted recording.",
    "audit": "Read a capture of any client's traffic, link its exchanges into conversations and report each "
             "conversation's TITO health: stitched share, fallbacks to messages-in, anomalies with their turn. "
             "The gate (the exit code) fails on anomalies; a retry that recovered an error does not fail it.",
    "view": "Show one conversation of a capture turn by turn: each prompt id coloured by origin (reused, bridge, "
            "rendered, drift), the first break in continuity, completion ids with their logprobs. Without "
            "--conversation it shows the file's only conversation, or the first with an anomaly and names the "
            "others. --html writes one static page (no script, no network).",
    "repro": "Send a capture's requests again as its client sent them and compare each turn's answer with the "
             "recorded one; --emit-test writes a pytest file (values only, no cassette text as code) that "
             "serves the conversation to a client and fails while its anomalies show.",
}


def walk(parser: argparse.ArgumentParser, name: str = ""):
    """(command path, parser) of every subcommand under `parser`, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for sub, p in action.choices.items():
                path = f"{name} {sub}".strip()
                yield path, p, helps.get(sub)
                yield from walk(p, path)


def document(parser: argparse.ArgumentParser, common: str = COMMON) -> argparse.ArgumentParser:
    for path, p, one_line in walk(parser):
        if not p.description:
            p.description = DESCRIPTIONS.get(path) or (one_line[:1].upper() + one_line[1:] + "." if one_line else None)
        if not p.epilog and path in EXIT:
            p.epilog = EXIT[path] + common
        for action in p._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction) and action.dest in OPTIONS:
                action.help = OPTIONS[action.dest]
    return parser


class Lazy(str):
    """A help text computed when help is shown (e.g. from a registry that is slow to import), so building the
    parser for another command does not pay for it."""

    def __new__(cls, make):
        self = super().__new__(cls, "…")
        self.make = make
        return self

    def text(self) -> str:
        return self.make()

    def __mod__(self, params):
        return self.make() % params

    def strip(self, *args):
        return self.make().strip(*args)
