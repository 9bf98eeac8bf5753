"""Bad input, case by case: each is one line on stderr and a non-zero exit, found before
TensorFlow is imported, and every file the user had before is left byte for byte as it was.

Mistakes in checkpoints (missing, damaged, from another text or shape) are in
test_checkpoints.py, beside the checkpoints they damage.
"""
import re

import pytest

from conftest import HAMLET, files_of, run_script as run, unprivileged


@pytest.fixture
def earlier_run(tmp_path):
    """story.txt to train on, and what an earlier run left: its plot, its history and a
    checkpoint."""
    (tmp_path / "story.txt").write_text(HAMLET, encoding="utf-8")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "story_loss.png").write_bytes(b"\x89PNG an earlier plot")
    (tmp_path / "plots" / "story_history.csv").write_text("iteration,loss\n0,4.1\n")
    earlier = tmp_path / "checkpoints" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (earlier / "ckpt-5.data-00000-of-00001").write_bytes(bytes(range(256)))
    (earlier / "ckpt-5.json").write_text('{"iteration": 5}')
    return tmp_path


def assert_one_line_and_nothing_lost(result, code, words, before, folder):
    assert result.returncode == code, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert words in result.stderr, result.stderr
    assert result.stderr.startswith("tf-lstm-char.py: error: ")
    assert "Traceback" not in result.stderr
    after = files_of(folder)
    assert {path: after.get(path) for path in before} == before


