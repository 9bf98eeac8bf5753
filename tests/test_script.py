"""tf-lstm-char.py run as a user runs it, on a small text: in a subprocess where start-up, the
terminal or the import of TensorFlow is tested, in this process otherwise."""
import csv
import dataclasses
import math
import os
import pty
import re
import subprocess
import sys

import pytest

from conftest import HAMLET as TEXT, SCRIPT, run_in_process as run, run_script

RULE = "-" * 72


@pytest.fixture
def hamlet_dir(tmp_path):
    (tmp_path / "hamlet.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path


REPORT = re.compile(
    r"^iter (\d+), loss: (\d+\.\d{6}) +\| epoch +(\d+\.\d\d)"
    r"(?: \| +(\d+\.\d) it/s +([\d,]+) chars/s \| (\d+:\d\d) elapsed, (\d+:\d\d) left)?\n",
    re.MULTILINE)
HELD_OUT = re.compile(
    r"^iter (\d+), held out +\| (val(?:\[:\d+\])?) (\d+\.\d{4}) \((\d+\.\d{3}) bits/char\)"
    r" \| (?:(the best so far)|best (\d+\.\d{4}) at iter (\d+))\n", re.MULTILINE)


def reports(stdout, length):
    """Each report line's fields (iteration, loss, epoch, it/s, chars/s, elapsed, left; None
    where there is none) and the sample printed after it."""
    found = []
    for match in REPORT.finditer(stdout):
        start = match.end() + len(RULE) + 1
        assert stdout[match.end():start] == RULE + "\n"
        it, loss, epoch, rate, chars, elapsed, left = match.groups()
        fields = (int(it), float(loss), float(epoch), rate and float(rate),
                  chars and int(chars.replace(",", "")), elapsed, left)
        found.append((fields, stdout[start:start + length]))
        assert stdout[start + length:start + length + len(RULE) + 2] == "\n" + RULE + "\n"
    return found


def held_out_scores(stdout):
    """Each held-out line's iteration, label, loss, bits/char and the better earlier report
    it names ((loss, iteration), or None where it is the best so far), checked to come after
    its report's sample and before the next report."""
    report_ends = {int(m.group(1)): stdout.index(RULE + "\n", stdout.index(RULE, m.end()) + 1)
                   for m in REPORT.finditer(stdout)}
    report_starts = sorted(m.start() for m in REPORT.finditer(stdout))
    found = []
    for match in HELD_OUT.finditer(stdout):
        it, label, loss, bits, _, best_loss, best_it = match.groups()
        assert report_ends[int(it)] < match.start(), f"iter {it}'s score came before its sample"
        later = [start for start in report_starts if start > report_ends[int(it)]]
        assert not later or match.start() < later[0], \
            f"iter {it}'s score came after the next report"
        found.append((int(it), label, float(loss), float(bits),
                      best_loss and (float(best_loss), int(best_it))))
    return found


TINY = ["--iterations", "25", "--hidden-dim", "16", "--seq-length", "10",
        "--sample-every", "10", "--sample-length", "40", "--seed", "7"]


def test_training_reports_losses_and_samples_and_saves_plot_and_history(hamlet_dir):
    result = run_script(["hamlet.txt", *TINY, "--plots-dir", "out"], hamlet_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "TensorFlow's start-up noise reached the user"
    lines = result.stdout.splitlines()
    held_out = round(len(TEXT) * 0.1)
    assert lines[0] == (f"hamlet.txt: {len(TEXT):,} characters, {len(set(TEXT))} distinct; "
                        f"training on {len(TEXT) - held_out:,}, holding out {held_out:,}")
    found = reports(result.stdout, 40)
    # Each report comes before its iteration's step; the last one closes the run.
    assert [fields[0] for fields, _ in found] == [0, 10, 20, 25]
    assert lines[1] == ("writing checkpoints to checkpoints/hamlet, the plot and history to "
                        "out/hamlet_loss.png and out/hamlet_history.csv")
    # As the post prints it: the untrained network, its loss log(vocabulary size).
    assert lines[2].startswith(f"iter 0, loss: {math.log(len(set(TEXT))):f} ")
    assert found[0][0][3:] == (None, None, None, None), "no speed before the first step"
    for (it, loss, epoch, rate, chars, _, _), sample in found:
        assert 0 < loss < 10
        assert epoch == pytest.approx(it * 10 / (len(TEXT) - held_out), abs=0.01)
        if it:
            assert chars == pytest.approx(rate * 10, rel=0.01, abs=1)
        assert len(sample) == 40 and set(sample) <= set(TEXT)
    assert found[-1][0][6] == "0:00"
    # Each report's held-out score follows its sample, once, and names the best before it.
    scores = held_out_scores(result.stdout)
    assert [it for it, *_ in scores] == [0, 10, 20, 25]
    best = None
    for it, label, val, bits, better in scores:
        assert label == "val" and 0 < val < 10
        assert bits == pytest.approx(val / math.log(2), abs=1e-3)
        assert better == (None if best is None or val < best[0] else best)
        best = (val, it) if better is None else best
    assert re.match(r"trained 25 iterations in \d+s \(\d+\.\d\d iterations/s\)", lines[-4])
    assert re.match(rf"validation loss on all {held_out} held-out characters: \d\.\d{{4}} nats, "
                    r"\d\.\d{3} bits per character; at the best report \((0|10|20|25)\), val "
                    r"\d\.\d{4} nats; evaluating took \d+\.\ds \(\d+\.\d% of the time\), of "
                    r"which \d+\.\ds was training slowed by the reports' scores beside it$",
                    lines[-3])
    assert lines[-2] == "loss plot: out/hamlet_loss.png, history: out/hamlet_history.csv"
    assert lines[-1].startswith("checkpoint: checkpoints/hamlet/ckpt-25, best: ")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.stdout), \
        "control characters in output that is not a terminal"
    with open(hamlet_dir / "out" / "hamlet_loss.png", "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(hamlet_dir / "out" / "hamlet_history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["iteration"]) for row in rows] == list(range(1, 26))
    assert [int(row["iteration"]) for row in rows if row["val_loss"]] == [10, 20, 25]
    assert [float(row["val_loss"]) for row in rows if row["val_loss"]] == \
        pytest.approx([val for _, _, val, _, _ in scores[1:]], abs=1e-4)
    assert float(rows[-1]["smoothed_loss"]) == pytest.approx(found[-1][0][1], abs=1e-4)


