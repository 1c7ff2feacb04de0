"""A wheel install works as well as a checkout: built, installed into a new venv, run from elsewhere."""

import subprocess
import sys
import venv

import pytest


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(root / "dist"), str(repo)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    # a new venv of its own: the wheel and its declared dependencies, nothing of this checkout
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    wheel = next((root / "dist").glob("tito_harness-*.whl"))
    installed = subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                                "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


def run(root, *args):
    return subprocess.run([str(root / "venv" / "bin" / "python"), "-m", "harness.cli", *args], cwd=root,
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_carries_its_code_cassettes_and_expected_matrix(wheel_venv):
    where = subprocess.run([str(wheel_venv / "venv" / "bin" / "python"), "-c",
                            "import harness.recording.format as f, harness.compat.matrix as m; "
                            "print(f.__file__); print(m.EXPECTED.exists()); "
                            "print(f.shipped('real/vllm-0.32-cpu/rollout_4_turns_tools.yaml'))"],
                           cwd=wheel_venv, capture_output=True, text=True)
    lines = where.stdout.split()
    assert where.returncode == 0, where.stderr
    assert str(wheel_venv / "venv") in lines[0] and lines[1] == "True" and str(wheel_venv / "venv") in lines[2]


def test_demo_and_compat_run_from_the_wheel(wheel_venv):
    demo = run(wheel_venv, "demo")
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.count("Replaying a rollout recorded from a real server") == 2
    # without the compat extra: its clients are skipped with one line saying how to add them (the OpenAI SDK is a
    # dependency of the package itself: vLLM's message union is validated with its TypedDicts)
    compat = run(wheel_venv, "compat", "--clients", "tito:vllm_generate,openai-sdk,renderers,verifiers-token",
                 "--profiles", "vllm-0.31,vllm-0.32")
    assert compat.returncode == 0, compat.stdout[-2000:] + compat.stderr[-2000:]
    assert "0 cell(s) differ from expected.json" in compat.stdout
    assert "openai-sdk x vllm-0.32: pass" in compat.stderr
    assert "skipped (not installed): renderers, verifiers-token; add them with: pip install " \
           "'tito-harness[compat]'" in compat.stderr
