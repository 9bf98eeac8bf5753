"""Shared fixtures: the training script loaded as a module, and TensorFlow imported through it."""
import importlib.util
import os
import shutil
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


@pytest.fixture
def no_tensorflow(tmp_path):
    """An environment in which importing TensorFlow fails loudly: a run that gets past
    argument checks into TensorFlow would show it."""
    fake = tmp_path / "fake"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text("raise SystemExit('tensorflow imported')\n")
    return dict(os.environ, PYTHONPATH=str(fake))


def unprivileged():
    """A command prefix under which file permissions hold even for root, who otherwise reads
    and writes anything: tests of unreadable and unwritable paths run the script under it."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    if setpriv is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("running as root and cannot drop root's file access, so permissions "
                    "cannot be tested")
    return prefix


def files_of(folder):
    """Every file below `folder`, by relative path, with its bytes: equal means unchanged."""
    return {path.relative_to(folder): path.read_bytes()
            for path in folder.rglob("*") if path.is_file()}


def run_script(args, cwd, env=None, prefix=()):
    """tf-lstm-char.py run as a user runs it, in `cwd`; its exit code and text output."""
    return subprocess.run([*prefix, sys.executable, SCRIPT, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
