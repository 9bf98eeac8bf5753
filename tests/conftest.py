"""Shared fixtures: the training script loaded as a module, and TensorFlow imported through it."""
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tf-lstm-char.py")
sys.path.insert(0, REPO)


@pytest.fixture(scope="session")
def lstm():
    """tf-lstm-char.py as a module (its name has dashes, so it cannot be imported plainly)."""
    spec = importlib.util.spec_from_file_location("tf_lstm_char", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tf(lstm):
    return lstm.import_tensorflow()


def run_script(args, cwd, env=None):
    """tf-lstm-char.py run as a user runs it, in `cwd`; its exit code and text output."""
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
