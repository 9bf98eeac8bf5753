"""Runs without --save-dir: each fresh run takes a folder of its own, and --resume and
--sample find the latest one. On the default text, the collected works."""
import os
import re
import subprocess
import sys

from conftest import HAMLET as TEXT, SCRIPT, files_of, run_in_process as run, run_script

SMALL = ["--hidden-dim", "16", "--sample-length", "50"]


def outputs_of(folder, name):
    """The files a run called `name` wrote: its checkpoints, plot and history."""
    files = {("checkpoints", path): data
             for path, data in files_of(folder / "checkpoints" / name).items()}
    for suffix in ("_loss.png", "_history.csv"):
        files["plots", name + suffix] = (folder / "plots" / (name + suffix)).read_bytes()
    return files


def test_the_main_command_runs_twice_and_keeps_the_first_run(tmp_path):
    first = run(["--iterations", "3", "--sample-every", "1", *SMALL], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "writing checkpoints to checkpoints/shakespeare," in first.stdout
    kept = outputs_of(tmp_path, "shakespeare")
    assert ("checkpoints", "ckpt-3.json") in {(kind, str(path)) for kind, path in kept}

    second = run(["--iterations", "3", "--sample-every", "1", *SMALL], tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[1] == (
        "writing checkpoints to checkpoints/shakespeare-2, the plot and history to "
        "plots/shakespeare-2_loss.png and plots/shakespeare-2_history.csv")
    assert outputs_of(tmp_path, "shakespeare") == kept, "the second run touched the first"
    assert (tmp_path / "plots" / "shakespeare-2_loss.png").exists()

    # The works: the last tenth held out, a slice of it scored at each report, all at the end.
    assert first.stdout.splitlines()[0].endswith(
        "shakespeare.txt: 5,057,362 characters, 84 distinct; training on 4,551,626, "
        "holding out 505,736 (the first 20,000 scored at each report, all at the end)")
    assert len(re.findall(r"^iter \d+, held out +\| val\[:20000\] ", second.stdout,
                          re.MULTILINE)) == 4
    assert re.search(r"^validation loss on all 505,736 held-out characters: \d\.\d{4} nats",
                     second.stdout, re.MULTILINE)

    sampled = run(["--sample", "--sample-length", "40"], tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stderr == ("tf-lstm-char.py: sampling from checkpoints/shakespeare-2/"
                              "ckpt-3, the latest run of its text\n")
    assert len(sampled.stdout) == 41


def test_runs_started_together_take_folders_of_their_own(tmp_path):
    (tmp_path / "hamlet.txt").write_text(TEXT, encoding="utf-8")
    command = [sys.executable, SCRIPT, "hamlet.txt", "--iterations", "20", "--seq-length",
               "10", "--sample-every", "10", *SMALL]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results
    folders = sorted(re.search(r"writing checkpoints to (\S+),", out).group(1)
                     for out, _ in results)
    assert folders == ["checkpoints/hamlet", "checkpoints/hamlet-2"]
    for folder in folders:
        assert (tmp_path / folder / "ckpt-20.json").exists()

    # --resume without --save-dir goes on with the run written last.
    os.utime(tmp_path / "checkpoints" / "hamlet" / "checkpoint", (1, 1))
    resumed = run(["hamlet.txt", "--resume", "--iterations", "25"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming checkpoints/hamlet-2/ckpt-20 at iteration 20" in resumed.stdout
    assert (tmp_path / "checkpoints" / "hamlet-2" / "ckpt-25.json").exists()
    assert not (tmp_path / "checkpoints" / "hamlet-3").exists()


def test_no_run_to_resume_or_sample_is_one_line(tmp_path, no_tensorflow):
    (tmp_path / "hamlet.txt").write_text(TEXT, encoding="utf-8")
    for mode in (["--resume"], ["--sample"]):
        result = run_script(["hamlet.txt", *mode], tmp_path, no_tensorflow)
        assert result.returncode == 1
        assert result.stderr == ("tf-lstm-char.py: error: no run of hamlet in checkpoints/; "
                                 "train first, or give the --save-dir of a run\n")
