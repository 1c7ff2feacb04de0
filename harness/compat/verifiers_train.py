"""verifiers 0.4's `TrainClient` (`verifiers.v1.clients.train`): what a verifiers user runs today. It
renders with `renderers`, calls `/inference/v1/generate`, and bridges turns with
`renderer.bridge_to_next_turn` where its renderer can.

verifiers 0.4 and 0.3 (the legacy token client's generation) cannot share an environment, so this
client runs in a venv of its own (`scripts/compat_venvs.sh` makes it; `HARNESS_VERIFIERS04_PYTHON`
points elsewhere): the scenario is `verifiers_train_run.py`, run there, driven from here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from .base import Adapter, ScenarioFailed, Target

VENV_PYTHON = Path.home() / ".cache" / "tito-harness" / "venvs" / "verifiers-0.4" / "bin" / "python"


def side_python() -> Path:
    return Path(os.environ.get("HARNESS_VERIFIERS04_PYTHON") or VENV_PYTHON)


class VerifiersTrain(Adapter):
    name = "verifiers-train"
    package = "verifiers 0.4 (own venv)"

    def available(self) -> str | None:
        py = side_python()
        if not py.exists():
            return f"verifiers 0.4 needs a venv of its own, not found at {py} (bash scripts/compat_venvs.sh makes it)"
        return None

    def applies(self, target: Target) -> str | None:
        return None if target.serves("generate") else "TrainClient needs /inference/v1/generate, which this server lacks"

    async def run(self, target: Target) -> None:
        from ..tokenizer import default_tokenizer_dir

        args = [str(side_python()), "-m", "harness.compat.verifiers_train_run", target.base_url, target.model,
                str(default_tokenizer_dir("chatml")), *(["--moe"] if target.moe else [])]
        done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=300)
        lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
        if not lines:
            raise ScenarioFailed(f"the verifiers 0.4 venv did not run the scenario: {done.stderr.strip()[-300:]}")
        result = json.loads(lines[-1])
        if not result["ok"]:
            kind, _, message = result["error"].partition(": ")
            raise type(kind or "ClientError", (Exception,), {})(message)


ADAPTERS = [VerifiersTrain()]
