import json
import subprocess
import sys

import pytest


def _run(repo_root, *args):
    return subprocess.run([sys.executable, "tools/analyze_model.py", *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, params, gflops", [
    (("--arch", "resnet50"), 25_557_032, 3.858),
    (("--arch", "resnet50", "--stride-in-3x3"), 25_557_032, 4.089),
    (("--arch", "cifar_resnet20"), 269_722, 0.0408),
])
def test_json_last_line(repo_root, args, params, gflops):
    proc = _run(repo_root, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["arch"] == args[1]
    assert result["params"] == params
    assert result["flops"] / 1e9 == pytest.approx(gflops, abs=1e-3)
    assert "res4" in proc.stdout  # the per-stage table


def test_unknown_arch_is_one_sentence(repo_root):
    proc = _run(repo_root, "--arch", "resnet51")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: Unknown architecture 'resnet51'")
    assert "Traceback" not in proc.stderr
