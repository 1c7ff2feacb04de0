"""Several recorder processes sharing one port (SO_REUSEPORT), one shard file each, merged into one cassette
when they stop: the recorder at the pace of a whole frontend."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from .blobs import blob_dir
from .format import Cassette
from .journal import journal_dir
from .merge import merge


def shard_paths(cassette: Path, workers: int) -> list[Path]:
    return [cassette.with_name(f"{cassette.stem}.shard{k}{cassette.suffix or '.yaml'}") for k in range(workers)]


def spawn(argv: list[str], shards: list[Path]) -> list[subprocess.Popen] | None:
    """Start one recorder per shard (`argv`: a `harness record` command line without its cassette); None,
    with every one stopped and its shard removed, if one does not start."""
    procs = [subprocess.Popen([*argv, "--cassette", str(sh), "--shard", f"{k + 1}/{len(shards)}"],
                              stdout=subprocess.PIPE, text=True) for k, sh in enumerate(shards)]
    for p in procs:
        if not p.stdout.readline():  # each prints one line when it listens
            for q in procs:
                q.terminate()
                q.wait(30)
            remove_shards(shards)
            return None
    return procs


def wait_and_merge(procs: list[subprocess.Popen], cassette: Path, shards: list[Path]) -> Cassette:
    """Forward SIGINT/SIGTERM to the workers, wait for them, merge their shards (by arrival) into
    `cassette` and remove the shards."""
    def forward(sig, _frame):
        for p in procs:
            p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for p in procs:
        p.wait()
    merged = merge(cassette, [sh for sh in shards if sh.exists()])
    remove_shards(shards)  # merged: the shards and their blob folders are no longer needed
    return merged


def remove_shards(shards) -> None:
    for sh in shards:
        sh.unlink(missing_ok=True)
        shutil.rmtree(blob_dir(sh), ignore_errors=True)
        shutil.rmtree(journal_dir(sh), ignore_errors=True)