def test_without_validation_the_whole_text_is_trained_on(hamlet_dir):
    result = run(["hamlet.txt", *TINY, "--val-fraction", "0"], hamlet_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(f"training on {len(TEXT):,}, holding out 0")
    found = reports(result.stdout, 40)
    assert len(found) == 4 and held_out_scores(result.stdout) == []
    assert "validation" not in result.stdout and "best" not in result.stdout


def test_a_seed_makes_the_run_repeatable(hamlet_dir):
    outputs = [run(["hamlet.txt", *TINY, "--save-dir", f"run{i}"], hamlet_dir).stdout
               for i in range(2)]
    without_timing = [([(fields[:3], sample) for fields, sample in reports(out, 40)],
                       held_out_scores(out)) for out in outputs]
    assert len(without_timing[0][0]) == 4 and len(without_timing[0][1]) == 4
    assert without_timing[0] == without_timing[1]


def test_a_terminal_gets_a_progress_bar(hamlet_dir):
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "hamlet.txt", "--iterations", "150", "--hidden-dim", "16",
         "--seq-length", "10", "--sample-every", "100", "--sample-length", "10"],
        cwd=hamlet_dir, stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    output = b""
    try:
        while chunk := read_or_eof(main):
            output += chunk
    finally:
        process.wait(timeout=300)
        os.close(main)
    assert process.returncode == 0
    text = output.decode()
    assert re.search(r"\r\[#*\.*\] \d+/100 to the next sample", text)
    # The bar is wiped before each report line, so the lines stay readable.
    assert re.search(r"\r\x1b\[Kiter 100, loss: ", text)


def read_or_eof(fd):
    try:
        return os.read(fd, 4096)
    except OSError:  # Linux reports the closed end of a pty as EIO
        return b""


def test_help_answers_without_importing_tensorflow(hamlet_dir, no_tensorflow):
    result = run_script(["--help"], hamlet_dir, no_tensorflow)
    assert result.returncode == 0
    for flag in ("TEXT_FILE", "--iterations", "--seq-length", "--hidden-dim", "--batch-size",
                 "--learning-rate", "--optimizer", "--sample-every", "--sample-length",
                 "--seed", "--encoding", "--plots-dir", "--save-dir", "--resume", "--sample",
                 "--temperature", "--prime", "--argmax", "--val-fraction", "--logdir",
                 "--best", "--clip", "--sampler", "--gradient", "--bf16", "--export"):
        assert flag in result.stdout
    assert "(default: 4001)" in result.stdout


def test_the_readme_stays_a_guide_of_at_most_20000_bytes():
    assert os.path.getsize(os.path.join(os.path.dirname(SCRIPT), "README.md")) <= 20_000


def test_every_option_has_one_flag_with_its_help(lstm):
    named = [name for helps in lstm.FLAG_HELP.values() for name in helps]
    assert sorted(named) == sorted(option.name for option in dataclasses.fields(lstm.Options))


@pytest.mark.parametrize("name, content, distinct", [
    ("one.txt", "a" * 600, 1),
    ("crlf.txt", "Hello there,\r\nGeneral Kenobi.\r\n" * 20, len(set("Hello there,\nGeneral "
                                                                       "Kenobi."))),
    ("zh.txt", "".join(chr(0x4E00 + (i * 7919) % 3000) for i in range(12000)), 3000),
])
def test_unusual_texts_train(hamlet_dir, name, content, distinct):
    (hamlet_dir / name).write_bytes(content.encode("utf-8"))
    result = run([name, "--iterations", "3", "--hidden-dim", "8", "--seq-length", "10",
                  "--sample-length", "30"], hamlet_dir)
    assert result.returncode == 0, result.stderr
    assert f" {distinct} distinct;" in result.stdout.splitlines()[0]
    found = reports(result.stdout, 30)
    assert len(found) == 2
    assert all(set(sample) <= set(content) - {"\r"} for _, sample in found)


@pytest.mark.parametrize("layers, lower", [
    ([], "--hidden-dim, --batch-size or --seq-length"),
    (["--num-layers", "2"], "--num-layers, --hidden-dim, --batch-size or --seq-length")])
def test_running_out_of_memory_all_the_same_is_one_line(hamlet_dir, lstm, tf, monkeypatch, layers,
                                                        lower):
    """Where TensorFlow's allocator fails despite the estimate, the user reads one line."""
    def out_of_memory(*unused):
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[60068,240000] and type float")
    monkeypatch.setattr(lstm, "train", out_of_memory)
    # As run_in_process: --seed's op determinism would outlast the test in this process.
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: None)
    monkeypatch.chdir(hamlet_dir)
    with pytest.raises(lstm.UserError) as refused:
        lstm.main(["hamlet.txt", *TINY, *layers])
    assert str(refused.value) == (
        "out of memory (OOM when allocating tensor with shape[60068,240000] and type float); "
        f"lower {lower}")
