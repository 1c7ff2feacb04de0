#!/usr/bin/env bash
# Clients of the compatibility matrix that cannot share the project's environment get a venv of their
# own: verifiers 0.4 (TrainClient) beside the compat extra's verifiers 0.3. `harness compat` finds it
# at ~/.cache/tito-harness/venvs/verifiers-0.4 (HARNESS_VERIFIERS04_PYTHON overrides).
#   bash scripts/compat_venvs.sh [PROJECT]     # PROJECT: this checkout (default) or a built wheel
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PROJECT=${1:-$HERE}
VENV=${HARNESS_VENVS:-$HOME/.cache/tito-harness/venvs}/verifiers-0.4
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "verifiers==0.4.0" 2>&1 | grep -v "^WARNING: Location" || true
if [ -d "$PROJECT" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$PROJECT" 2>&1 | grep -v "^WARNING: Location" || true
else
  "$VENV/bin/pip" install -q --disable-pip-version-check "$PROJECT" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$VENV/bin/python" -c "import verifiers.v1.clients.train, harness.compat.verifiers_train_run" \
  && echo "verifiers 0.4 venv ready: $VENV"
