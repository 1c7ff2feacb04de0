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
    # the dependencies come from this interpreter's site-packages; the project itself only from the wheel
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "venv")
    py = root / "venv" / "bin" / "python"
    wheel = next((root / "dist").glob("tito_harness-*.whl"))
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                                str(wheel)], capture_output=True, text=True)
    if "no such option: --python" in installed.stderr:  # pip < 22.3
        installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                                    str(next((root / "venv" / "lib").glob("python3*")) / "site-packages"), str(wheel)],
                                   capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
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
    compat = run(wheel_venv, "compat")
    assert compat.returncode == 0, compat.stdout[-2000:] + compat.stderr[-2000:]
    assert "0 cell(s) differ from expected.json" in compat.stdout
