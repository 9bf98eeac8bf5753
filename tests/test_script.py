"""tf-lstm-char.py run as a user runs it: a subprocess, on a small text."""
import os
import re
import subprocess
import sys

import pytest

from conftest import SCRIPT

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind.\n" * 12
RULE = "-" * 72


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "hamlet.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path


@pytest.fixture
def no_tensorflow(tmp_path):
    """An environment in which importing TensorFlow fails loudly: a run that gets past
    argument checks into TensorFlow would show it."""
    fake = tmp_path / "fake"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text("raise SystemExit('tensorflow imported')\n")
    return dict(os.environ, PYTHONPATH=str(fake))


def run(args, cwd, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def samples_after_iter_lines(stdout, length):
    """The iteration numbers of the `iter N, loss: X` lines and the sample printed after each."""
    found = []
    for match in re.finditer(r"^iter +(\d+), loss: (\d+\.\d+)\n", stdout, re.MULTILINE):
        start = match.end() + len(RULE) + 1
        assert stdout[match.end():start] == RULE + "\n"
        found.append((int(match.group(1)), float(match.group(2)), stdout[start:start + length]))
        assert stdout[start + length:start + length + len(RULE) + 2] == "\n" + RULE + "\n"
    return found


TINY = ["--iterations", "25", "--hidden-dim", "16", "--seq-length", "10",
        "--sample-every", "10", "--sample-length", "40", "--seed", "7"]


def test_training_prints_losses_and_samples_and_saves_a_plot(workdir):
    result = run(["hamlet.txt", *TINY, "--plots-dir", "out"], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "TensorFlow's start-up noise reached the user"
    lines = result.stdout.splitlines()
    assert lines[0] == f"hamlet.txt: {len(TEXT):,} characters, {len(set(TEXT))} distinct"
    found = samples_after_iter_lines(result.stdout, 40)
    assert [it for it, _, _ in found] == [0, 10, 20, 24]
    for _, loss, sample in found:
        assert 0 < loss < 10
        assert len(sample) == 40 and set(sample) <= set(TEXT)
    assert re.match(r"trained 25 iterations in \d+s \(\d+\.\d\d iterations/s\)", lines[-3])
    assert lines[-1] == f"checkpoint: {os.path.join('checkpoints', 'hamlet', 'ckpt-25')}"
    with open(workdir / "out" / "hamlet_loss.png", "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_seed_makes_the_run_repeatable(workdir):
    outputs = [run(["hamlet.txt", *TINY, "--save-dir", f"run{i}"], workdir).stdout
               for i in range(2)]
    without_timing = [[line for line in out.splitlines()
                       if not line.startswith(("trained", "checkpoint"))] for out in outputs]
    assert without_timing[0] == without_timing[1]
    assert len(samples_after_iter_lines(outputs[0], 40)) == 4


def test_help_answers_without_importing_tensorflow(workdir, no_tensorflow):
    result = run(["--help"], workdir, no_tensorflow)
    assert result.returncode == 0
    for flag in ("TEXT_FILE", "--iterations", "--seq-length", "--hidden-dim", "--batch-size",
                 "--learning-rate", "--optimizer", "--sample-every", "--sample-length",
                 "--seed", "--encoding", "--plots-dir", "--save-dir", "--resume", "--sample",
                 "--temperature", "--prime", "--argmax"):
        assert flag in result.stdout
    assert "(default: 4001)" in result.stdout


@pytest.mark.parametrize("args, words", [
    (["--iterations", "0"], "--iterations: must be a positive integer"),
    (["--seq-length", "-5"], "--seq-length: must be a positive integer"),
    (["--hidden-dim", "big"], "invalid positive integer value: 'big'"),
    (["--learning-rate", "nan"], "--learning-rate: must be a positive finite number"),
    (["--batch-size", "2"], "only 1 is supported for now"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--temperature", "0"], "--temperature: must be a positive finite number"),
    (["--sample", "--resume"], "--sample and --resume do not go together"),
])
def test_bad_flags_are_one_line_before_tensorflow(workdir, no_tensorflow, args, words):
    result = run(["hamlet.txt", *args], workdir, no_tensorflow)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "missing.txt: no such file"),
    (lambda d: (d / "missing.txt").mkdir(), "missing.txt: is a folder"),
    (lambda d: (d / "missing.txt").write_bytes(b"caf\xe9 au lait\n" * 20),
     "not valid utf-8 at byte 3; try --encoding latin-1"),
    (lambda d: (d / "missing.txt").write_text("too short"),
     "9 characters is too short for --seq-length 100"),
])
def test_bad_text_files_are_one_line_before_tensorflow(workdir, no_tensorflow, make, words):
    make(workdir)
    result = run(["missing.txt"], workdir, no_tensorflow)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr
    assert "Traceback" not in result.stderr