@pytest.mark.parametrize("args, words", [
    (["--iterations", "0"], "--iterations: must be a positive integer, got 0"),
    (["--iterations", "-3"], "--iterations: must be a positive integer, got -3"),
    (["--minutes", "0"], "--minutes: must be a positive finite number, got 0"),
    (["--minutes", "ten"], "--minutes: invalid positive number value: 'ten'"),
    (["--seq-length", "0"], "--seq-length: must be a positive integer"),
    (["--seq-length", "-5"], "--seq-length: must be a positive integer"),
    (["--hidden-dim", "0"], "--hidden-dim: must be a positive integer"),
    (["--hidden-dim", "big"], "--hidden-dim: invalid positive integer value: 'big'"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--batch-size", "-2"], "--batch-size: must be a positive integer"),
    (["--sample-every", "0"], "--sample-every: must be a positive integer"),
    (["--sample-length", "0"], "--sample-length: must be a positive integer"),
    (["--sample-length", "-1"], "--sample-length: must be a positive integer"),
    (["--learning-rate", "0"], "--learning-rate: must be a positive finite number"),
    (["--learning-rate", "-0.01"], "--learning-rate: must be a positive finite number"),
    (["--learning-rate", "nan"], "--learning-rate: must be a positive finite number"),
    (["--learning-rate", "inf"], "--learning-rate: must be a positive finite number"),
    (["--temperature", "0"], "--temperature: must be a positive finite number"),
    (["--temperature", "-1"], "--temperature: must be a positive finite number"),
    (["--val-fraction", "0.6"], "--val-fraction: must be from 0 to 0.5, got 0.6"),
    (["--val-fraction", "-0.1"], "--val-fraction: must be from 0 to 0.5, got -0.1"),
    (["--clip", "0"], "--clip: must be a positive finite number"),
    (["--seed", "-1"], "--seed: must be 0 or more"),
    (["--num-layers", "0"], "--num-layers: must be a positive integer"),
    (["--dropout", "1"], "--dropout: must be from 0 up to (not including) 1, got 1"),
    (["--dropout", "-0.2"], "--dropout: must be from 0 up to (not including) 1, got -0.2"),
    (["--dropout", "half"], "--dropout: invalid probability value: 'half'"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--sample", "--resume"], "--sample and --resume do not go together"),
    (["--best"], "--best goes with --sample"),
    (["--visualize", "--sample"], "--sample and --visualize do not go together"),
    (["--passage-length", "50"], "--passage-length goes with --visualize"),
    (["--passage-start", "-1", "--visualize"], "--passage-start: must be 0 or more"),
    (["--visualize", "--passage-length", "99999999"], "--passage-length: must be at most 20,000"),
    (["--checkpoint", "ckpt/ckpt-20"],
     "--checkpoint goes with --sample, --visualize, --resume or --export"),
    (["--export", "models", "--sample"], "--sample and --export do not go together"),
    (["--export", "models", "--temperature", "0.5"],
     "--temperature does not go with --export, which takes only TEXT_FILE, --save-dir, "
     "--checkpoint and --best: the prime, length, temperature and seed are given to the "
     "exported model at each call"),
    (["--export", "models", "--iterations", "10"], "--iterations does not go with --export"),
    (["--export"], "argument --export: expected one argument"),
    (["--sample", "--best", "--checkpoint", "ckpt/ckpt-20"],
     "--checkpoint and --best do not go together"),
    (["--resume", "--save-dir", "ckpt", "--checkpoint", "ckpt/ckpt-20"],
     "--checkpoint and --save-dir do not go together"),
    (["--visualize", "--passage-length", "0"], "--passage-length: must be a positive integer"),
])
def test_bad_flags(earlier_run, no_tensorflow, args, words):
    before = files_of(earlier_run)
    result = run(["story.txt", *args], earlier_run, no_tensorflow)
    assert result.stdout == ""
    assert_one_line_and_nothing_lost(result, 2, words, before, earlier_run)


def write(name, content):
    def make(folder):
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    return make


def make_folder(name):
    return lambda folder: (folder / name).mkdir()


def lock(name, mode):
    """Take away permissions from `name` (root is held to them by unprivileged())."""
    return lambda folder: (folder / name).chmod(mode)


BAD_INPUTS = {
    # The text file.
    "missing": ([], ["gone.txt"], "gone.txt: no such file"),
    "a folder": ([make_folder("folder.txt")], ["folder.txt"], "folder.txt: is a folder"),
    "unreadable": ([lock("story.txt", 0o000)], ["story.txt"], "story.txt: permission denied"),
    "empty": ([write("empty.txt", b"")], ["empty.txt"], "empty.txt: is empty"),
    "shorter than a window": (
        [write("short.txt", "too short")], ["short.txt"],
        "8 characters to train on (after holding out 1) is too short for --seq-length 100; it "
        "needs at least 101"),
    "too short once the held-out part is taken": (
        [write("short.txt", "x" * 110)], ["short.txt"],
        "99 characters to train on (after holding out 11) is too short"),
    "too short without validation": (
        [write("short.txt", "x" * 100)], ["short.txt", "--val-fraction", "0"],
        "short.txt: 100 characters to train on is too short for --seq-length 100"),
    "a held-out part too small to score": (
        [], ["story.txt", "--val-fraction", "0.0001", "--seq-length", "10"],
        "--val-fraction 0.0001 holds out 0 characters, too few to evaluate"),
    "not valid in the encoding": (
        [write("latin.txt", b"caf\xe9 au lait\n" * 20)], ["latin.txt"],
        "latin.txt: not valid utf-8 at byte 3; try --encoding latin-1"),
    "an unknown encoding": ([], ["story.txt", "--encoding", "klingon"],
                            "--encoding klingon: unknown encoding"),
    "binary": ([write("data.bin", b"text" * 50 + b"\x00\x01\x02" + b"x" * 500)], ["data.bin"],
               "data.bin: looks like a binary file (a NUL character at position 200)"),
    "a batch whose tracks are shorter than a window": (
        [], ["story.txt", "--batch-size", "10"],
        "--batch-size 10 cuts the 821 characters to train on into tracks of 82, shorter than "
        "one window of --seq-length 100 + 1; use a smaller batch"),
    "a model too big for the machine": (
        [], ["story.txt", "--hidden-dim", "1000000"],
        "--hidden-dim 1000000 --batch-size 1 --seq-length 100 needs about"),
    "a prime the text does not have": ([], ["story.txt", "--prime", "Zoë"],
                                       "characters the model does not know: 'Z' 'ë'"),
    # Where the output goes.
    "--plots-dir a file": ([], ["story.txt", "--plots-dir", "plots/story_loss.png"],
                           "--plots-dir plots/story_loss.png: is a file, not a folder"),
    "--plots-dir not writable": ([lock("plots", 0o555)], ["story.txt"],
                                 "--plots-dir plots: not writable"),
    "--save-dir a file": ([], ["story.txt", "--save-dir", "story.txt"],
                          "--save-dir story.txt: is a file, not a folder"),
    "--save-dir not writable": ([make_folder("locked"), lock("locked", 0o555)],
                                ["story.txt", "--save-dir", "locked"],
                                "--save-dir locked: not writable"),
    "--save-dir in a folder that is not writable": (
        [make_folder("locked"), lock("locked", 0o555)],
        ["story.txt", "--save-dir", "locked/ckpt"], "--save-dir locked/ckpt: Permission denied"),
    "--save-dir unreadable": ([make_folder("locked"), lock("locked", 0o000)],
                              ["story.txt", "--save-dir", "locked"],
                              "--save-dir locked: cannot read its checkpoint list (Permission "
                              "denied)"),
    "no --save-dir, and checkpoints/ not writable": (
        [lock("checkpoints", 0o555)], ["story.txt"],
        "checkpoints/story: Permission denied; give a --save-dir"),
    "--save-dir holding a checkpoint already": (
        [], ["story.txt", "--save-dir", "checkpoints/earlier"],
        "checkpoints/earlier holds a checkpoint already; add --resume"),
    "--logdir a file": ([], ["story.txt", "--logdir", "story.txt"],
                        "--logdir story.txt: is a file, not a folder"),
    # Where the checkpoint should be (damaged and mismatched ones: test_checkpoints.py).
    "--sample with no checkpoint": ([], ["--sample", "--save-dir", "nowhere"],
                                    "no checkpoint in nowhere; train first"),
    "--resume with --save-dir a file": ([], ["--resume", "--save-dir", "story.txt"],
                                        "--save-dir story.txt: is a file, not a folder"),
    "--sample with --save-dir unreadable": (
        [make_folder("locked"), lock("locked", 0o000)], ["--sample", "--save-dir", "locked"],
        "--save-dir locked: cannot read its checkpoint list (Permission denied)"),
    "a checkpoint list that is not text": (
        [make_folder("garbled"), write("garbled/checkpoint", b"\xff\xfe\x00garbage")],
        ["--resume", "--save-dir", "garbled"],
        "--save-dir garbled: cannot read its checkpoint list (not a checkpoint list)"),
}
PERMISSION_CASES = {"unreadable", "--plots-dir not writable", "--save-dir not writable",
                    "no --save-dir, and checkpoints/ not writable",
                    "--save-dir in a folder that is not writable", "--save-dir unreadable",
                    "--sample with --save-dir unreadable"}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_files_and_folders(earlier_run, no_tensorflow, case):
    setup, args, words = BAD_INPUTS[case]
    for make in setup:
        make(earlier_run)
    before = files_of(earlier_run)
    prefix = unprivileged() if case in PERMISSION_CASES else []
    result = run(args, earlier_run, no_tensorflow, prefix)
    assert_one_line_and_nothing_lost(result, 1, words, before, earlier_run)


def test_a_model_too_big_says_what_it_needs_and_what_to_lower(earlier_run, no_tensorflow):
    result = run(["story.txt", "--hidden-dim", "1000000", "--batch-size", "2"], earlier_run,
                 no_tensorflow)
    needed, available = map(float, re.search(
        r"needs about ([\d,.]+) GiB .* than the ([\d,.]+) GiB of memory available",
        result.stderr.replace(",", "")).groups())
    # 1,000,084 x 4,000,000 kernel numbers alone, times seven copies of 4 bytes.
    assert needed > 7 * 4 * 1_000_084 * 4_000_000 / 2**30
    assert 0 < available < needed
    assert result.stderr.rstrip().endswith("lower --hidden-dim, --batch-size or --seq-length")


def test_a_deep_model_too_big_names_the_layers_among_what_to_lower(earlier_run, no_tensorflow):
    result = run(["story.txt", "--hidden-dim", "30000", "--num-layers", "40"], earlier_run,
                 no_tensorflow)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "--num-layers 40 --hidden-dim 30000 --batch-size 1 --seq-length 100 needs" in \
        result.stderr
    assert result.stderr.rstrip().endswith(
        "lower --num-layers, --hidden-dim, --batch-size or --seq-length")
