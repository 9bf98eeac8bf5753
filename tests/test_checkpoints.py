"""Checkpoints: what a save holds, reopening a saved graph by name, resuming, signals, and
sampling from a checkpoint."""
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import aux_funcs
from conftest import (HAMLET, RICHARD as TEXT, SCRIPT, TINY, files_of, run_in_process as run,
                      run_script)

UNICODE_TEXT = "Grüße aus Köln – 你好，世界！\n" * 30


def test_a_checkpoint_holds_what_the_graph_does_not(trained):
    save_dir = trained / "ckpt"
    assert aux_funcs.read_checkpoint_list(save_dir) == ["ckpt-0", "ckpt-10", "ckpt-20",
                                                         "ckpt-30"]
    info, arrays = aux_funcs.load_run_state(str(save_dir / "ckpt-30"))
    assert info["vocabulary"] == "".join(sorted(set(TEXT)))
    assert info["iteration"] == 30
    assert info["position"] == 300
    assert info["options"]["val_fraction"] == 0.1
    assert arrays["val_points"][:, 0].tolist() == [0, 10, 20, 30]
    best = int(np.argmin(arrays["val_points"][:, 1]))
    assert info["best"] == arrays["val_points"][best].tolist()
    assert info["text_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert info["options"]["hidden_dim"] == 16
    assert info["options"]["text_file"] == str(trained / "richard.txt")
    assert arrays["state"].shape == (2, 1, 16)
    assert np.any(arrays["state"] != 0)
    assert len(arrays["loss_hist"]) == len(arrays["smooth_loss_hist"]) == 31
    for suffix in (".index", ".meta", ".data-00000-of-00001"):
        assert (save_dir / f"ckpt-30{suffix}").exists()


def test_only_the_last_checkpoints_are_kept(lstm, tmp_path):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    result = run(["richard.txt", "--iterations", "75", "--save-dir", "ckpt", *TINY], tmp_path)
    assert result.returncode == 0, result.stderr
    kept = ["ckpt-40", "ckpt-50", "ckpt-60", "ckpt-70", "ckpt-75"]
    assert len(kept) == lstm.KEEP_CHECKPOINTS
    assert aux_funcs.read_checkpoint_list(tmp_path / "ckpt") == kept
    on_disk = {name.split(".")[0] for name in os.listdir(tmp_path / "ckpt")}
    assert on_disk == set(kept) | {"checkpoint"}


def test_the_saved_graph_reopens_by_name_without_the_code(lstm, tf, trained):
    tf1 = tf.compat.v1
    save_dir = str(trained / "ckpt")
    info, arrays = aux_funcs.load_run_state(os.path.join(save_dir, "ckpt-30"))
    vocab = info["vocabulary"]
    inputs = aux_funcs.encode([vocab.index(ch) for ch in "Now is"], len(vocab))[:, None, :]
    with tf.Graph().as_default() as graph, tf1.Session(graph=graph) as session:
        saver = tf1.train.import_meta_graph(os.path.join(save_dir, "ckpt-30.meta"))
        saver.restore(session, tf1.train.latest_checkpoint(save_dir))
        by_name, state_by_name = session.run(
            ["probabilities:0", "final_state:0"],
            {"x:0": inputs, "init_state:0": arrays["state"]})
    model = lstm.build_graph(tf, len(vocab), lstm.Options(hidden_dim=16))
    saver = lstm.add_extras(tf, model).saver
    with tf1.Session(graph=model.graph) as session:
        session.run(model.init)
        untrained = session.run(model.probabilities,
                                {model.x: inputs, model.init_state: arrays["state"]})
        lstm.restore_checkpoint(session, saver, os.path.join(save_dir, "ckpt-30"))
        rebuilt, state = session.run([model.probabilities, model.final_state],
                                     {model.x: inputs, model.init_state: arrays["state"]})
    assert by_name.shape == (6, len(vocab))
    np.testing.assert_allclose(by_name, rebuilt, atol=1e-6)
    np.testing.assert_allclose(state_by_name, state, atol=1e-6)
    assert not np.allclose(untrained, rebuilt, atol=1e-3)


@pytest.mark.parametrize("layers", [[], ["--num-layers", "2"]])
def test_resuming_ends_where_an_uninterrupted_run_ends(tf, tmp_path, layers):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    common = ["richard.txt", "--seed", "5", *TINY, *layers]
    whole = run([*common, "--iterations", "40", "--save-dir", "whole"], tmp_path)
    half = run([*common, "--iterations", "20", "--save-dir", "split"], tmp_path)
    rest = run(["--resume", "--iterations", "40", "--save-dir", "split"], tmp_path)
    for result in (whole, half, rest):
        assert result.returncode == 0, result.stderr
    assert "resuming split/ckpt-20 at iteration 20" in rest.stdout
    whole_info, whole_arrays = aux_funcs.load_run_state(str(tmp_path / "whole" / "ckpt-40"))
    split_info, split_arrays = aux_funcs.load_run_state(str(tmp_path / "split" / "ckpt-40"))
    assert split_info["position"] == whole_info["position"]
    assert split_info["best"] == whole_info["best"]
    assert split_arrays["val_points"][:, 0].tolist() == [0, 10, 20, 30, 40]
    assert split_arrays["state"].shape == (2, 2, 1, 16) if layers else (2, 1, 16)
    for name in ("loss_hist", "smooth_loss_hist", "state", "val_points"):
        assert len(split_arrays[name]) == len(whole_arrays[name])
        np.testing.assert_allclose(split_arrays[name], whole_arrays[name], rtol=0, atol=1e-6)
    whole_ckpt = tf.train.load_checkpoint(str(tmp_path / "whole" / "ckpt-40"))
    split_ckpt = tf.train.load_checkpoint(str(tmp_path / "split" / "ckpt-40"))
    names = whole_ckpt.get_variable_to_shape_map()
    assert any("Adam" in name for name in names), "optimizer slots are not in the checkpoint"
    assert names == split_ckpt.get_variable_to_shape_map()
    for name in names:
        np.testing.assert_allclose(split_ckpt.get_tensor(name), whole_ckpt.get_tensor(name),
                                   rtol=0, atol=1e-6, err_msg=name)


def test_a_checkpoint_saved_before_its_score_came_is_scored_when_resumed(tmp_path):
    """A report saves its checkpoint while its held-out score is still being computed beside
    training, so a run killed at once leaves a checkpoint without it. Resumed from there, the
    run scores it first, and ends with the history and best of a run that went straight on."""
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    whole = run(["richard.txt", "--seed", "5", *TINY, "--iterations", "40", "--save-dir",
                 "whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    _, mid_run = aux_funcs.load_run_state(str(tmp_path / "whole" / "ckpt-20"))
    assert mid_run["val_points"][:, 0].tolist() == [0, 10]
    rest = run(["--resume", "--checkpoint", "whole/ckpt-20", "--iterations", "40"], tmp_path)
    assert rest.returncode == 0, rest.stderr
    resumed_at = rest.stdout.index("resuming whole/ckpt-20 at iteration 20\n")
    score_20 = re.search(r"^iter 20, held out +\| val (\d\.\d{4}) ", rest.stdout, re.MULTILINE)
    assert score_20 and resumed_at < score_20.start() < rest.stdout.index("iter 30, loss:")
    whole_info, whole_arrays = aux_funcs.load_run_state(str(tmp_path / "whole" / "ckpt-40"))
    rest_info, rest_arrays = aux_funcs.load_run_state(
        str(tmp_path / "checkpoints" / "richard" / "ckpt-40"))
    assert rest_arrays["val_points"][:, 0].tolist() == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(rest_arrays["val_points"], whole_arrays["val_points"], atol=1e-6)
    assert float(score_20.group(1)) == pytest.approx(whole_arrays["val_points"][2, 1], abs=1e-4)
    assert rest_info["best"] == pytest.approx(whole_info["best"], abs=1e-6)


def test_a_deep_run_with_dropout_samples_and_resumes_with_another_dropout(tmp_path):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    trained = run(["richard.txt", "--num-layers", "3", "--dropout", "0.4", "--iterations",
                   "20", "--save-dir", "deep", *TINY], tmp_path)
    assert trained.returncode == 0, trained.stderr
    info, arrays = aux_funcs.load_run_state(str(tmp_path / "deep" / "ckpt-20"))
    assert (info["options"]["num_layers"], info["options"]["dropout"]) == (3, 0.4)
    assert arrays["state"].shape == (3, 2, 1, 16)
    sampled = [run(["--sample", "--save-dir", "deep", "--sample-length", "40", "--seed", "2",
                    "--sampler", sampler, "--argmax"], tmp_path) for sampler in ("graph",
                                                                                 "feed")]
    for result in sampled:
        assert result.returncode == 0, result.stderr
        assert len(result.stdout) == 41 and set(result.stdout) <= set(TEXT)
    assert sampled[0].stdout == sampled[1].stdout
    resumed = run(["--resume", "--save-dir", "deep", "--dropout", "0", "--iterations", "30"],
                  tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    info, _ = aux_funcs.load_run_state(str(tmp_path / "deep" / "ckpt-30"))
    assert (info["options"]["num_layers"], info["options"]["dropout"]) == (3, 0)


@pytest.mark.parametrize("args, words", [
    (["--resume", "--hidden-dim", "32"],
     "--hidden-dim 32 does not match checkpoint ckpt/ckpt-30, which has 16"),
    (["--resume", "--optimizer", "sgd"], "--optimizer sgd does not match checkpoint"),
    (["--resume", "--num-layers", "2"],
     "--num-layers 2 does not match checkpoint ckpt/ckpt-30, which has 1"),
    (["--resume", "--val-fraction", "0.2"], "--val-fraction 0.2 does not match checkpoint"),
    (["--resume", "other.txt", "--iterations", "50"],
     "other.txt is not the text checkpoint ckpt/ckpt-30 was trained on"),
    (["--resume", "--iterations", "30"], "has done 30 iterations already"),
    (["richard.txt", "--iterations", "50"], "ckpt holds a checkpoint already; add --resume"),
    (["--sample", "--hidden-dim", "8"], "--hidden-dim 8 does not match"),
    (["--sample", "--num-layers", "3"], "--num-layers 3 does not match"),
    (["--sample", "--prime", "Now Zoë"], "characters the model does not know: 'Z' 'ë'"),
])
def test_mismatches_are_one_line_and_leave_the_checkpoint_alone(trained, no_tensorflow, args,
                                                                words):
    (trained / "other.txt").write_text(TEXT.upper(), encoding="utf-8")
    before = files_of(trained / "ckpt")
    # Found before TensorFlow is imported: no_tensorflow would show it.
    result = run_script([*args, "--save-dir", "ckpt"], trained, no_tensorflow)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr
    assert files_of(trained / "ckpt") == before


def test_no_checkpoint_is_one_line(tmp_path):
    for mode in ("--resume", "--sample"):
        result = run([mode, "--save-dir", "nothing"], tmp_path)
        assert result.returncode == 1
        assert result.stderr == ("tf-lstm-char.py: error: no checkpoint in nothing; train "
                                 "first, or give the --save-dir of a run\n")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_and_says_how_to_resume(tmp_path, signum, code):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "richard.txt", "--iterations", "1000000", "--save-dir",
         "ckpt", "--hidden-dim", "16", "--seq-length", "10", "--sample-every", "1000000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("richard.txt:")
        assert process.stdout.readline().startswith("writing checkpoints to ckpt,")
        assert process.stdout.readline().startswith("iter 0, loss: ")
        time.sleep(1)  # let it train a little, so the signal lands between two steps
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code
    names = aux_funcs.read_checkpoint_list(tmp_path / "ckpt")
    stopped_at = int(names[-1].split("-")[1])
    assert names == ["ckpt-0", f"ckpt-{stopped_at}"]
    assert stderr == (f"tf-lstm-char.py: stopped by {signal.Signals(signum).name} at "
                      f"iteration {stopped_at}; go on with: python tf-lstm-char.py --resume "
                      "--save-dir ckpt\n")
    assert f"checkpoint: {os.path.join('ckpt', f'ckpt-{stopped_at}')}" in stdout
    info, arrays = aux_funcs.load_run_state(str(tmp_path / "ckpt" / f"ckpt-{stopped_at}"))
    assert len(arrays["loss_hist"]) == stopped_at + 1
    assert (tmp_path / "plots" / "ckpt_loss.png").exists()
    resumed = run(["--resume", "--save-dir", "ckpt", "--iterations", str(stopped_at + 3)],
                  tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert aux_funcs.read_checkpoint_list(tmp_path / "ckpt")[-1] == f"ckpt-{stopped_at + 3}"


@pytest.mark.parametrize("sampler", ["graph", "feed"])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_long_sample_soon_and_changes_nothing(trained, signum, code, sampler):
    before = files_of(trained / "ckpt")
    length = 10 ** 8  # far more than it can draw before the signal
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "--sample", "--save-dir", "ckpt", "--sample-length",
         str(length), "--sampler", sampler],
        cwd=trained, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = os.read(process.stdout.fileno(), 100)
        assert first, "the sample should show as it is drawn"
        process.send_signal(signum)
        signalled = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
        stopped_in = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == code
    assert stopped_in < 10
    stderr = stderr.decode()
    match = re.fullmatch(rf"tf-lstm-char.py: stopped by {signal.Signals(signum).name} after "
                         rf"(\d+) of {length} characters\n", stderr)
    assert match, stderr
    assert len(first + stdout) == int(match.group(1)) + 1  # the sample and its newline
    assert files_of(trained / "ckpt") == before


def test_two_quick_signals_while_saving_often_leave_a_loadable_checkpoint(tmp_path):
    # With a save after every iteration, the second signal lands in a save as often as not;
    # whatever it cut short, the listed checkpoint must load.
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "richard.txt", "--iterations", "1000000", "--save-dir",
         "ckpt", "--hidden-dim", "16", "--seq-length", "10", "--sample-every", "1",
         "--sample-length", "10"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("richard.txt:")
        while len(aux_funcs.read_checkpoint_list(tmp_path / "ckpt")) < 3:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    names = aux_funcs.read_checkpoint_list(tmp_path / "ckpt")
    on_disk = {name.split(".")[0] for name in os.listdir(tmp_path / "ckpt")}
    assert on_disk == set(names) | {"checkpoint"}, "pieces of a cut-short save were left"
    sampled = run(["--sample", "--save-dir", "ckpt", "--sample-length", "20"], tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout) == 21


def sample_text(trained, *args):
    result = run(["--sample", "--save-dir", "ckpt", *args], trained)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_sample_prints_only_text_of_the_asked_length(trained):
    out = sample_text(trained, "--sample-length", "120")
    assert len(out) == 121 and out.endswith("\n")
    assert set(out[:-1]) <= set(TEXT)


def test_sample_is_repeatable_with_a_seed(trained):
    first = sample_text(trained, "--seed", "11", "--sample-length", "200")
    assert sample_text(trained, "--seed", "11", "--sample-length", "200") == first
    assert sample_text(trained, "--seed", "12", "--sample-length", "200") != first


def test_sample_prime_is_printed_then_continued(trained):
    out = sample_text(trained, "--prime", "Now is the ", "--sample-length", "50", "--argmax")
    assert out.startswith("Now is the ") and len(out) == len("Now is the ") + 51
    assert sample_text(trained, "--prime", "Now is the ", "--sample-length", "50",
                       "--argmax", "--seed", "99") == out


def test_sample_writes_utf8_through_a_pipe_whatever_the_locale(tmp_path):
    (tmp_path / "koeln.txt").write_text(UNICODE_TEXT, encoding="utf-8")
    trained = run(["koeln.txt", "--iterations", "3", "--save-dir", "ckpt", *TINY], tmp_path)
    assert trained.returncode == 0, trained.stderr
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONIOENCODING="ascii")
    result = subprocess.run(
        [sys.executable, SCRIPT, "--sample", "--save-dir", "ckpt", "--prime", "你好",
         "--sample-length", "80"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode("utf-8")
    assert text.startswith("你好") and len(text) == 83
    assert set(text[:-1]) <= set(UNICODE_TEXT)


@pytest.fixture
def tiny(lstm, tf):
    """A 4-character, 8-unit network in an initialised session, with what save_checkpoint
    needs beside it."""
    model = lstm.build_graph(tf, 4, lstm.Options(hidden_dim=8))
    saver = lstm.add_extras(tf, model).saver
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)
        yield types.SimpleNamespace(
            saver=saver, session=session,
            progress=lstm.Progress(0, 0, np.zeros((2, 1, 8), np.float32), [1.4], [1.4],
                                   np.random.default_rng(0)),
            info={"format": 1, "vocabulary": "abcd", "text_sha256": "0" * 64,
                  "options": lstm.stored_options(lstm.Options())})


def save(lstm, tiny, folder):
    lstm.save_checkpoint(tiny.session, tiny.saver, str(folder), tiny.progress, tiny.info)


def disk_full(*args):
    raise OSError(28, "No space left on device")


def second_ctrl_c(*args):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["save_run_state", "write_checkpoint_list"])
@pytest.mark.parametrize("fault", [disk_full, second_ctrl_c])
def test_a_failed_save_leaves_the_previous_checkpoint(lstm, tiny, tmp_path, monkeypatch,
                                                      where, fault):
    tiny.progress.iteration = 10
    save(lstm, tiny, tmp_path)
    before = files_of(tmp_path)

    monkeypatch.setattr(aux_funcs, where, fault)
    tiny.progress.iteration = 20
    # A disk error becomes one line for the user; a second Ctrl-C goes on stopping.
    with pytest.raises(lstm.UserError if fault is disk_full else KeyboardInterrupt) as failure:
        save(lstm, tiny, tmp_path)
    if fault is disk_full:
        assert re.search("No space left on device.*previous checkpoint is intact",
                         str(failure.value))
    assert files_of(tmp_path) == before, "pieces of the failed save were left"
    assert aux_funcs.read_checkpoint_list(tmp_path) == ["ckpt-10"]
    assert aux_funcs.latest_checkpoint(str(tmp_path)).info["iteration"] == 10


def test_a_save_stopped_once_listed_is_kept_whole(lstm, tiny, tmp_path, monkeypatch):
    tiny.progress.iteration = 10
    save(lstm, tiny, tmp_path)
    write_list = aux_funcs.write_checkpoint_list

    def then_ctrl_c(*args):
        write_list(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(aux_funcs, "write_checkpoint_list", then_ctrl_c)
    tiny.progress.iteration = 20
    with pytest.raises(KeyboardInterrupt):
        save(lstm, tiny, tmp_path)
    assert aux_funcs.read_checkpoint_list(tmp_path) == ["ckpt-10", "ckpt-20"]
    saved = aux_funcs.latest_checkpoint(str(tmp_path))
    assert saved.info["iteration"] == 20
    lstm.restore_checkpoint(tiny.session, tiny.saver, saved.prefix)


def test_the_best_checkpoint_outlives_the_newest_five(lstm, tiny, tmp_path):
    progress = tiny.progress
    for done, val_loss in [(1, 1.5), (2, 1.2), (3, 1.3), (4, 1.4), (5, 1.4), (6, 1.5),
                           (7, 1.6), (8, 1.1)]:
        progress.iteration = done
        progress.val_points.append((done, val_loss))
        if val_loss < (progress.best or [0, np.inf])[1]:
            progress.best = [done, val_loss]
        save(lstm, tiny, tmp_path)
        if done == 7:
            assert aux_funcs.read_checkpoint_list(tmp_path) == [
                "ckpt-2", "ckpt-3", "ckpt-4", "ckpt-5", "ckpt-6", "ckpt-7"]
            assert aux_funcs.latest_checkpoint(str(tmp_path), best=True).prefix == str(
                tmp_path / "ckpt-2")
    assert aux_funcs.read_checkpoint_list(tmp_path) == [
        "ckpt-4", "ckpt-5", "ckpt-6", "ckpt-7", "ckpt-8"]
    assert not any(name.startswith("ckpt-2.") for name in os.listdir(tmp_path))
    assert aux_funcs.latest_checkpoint(str(tmp_path), best=True).info["iteration"] == 8


def test_sample_from_the_best_checkpoint(trained):
    info, arrays = aux_funcs.load_run_state(str(trained / "ckpt" / "ckpt-30"))
    assert info["best"][0] in (0, 10, 20, 30)
    best = sample_text(trained, "--best", "--argmax", "--prime", "Now", "--sample-length", "40")
    latest = sample_text(trained, "--argmax", "--prime", "Now", "--sample-length", "40")
    assert len(best) == len(latest) == 44
    assert (best == latest) == (info["best"][0] == 30)


@pytest.mark.parametrize("layers", [[], ["--num-layers", "2", "--dropout", "0.2"]])
def test_tensorboard_events_hold_the_graph_and_the_losses(tf, tmp_path, layers):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    result = run(["richard.txt", "--iterations", "25", "--logdir", "logs", *TINY, *layers],
                 tmp_path)
    assert result.returncode == 0, result.stderr
    (events_file,) = os.listdir(tmp_path / "logs")
    steps, nodes = {}, set()
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / events_file)):
        if event.graph_def:
            graph_def = tf.compat.v1.GraphDef.FromString(event.graph_def)
            nodes |= {node.name for node in graph_def.node}
        for value in event.summary.value:
            steps.setdefault(value.tag, []).append(event.step)
    assert {"x", "init_state", "final_state", "loss"} <= nodes
    assert ("keep_prob" in nodes) == bool(layers)
    assert any("multi_rnn_cell" in name for name in nodes) == bool(layers)
    assert steps["loss"] == steps["smoothed_loss"] == list(range(1, 26))
    assert steps["val_loss"] == [0, 10, 20, 25]


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(lstm, tf, tmp_path):
    (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
    result = run(["richard.txt", "--iterations", "50", "--optimizer", "sgd",
                  "--learning-rate", "1e37", "--seed", "1", "--save-dir", "ckpt", *TINY],
                 tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert re.match(r"tf-lstm-char.py: error: the (validation )?loss became (nan|inf) at "
                    r"iteration \d+: training diverged", result.stderr)
    names = aux_funcs.read_checkpoint_list(tmp_path / "ckpt")
    assert names, "the run should have saved a good checkpoint before it diverged"
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt" / names[-1]))
    for name in reader.get_variable_to_shape_map():
        assert np.all(np.isfinite(reader.get_tensor(name))), name
    assert sample_text(tmp_path, "--sample-length", "20") != ""


@pytest.fixture
def damaged(tmp_path_factory, trained):
    """A copy of the trained run, for one test to damage."""
    folder = tmp_path_factory.mktemp("damaged")
    shutil.copytree(trained / "ckpt", folder / "ckpt")
    shutil.copy(trained / "richard.txt", folder / "richard.txt")
    return folder


def truncate_data(ckpt, name="ckpt-30"):
    data = ckpt / f"{name}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])


DAMAGES = {
    "data cut short": (truncate_data, "its data file has 100 of the"),
    "index deleted": (lambda ckpt: ckpt.joinpath("ckpt-30.index").unlink(),
                      "ckpt-30.index: no such file"),
    "garbage json": (lambda ckpt: ckpt.joinpath("ckpt-30.json").write_text('{"format": 1, "voc'),
                     "ckpt-30 (its .json does not parse: Unterminated string"),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("mode", ["--resume", "--sample", "--visualize", "--export"])
def test_past_a_damaged_newest_checkpoint_the_newest_intact_one_is_used(damaged, damage, mode):
    """Each command that reads a checkpoint says in one line which it passed over and why,
    uses the newest intact one, and leaves the damaged files as they are; a resumed run goes
    on in a new run folder, so that nothing in the damaged one is written over."""
    make_damage, why = DAMAGES[damage]
    make_damage(damaged / "ckpt")
    before = files_of(damaged / "ckpt")
    args = {"--resume": ["--resume", "--iterations", "40"], "--sample": ["--sample"],
            "--visualize": ["--visualize", "--passage-length", "60"],
            "--export": ["--export", "models"]}[mode]
    result = run([*args, "--save-dir", "ckpt"], damaged)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("tf-lstm-char.py: passed over damaged ckpt-30 ")
    assert why in result.stderr
    assert "using ckpt/ckpt-20, the newest intact checkpoint" in result.stderr
    assert files_of(damaged / "ckpt") == before
    if mode == "--resume":
        assert "resuming ckpt/ckpt-20 at iteration 20" in result.stdout
        assert aux_funcs.read_checkpoint_list(damaged / "checkpoints" / "richard")[-1] == \
            "ckpt-40"
    if mode == "--export":
        assert result.stdout.startswith("exporting ckpt/ckpt-20 (20 iterations;")
        assert os.listdir(damaged / "models") == ["1"]


def test_past_a_damaged_newest_checkpoint_of_the_latest_run_sampling_says_one_line(damaged):
    """Without --save-dir, --sample names the run it reads; past a damaged checkpoint that
    line and the one saying what was passed over are one."""
    (damaged / "checkpoints").mkdir()
    shutil.move(damaged / "ckpt", damaged / "checkpoints" / "richard")
    truncate_data(damaged / "checkpoints" / "richard")
    result = run(["richard.txt", "--sample", "--sample-length", "20"], damaged)
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("tf-lstm-char.py: passed over damaged ckpt-30 (its data file has 100")
    assert line.endswith("): using checkpoints/richard/ckpt-20, the newest intact checkpoint")


def test_past_a_damaged_newest_checkpoint_best_falls_back_too(damaged):
    truncate_data(damaged / "ckpt")
    result = run(["--sample", "--best", "--save-dir", "ckpt"], damaged)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "passed over damaged ckpt-30 (its data file has 100 of the" in result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("mode", [["--resume", "--iterations", "40"], ["--sample"],
                                  ["--export", "models"]])
def test_a_folder_of_damaged_checkpoints_is_one_line_and_left_alone(damaged, mode):
    for name in aux_funcs.read_checkpoint_list(damaged / "ckpt"):
        (damaged / "ckpt" / f"{name}.index").unlink()
    before = files_of(damaged)
    result = run([*mode, "--save-dir", "ckpt"], damaged)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "no intact checkpoint in ckpt: ckpt-30 (ckpt-30.index: no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert files_of(damaged) == before


def test_checkpoint_names_the_one_to_sample_from(trained):
    def sample(*args):
        result = run(["--sample", "--seed", "1", "--sample-length", "40", *args], trained)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return result.stdout
    latest = sample("--save-dir", "ckpt")
    assert sample("--checkpoint", "ckpt/ckpt-30") == latest
    assert sample("--checkpoint", "ckpt/ckpt-20.index") != latest


def test_checkpoint_names_the_one_to_look_inside(damaged):
    result = run(["--visualize", "--checkpoint", "ckpt/ckpt-20", "--passage-length", "60"],
                 damaged)
    assert result.returncode == 0, result.stderr
    page = damaged / "plots" / "ckpt_cells.html"
    assert "ckpt/ckpt-20:" in page.read_text(encoding="utf-8")


def test_checkpoint_resumes_into_a_new_run_folder_leaving_its_own_alone(damaged):
    before = files_of(damaged / "ckpt")
    result = run(["--resume", "--checkpoint", "ckpt/ckpt-20", "--iterations", "40"], damaged)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("tf-lstm-char.py: going on from ckpt/ckpt-20 in a new run folder, "
                             "leaving its own as it is\n")
    assert "resuming ckpt/ckpt-20 at iteration 20" in result.stdout
    assert aux_funcs.read_checkpoint_list(damaged / "checkpoints" / "richard")[-1] == "ckpt-40"
    assert files_of(damaged / "ckpt") == before


@pytest.mark.parametrize("prefix, words", [
    ("ckpt/ckpt-99", "checkpoint ckpt/ckpt-99 is damaged or incomplete (ckpt-99.index: no such"),
    ("ckpt/ckpt-20", "checkpoint ckpt/ckpt-20 is damaged or incomplete (its data file has 100"),
])
@pytest.mark.parametrize("mode", [["--sample"], ["--visualize"], ["--resume"],
                                  ["--export", "models"]])
def test_checkpoint_missing_or_damaged_is_one_line_and_writes_nothing(damaged, prefix, words,
                                                                     mode):
    truncate_data(damaged / "ckpt", "ckpt-20")
    before = files_of(damaged)
    result = run([*mode, "--checkpoint", prefix], damaged)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr
    assert files_of(damaged) == before


def test_the_index_reader_finds_every_tensor_of_a_checkpoint(tf, trained):
    """check_tensorflow_files reads TensorFlow's .index without TensorFlow; it must list the
    tensors TensorFlow's own reader finds, and end where the data file ends."""
    prefix = str(trained / "ckpt" / "ckpt-30")
    with open(prefix + ".index", "rb") as handle:
        extents = list(aux_funcs.tensor_extents(handle.read()))
    assert len(extents) == len(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
    assert max(offset + size for offset, size in extents) == os.path.getsize(
        prefix + ".data-00000-of-00001")
    with pytest.raises(ValueError):
        list(aux_funcs.tensor_extents(b"not an index" * 10))


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    small_disk = tmp_path / "small"
    small_disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                              str(small_disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip("cannot mount a small filesystem here: "
                    + mounted.stderr.decode(errors="replace").strip())
    try:
        (tmp_path / "richard.txt").write_text(TEXT, encoding="utf-8")
        result = run(["richard.txt", "--iterations", "200", "--hidden-dim", "64",
                      "--seq-length", "10", "--sample-every", "10", "--sample-length", "10",
                      "--save-dir", str(small_disk)], tmp_path)
        assert result.returncode == 1
        assert len(result.stderr.splitlines()) == 1
        assert "could not save checkpoint" in result.stderr
        assert "No space left on device); the previous checkpoint is intact" in result.stderr
        names = aux_funcs.read_checkpoint_list(small_disk)
        assert names, "the disk should have held at least one checkpoint"
        on_disk = {name.split(".")[0] for name in os.listdir(small_disk)}
        assert on_disk == set(names) | {"checkpoint"}, "pieces of the failed save were left"
        sampled = run(["--sample", "--save-dir", str(small_disk), "--sample-length", "20"],
                      tmp_path)
        assert sampled.returncode == 0, sampled.stderr
        assert len(sampled.stdout) == 21
    finally:
        subprocess.run(["umount", str(small_disk)], check=False)


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "main-2026-11-28")
# Two layers with dropout, from before each layer had its own dynamic_rnn.
FIXTURE_LAYERS = os.path.join(os.path.dirname(__file__), "fixtures", "layers2-2026-12-04")


@pytest.fixture
def old_run(tmp_path):
    """A copy of the checkpoint written by the program before the restructure of issue 10."""
    shutil.copytree(FIXTURE, tmp_path / "old")
    return tmp_path


@pytest.mark.parametrize("fixture, layers", [(FIXTURE, 1), (FIXTURE_LAYERS, 2)])
def test_a_checkpoint_from_before_the_restructure_restores_the_same_probabilities(
        lstm, tf, fixture, layers):
    saved = aux_funcs.latest_checkpoint(fixture)
    vocab = saved.info["vocabulary"]
    options = lstm.resolve_options({}, saved, (lstm.MODEL,))
    assert (options.hidden_dim, options.num_layers) == (16, layers)
    model = lstm.build_graph(tf, len(vocab), options)
    saver = lstm.add_extras(tf, model).saver
    with tf.compat.v1.Session(graph=model.graph) as session:
        lstm.restore_checkpoint(session, saver, saved.prefix)
        probabilities = session.run(model.probabilities, {
            model.x: aux_funcs.encode([vocab.index(ch) for ch in "Now is the winter"],
                                      len(vocab))[:, np.newaxis, :],
            model.init_state: saved.arrays["state"]})
    np.testing.assert_allclose(probabilities, np.load(os.path.join(fixture,
                                                                   "probabilities.npy")),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_a_checkpoint_from_before_the_restructure_samples(old_run, sampler):
    result = run(["--sample", "--save-dir", "old", "--prime", "Now", "--sample-length", "50",
                  "--sampler", sampler, "--seed", "1"], old_run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Now") and len(result.stdout) == 54
    assert set(result.stdout) <= set(TEXT)


def test_a_checkpoint_from_before_the_restructure_is_looked_inside(old_run):
    result = run(["old/richard.txt", "--visualize", "--save-dir", "old", "--passage-length",
                  "40"], old_run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("old/ckpt-20: 1 layer of 16 cells")
    assert (old_run / "plots" / "old_cells.html").exists()


@pytest.mark.parametrize("fixture", [FIXTURE, FIXTURE_LAYERS])
def test_a_checkpoint_from_before_the_restructure_resumes(tmp_path, fixture):
    old_run = tmp_path
    shutil.copytree(fixture, old_run / "old")
    before = files_of(old_run / "old")
    result = run(["old/richard.txt", "--resume", "--save-dir", "old", "--iterations", "25"],
                 old_run)
    assert result.returncode == 0, result.stderr
    assert "resuming old/ckpt-20 at iteration 20" in result.stdout
    assert re.search(r"^iter 25, loss: ", result.stdout, re.MULTILINE)
    info, arrays = aux_funcs.load_run_state(str(old_run / "old" / "ckpt-25"))
    assert info["iteration"] == 25 and len(arrays["loss_hist"]) == 26
    assert info["options"]["hidden_dim"] == 16 and info["options"]["seed"] == 3
    # The older checkpoint is still there, unchanged.
    after = files_of(old_run / "old")
    assert {path: after[path] for path in before if path.name != "checkpoint"} == {
        path: data for path, data in before.items() if path.name != "checkpoint"}


def edit_info(prefix, change):
    with open(prefix + ".json", encoding="utf-8") as handle:
        info = json.load(handle)
    change(info)
    with open(prefix + ".json", "w", encoding="utf-8") as handle:
        json.dump(info, handle)


def test_an_option_the_checkpoint_does_not_know_gets_its_default(lstm, old_run):
    edit_info(str(old_run / "old" / "ckpt-20"), lambda info: info["options"].pop("clip"))
    saved = aux_funcs.latest_checkpoint(str(old_run / "old"))
    options = lstm.resolve_options({}, saved, (lstm.MODEL, lstm.SPLIT, lstm.CARRIED))
    assert options.clip is None and options.seq_length == 10
    result = run(["old/richard.txt", "--resume", "--save-dir", "old", "--iterations", "22"],
                 old_run)
    assert result.returncode == 0, result.stderr


def test_a_checkpoint_of_an_unknown_format_is_refused_in_one_line(old_run, no_tensorflow):
    edit_info(str(old_run / "old" / "ckpt-20"), lambda info: info.update(format=2))
    before = files_of(old_run / "old")
    for mode in (["--sample"], ["old/richard.txt", "--resume", "--iterations", "30"]):
        result = run_script([*mode, "--save-dir", "old"], old_run, no_tensorflow)
        assert result.returncode == 1
        assert result.stderr == ("tf-lstm-char.py: error: checkpoint old/ckpt-20 has format 2, "
                                 "which this version does not read (it reads format 1)\n")
    assert files_of(old_run / "old") == before


def test_options_are_resolved_once_and_frozen(lstm, trained):
    saved = aux_funcs.latest_checkpoint(str(trained / "ckpt"))
    typed = {"iterations": 50, "learning_rate": 0.5}
    options = lstm.resolve_options(typed, saved, (lstm.MODEL, lstm.SPLIT, lstm.CARRIED))
    assert (options.iterations, options.learning_rate) == (50, 0.5)  # typed
    assert (options.hidden_dim, options.seq_length, options.seed) == (16, 10, 3)  # stored
    assert options.temperature == 1.0 and options.save_dir == str(trained / "ckpt")
    for_sampling = lstm.resolve_options({}, saved, (lstm.MODEL,))
    assert for_sampling.hidden_dim == 16 and for_sampling.seq_length == 100  # default
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.iterations = 60


def write_long_text(folder):
    """long.txt in `folder`: 250,000 random characters, so that the held-out part (25,000) is
    more than a report scores (VAL_SLICE_CHARS) and the closing evaluation differs from it."""
    rng = np.random.default_rng(0)
    (folder / "long.txt").write_text("".join(rng.choice(list("abcd \n"), 250_000)))


def test_a_signal_during_the_closing_evaluation_does_not_ask_to_resume(lstm, tmp_path,
                                                                       monkeypatch):
    """Ctrl-C while the whole held-out text is scored, after the last step: the run is
    complete, so the last line says so instead of suggesting --resume."""
    write_long_text(tmp_path)
    scored = lstm.evaluate

    def interrupted(session, evaluation, tracks):
        if tracks.size > lstm.VAL_SLICE_CHARS:  # the closing evaluation, not a report's
            os.kill(os.getpid(), signal.SIGINT)
        return scored(session, evaluation, tracks)

    monkeypatch.setattr(lstm, "evaluate", interrupted)
    result = run(["long.txt", "--iterations", "3", "--hidden-dim", "8", "--seq-length", "10",
                  "--sample-every", "2", "--sample-length", "5", "--save-dir", "ckpt"], tmp_path)
    assert result.returncode == 130
    assert result.stderr == ("tf-lstm-char.py: SIGINT came after the last iteration; the run is "
                             "complete, there is nothing to resume\n")
    assert aux_funcs.read_checkpoint_list(tmp_path / "ckpt")[-1] == "ckpt-3"


def test_a_run_stopped_early_does_not_claim_to_have_scored_all_held_out_text(lstm, tmp_path,
                                                                            monkeypatch):
    """Stopped by a signal, a run on a long text skips scoring the whole held-out part: its
    closing lines give the best report's slice, not a figure for all of it."""
    write_long_text(tmp_path)
    stepped = lstm.Report.after_step

    def interrupted(report):
        if report.progress.iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return stepped(report)

    monkeypatch.setattr(lstm.Report, "after_step", interrupted)
    result = run(["long.txt", "--iterations", "1000", "--hidden-dim", "8", "--seq-length", "10",
                  "--sample-every", "2", "--sample-length", "5", "--save-dir", "ckpt"], tmp_path)
    assert result.returncode == 130
    out = result.stdout
    assert "held-out characters" not in out
    assert re.search(r"^at the best report \([0-3]\), val\[:20000\] \d\.\d{4} nats; evaluating "
                     r"took", out, re.MULTILINE), out


def test_minutes_close_the_run_as_its_last_iteration_would(tmp_path):
    """--minutes ends training long before --iterations: with the closing report, the whole
    held-out text scored and a checkpoint, exit 0, and a line saying how to go on."""
    write_long_text(tmp_path)
    tiny = ["--hidden-dim", "8", "--seq-length", "10", "--sample-every", "50",
            "--sample-length", "5", "--save-dir", "ckpt", "--minutes", "0.01"]
    result = run(["long.txt", "--iterations", "1000000", *tiny], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    stopped_at = int(aux_funcs.read_checkpoint_list(tmp_path / "ckpt")[-1].split("-")[1])
    assert 0 < stopped_at < 1_000_000
    assert re.search(rf"^iter {stopped_at}, loss: ", out, re.MULTILINE), out
    assert "validation loss on all 25,000 held-out characters" in out
    assert out.endswith(f"stopped after --minutes 0.01 at iteration {stopped_at}; go on with: "
                        "python tf-lstm-char.py --resume --save-dir ckpt\n")
    resumed = run(["--resume", *tiny], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {os.path.join('ckpt', f'ckpt-{stopped_at}')} at iteration {stopped_at}" \
        in resumed.stdout
    assert int(aux_funcs.read_checkpoint_list(tmp_path / "ckpt")[-1].split("-")[1]) > stopped_at


def test_bf16_left_off_without_bfloat16_instructions_trains_as_float32_and_says_so(
        tmp_path, monkeypatch):
    """On a processor without AVX512-BF16 or AMX-BF16 a --bf16 run is the float32 run, and its
    checkpoint keeps --bf16, so that --resume on a processor with them applies it."""
    monkeypatch.setattr(aux_funcs, "bfloat16_instruction_sets", lambda: [])
    (tmp_path / "hamlet.txt").write_text(HAMLET)
    tiny = ["hamlet.txt", "--iterations", "4", "--hidden-dim", "16", "--seq-length", "10",
            "--batch-size", "2", "--sample-every", "2", "--sample-length", "5", "--seed", "3"]
    runs = {}
    for bf16 in ([], ["--bf16"]):
        result = run([*tiny, "--save-dir", f"ckpt{len(bf16)}", *bf16], tmp_path)
        assert result.returncode == 0, result.stderr
        runs[bool(bf16)] = (result.stdout,
                            aux_funcs.latest_checkpoint(str(tmp_path / f"ckpt{len(bf16)}")))
    (float32_out, float32), (bf16_out, bf16) = runs[False], runs[True]
    note = ("--bf16 left off: no AVX512-BF16 or AMX-BF16 on this processor, and emulated "
            "bfloat16 trains slower than float32\n")
    assert note in bf16_out and note not in float32_out
    # In bfloat16, emulated or not, the state carried between windows keeps 8 bits of mantissa.
    np.testing.assert_allclose(bf16.arrays["state"], float32.arrays["state"], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(bf16.arrays["loss_hist"], float32.arrays["loss_hist"], rtol=1e-5)
    assert (bf16.info["options"]["bf16"], float32.info["options"]["bf16"]) == (True, False)
