"""Captures at scale: record N interleaved conversations through the recorder, then time the tools on them.

    python bench/capture.py [--exchanges 5000,20000] [--turns 5] [--concurrency 64]
    python bench/capture.py --exchanges 100000,1000000 --synthetic 5000 --skip-inspect

`--synthetic B`: record B exchanges live once, then write each size in the recorder's exact format from
those recorded conversations (copies with their own journal ids and arrival times), so 10^6 exchanges
need no hour of live traffic; the first size is also recorded live when it is at most B, and the
per-exchange cost of both is printed side by side. Every size also gets the floor (read the same bodies
and parse each with orjson.loads, in one process) and the old replay start-up (every capture parsed
whole into the in-memory index, as before the request index) beside the new one.

For each size: a fake Dynamo (`harness fake --server dynamo`, its own process) behind `harness record`
(its own process), and N/turns conversations of our client on `dynamo_chat` run concurrently through it,
so their turns interleave in the capture as production rollouts do. Then, each in a fresh process:
- `harness inspect --json` (the per-exchange report that came before captures), time and peak memory;
- `harness audit --json` (conversations and anomalies), time and peak memory;
- `harness cassette extract --conversation ID` of one conversation in the middle of the capture;
- `harness replay` start-up: from launch until it answers /health.

Targets, as ratios within one run: audit time at 4x the exchanges <= 4.5x the smaller's (linear);
audit peak memory at 4x <= 1.3x (flat); extract of one conversation <= 0.1x the audit's time on the
same capture.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from fake_server import free_port, wait_port  # noqa: E402

HARNESS = [sys.executable, "-m", "harness.cli"]


def serve(args: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([*HARNESS, *args, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


async def drive(base_url: str, conversations: int, turns: int, concurrency: int) -> int:
    from harness.client import ClientConfig, TitoClient

    client = TitoClient(ClientConfig(base_url=base_url, model="tiny-qwen", renderer_transport="dynamo_chat",
                                     parity_policy="off", check_context=False))
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(k: int) -> None:
        nonlocal done
        async with gate:
            convo = client.conversation()
            messages = [{"role": "user", "content": f"Question {k}: how many moons has planet {k % 97}?"}]
            for t in range(turns):
                result = await convo.turn(messages, None, max_tokens=24, seed=k * 31 + t)
                messages = [*messages, result.message, {"role": "user", "content": f"And after {t + 1} more?"}]
                done += 1
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(one(k) for k in range(conversations)))
    finally:
        await client.aclose()
    return done


def record(path: Path, exchanges: int, turns: int, concurrency: int) -> float:
    fake, fport = serve(["fake", "dynamo"])
    rec, rport = serve(["record", "--upstream", f"http://127.0.0.1:{fport}", "--cassette", str(path), "--quiet"])
    try:
        t0 = time.perf_counter()
        asyncio.run(drive(f"http://127.0.0.1:{rport}/v1", exchanges // turns, turns, concurrency))
        took = time.perf_counter() - t0
    finally:
        for p in (rec, fake):
            p.terminate()
            p.wait(60)
    return took


def measure_one(args: list[str]) -> tuple[float, float, str]:
    code = ("import json,resource,subprocess,sys,time;t=time.perf_counter();"
            "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "print(json.dumps([time.perf_counter()-t,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,"
            "p.returncode,p.stdout,p.stderr[-2000:]]))")
    raw = subprocess.run([sys.executable, "-c", code, *HARNESS, *args], capture_output=True, text=True).stdout
    took, peak, rc, stdout, stderr = json.loads(raw)
    if rc not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({rc}): {stderr}")
    return took, peak, stdout


def replay_startup(path: Path) -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([*HARNESS, "replay", str(path), "--port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                time.sleep(0.05)
            if proc.poll() is not None:
                raise SystemExit("replay exited before answering")
    finally:
        proc.terminate()
        proc.wait(30)


def synthesize(base: Path, out: Path, n: int) -> None:
    """`n` exchanges in the recorder's exact layout, copied from the recorded exchanges of `base`, written
    a batch at a time as the recorder appends them (flat memory)."""
    import re

    from harness.recording.format import Cassette, end_line, items_yaml

    src = Cassette.load(base, resolve_blobs=False)
    texts = [items_yaml([i]) for i in src.interactions]
    head = Cassette([], src.meta).to_yaml().split("interactions: []")[0]
    stamp = re.compile(r"\n      recorded_at: ([0-9.]+)\n")
    ident = re.compile(r"\n      id: ([^\n]+)\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write(head + "interactions:\n")
        written, batch = 0, []
        while written < n:
            copy = written // len(texts)
            text = texts[written % len(texts)]
            text = ident.sub(lambda m: f"\n      id: {m.group(1)}c{copy}\n", text, 1)
            text = stamp.sub(lambda m: f"\n      recorded_at: {float(m.group(1)) + copy * 3600:.6f}\n", text, 1)
            batch.append(text)
            written += 1
            if len(batch) == 256 or written == n:
                f.write("".join(batch) + end_line(written))
                batch = []


PEAK = "def peak():\n    return int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024\n"
# (VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's size, VmHWM starts afresh at exec)
FLOOR = PEAK + r'''
import json, resource, sys, time
import orjson
from harness.recording.format import iter_spans
t = time.perf_counter()
n = 0
with open(sys.argv[1], "rb") as f:
    for span in iter_spans(sys.argv[1]):
        f.seek(span.start)
        raw = f.read(span.end - span.start)
        for key in (b"\n    body: |-\n", b"\n      string: |-\n"):  # the bodies: pretty JSON blocks
            at = raw.find(key)
            if at != -1:
                end = raw.find(b"\n    ", at + len(key) + 1)
                while end != -1 and raw[end + 5:end + 6] == b" ":
                    end = raw.find(b"\n    ", end + 1)
                try:
                    orjson.loads(raw[at + len(key):end if end != -1 else len(raw)])
                except orjson.JSONDecodeError:
                    pass
        n += 1
print(json.dumps([time.perf_counter() - t, peak(), n]))
'''

OLD_REPLAY = PEAK + r'''
import json, resource, sys, time
t = time.perf_counter()
from harness.recording.format import Cassette
from harness.recording.replay import ReplayIndex
index = ReplayIndex([Cassette.load(sys.argv[1])])
print(json.dumps([time.perf_counter() - t, peak(), index.count]))
'''

NEW_REPLAY = PEAK + r'''
import json, resource, sys, time
t = time.perf_counter()
from harness.recording.replay import load_index
opened = time.perf_counter()
index = load_index([sys.argv[1]])
print(json.dumps([time.perf_counter() - t, peak(), index.count, time.perf_counter() - opened]))
'''


def in_child(code: str, *args: str) -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exchanges", default="5000,20000")
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--keep", help="keep the captures in this directory")
    ap.add_argument("--skip-inspect", action="store_true", help="do not time the old per-exchange inspect")
    ap.add_argument("--synthetic", type=int, default=0, metavar="B",
                    help="generate each size from B exchanges recorded live (see above)")
    ap.add_argument("--skip-old-replay", action="store_true", help="do not time the whole-load replay start-up")
    ap.add_argument("--replay-only", action="store_true", help="time replay start-up alone at each size")
    a = ap.parse_args()
    sizes = [int(x) for x in a.exchanges.split(",")]
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench-capture-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    base = None
    if a.synthetic:
        base = work / f"recorded-{a.synthetic}.yaml"
        if not base.exists():
            took = record(base, a.synthetic, a.turns, a.concurrency)
            print(f"recorded {a.synthetic} exchanges live in {took:.1f} s (the synthetic captures' source)", flush=True)
    for n in sizes:
        path = work / f"capture-{n}.yaml"
        if base is not None and not path.exists():
            t0 = time.perf_counter()
            synthesize(base, path, n)
            print(f"synthesized {n} exchanges from {base.name} in {time.perf_counter() - t0:.1f} s: "
                  f"{path.stat().st_size / 1e6:.0f} MB", flush=True)
        if not path.exists():
            took = record(path, n, a.turns, a.concurrency)
            print(f"recorded {n} exchanges ({n // a.turns} conversations x {a.turns} turns) in {took:.1f} s: "
                  f"{path.stat().st_size / 1e6:.0f} MB", flush=True)
        row = {"mb": path.stat().st_size / 1e6}
        if a.replay_only:  # 10^6 exchanges: replay start-up alone (an audit of 7 GB takes its time)
            row["replay"] = replay_startup(path)
            row["replay_again"] = replay_startup(path)
            row["replay_new"] = in_child(NEW_REPLAY, str(path))
            print(f"{n:>7} exchanges, {row['mb']:.0f} MB: replay start-up to /health {row['replay']:.2f} s the first "
                  f"time (builds the request index), {row['replay_again']:.2f} s after; the index opens in "
                  f"{row['replay_new'][3]:.3f} s ({row['replay_new'][0]:.2f} s with the interpreter and imports), "
                  f"{row['replay_new'][1]:.0f} MB peak (target: <= 1 s, <= 150 MB)",
                  flush=True)
            continue
        if not a.skip_inspect:
            row["inspect"] = measure_one(["inspect", str(path), "--json"])[:2]
        t, m, stdout = measure_one(["audit", str(path), "--json"])
        report = json.loads(stdout)
        row["audit"] = (t, m)
        row["conversations"] = report["conversations"]
        convs = json.loads(measure_one(["cassette", "conversations", str(path), "--json"])[2])["conversations"]
        pick = convs[len(convs) // 2]["id"]
        out = work / f"one-{n}.yaml"
        row["extract"] = measure_one(["cassette", "extract", str(path), "--conversation", str(pick), "-o", str(out),
                                      "--force"])[:2]
        row["replay"] = replay_startup(path)  # (the first start builds the request index beside the capture)
        row["replay_again"] = replay_startup(path)
        row["replay_new"] = in_child(NEW_REPLAY, str(path))
        if not a.skip_old_replay:
            row["replay_old"] = in_child(OLD_REPLAY, str(path))[:2]
        row["floor"] = in_child(FLOOR, str(path))[:2]
        rows[n] = row
        print(f"{n:>7} exchanges, {row['mb']:.0f} MB, {row['conversations']} conversations:", flush=True)
        for k in ("inspect", "audit", "extract"):
            if k in row:
                print(f"    {k:<8} {row[k][0]:6.2f} s  {row[k][1]:6.0f} MB peak")
        print(f"    floor    {row['floor'][0]:6.2f} s  {row['floor'][1]:6.0f} MB peak   (read the bodies, orjson.loads "
              f"each); audit / floor {row['audit'][0] / row['floor'][0]:.2f}x (target <= 3x)")
        print(f"    replay start-up to /health: {row['replay']:.2f} s the first time (builds the request index), "
              f"{row['replay_again']:.2f} s after")
        old = row.get("replay_old")
        print(f"    replay index: new {row['replay_new'][0]:.2f} s (opening it {row['replay_new'][3]:.3f} s) "
              f"{row['replay_new'][1]:.0f} MB peak"
              + (f"; old (whole load) {old[0]:.2f} s {old[1]:.0f} MB peak" if old else "")
              + "   (target: <= 1 s, <= 150 MB)", flush=True)
    if len(sizes) >= 2:
        lo, hi = rows[sizes[0]], rows[sizes[-1]]
        x = sizes[-1] / sizes[0]
        print(f"\nat {x:.0f}x the exchanges:")
        for k in ("inspect", "audit"):
            if k in lo:
                print(f"    {k:<8} time {hi[k][0] / lo[k][0]:.2f}x, peak memory {hi[k][1] / lo[k][1]:.2f}x"
                      + ("   (targets: <= 4.5x, <= 1.3x)" if k == "audit" else ""))
    for n, row in rows.items():
        if "extract" not in row:
            continue
        print(f"extract / audit at {n}: {row['extract'][0] / row['audit'][0]:.3f}x   (target: <= 0.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
