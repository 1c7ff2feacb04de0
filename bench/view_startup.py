"""`harness view` of one conversation, from a fresh interpreter to its last line: old path vs new, one run.

- old: ids shown through the tokenizer (transformers imported, tokenizer.json parsed, `batch_decode`);
- new: ids shown through the cached id-to-bytes table (`harness.tokenizer.token_table`).

Both run the same CLI command in fresh processes, alternating, and must print the same text; the
figures are medians of wall time and peak memory, and the ratio old/new. The tokenizer directory and
the table are built before timing (both caches survive runs), so this measures every later run.

    python bench/view_startup.py [CAPTURE] [--conversation N] [--repeat 3] [--html]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "cassettes" / "captures" / "vllm-0.32-cpu" / "capture.yaml"

CHILD = r"""
import contextlib, io, json, resource, sys, time
t0 = time.perf_counter()
import harness.tokenizer as T
if sys.argv[1] == "old":
    class Old:
        def __init__(self):
            self.tok = T.load_tokenizer()
        def pieces(self, ids):
            return self.tok.batch_decode([[i] for i in ids]) if ids else []
        def decode(self, ids):
            return self.tok.decode(ids)
    T.token_table = lambda *a, **k: Old()
from harness.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(sys.argv[2:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "out": buf.getvalue(),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(path: str, argv: list[str]) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, path, *argv], capture_output=True, text=True, cwd=ROOT,
                       env={**__import__("os").environ, "COLUMNS": "200", "NO_COLOR": "1"})
    if p.returncode != 0:
        raise SystemExit(f"{path} run failed:\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", nargs="?", default=str(DEFAULT))
    ap.add_argument("--conversation", default="1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--html", action="store_true", help="write the page instead of the terminal view")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["view", a.capture, "--conversation", a.conversation]
        if a.html:
            argv += ["--html", str(Path(tmp) / "page.html"), "--force"]
        # both caches warm (what every run after the first meets), in a child: a process's peak memory
        # survives exec, so the bench itself stays small
        subprocess.run([sys.executable, "-c", "from harness.tokenizer import load_tokenizer, token_table; "
                        "load_tokenizer(), token_table()"], check=True, cwd=ROOT)
        res: dict[str, list[dict]] = {"old": [], "new": []}
        for _ in range(a.repeat):
            for path in ("old", "new"):
                res[path].append(run(path, argv))
        outs = {r["out"] for rs in res.values() for r in rs} if not a.html else set()
        if len(outs) > 1:
            raise SystemExit("old and new paths printed different views")
        if any(r["rc"] != 0 for rs in res.values() for r in rs):
            raise SystemExit(f"view exited {[r['rc'] for rs in res.values() for r in rs]}")
    med = {p: (statistics.median(r["wall"] for r in rs), statistics.median(r["rss_mb"] for r in rs))
           for p, rs in res.items()}
    print(f"harness {' '.join(argv[:4])}{' --html' if a.html else ''}  ({a.repeat} runs each, fresh interpreter)")
    for p, (wall, rss) in med.items():
        print(f"  {p:<4} {wall:6.2f} s  {rss:6.0f} MB peak")
    print(f"  old/new: {med['old'][0] / med['new'][0]:.1f}x time, {med['old'][1] / med['new'][1]:.1f}x memory"
          f"; new path {'under' if med['new'][0] < 1 else 'OVER'} 1 s")


if __name__ == "__main__":
    main()
