"""--export: the SavedModel a checkpoint becomes, used as other programs use it (in a process
that imports only TensorFlow, through saved_model_cli, by TensorFlow Serving's REST body),
and held to write and score what the program itself writes and scores."""
import concurrent.futures
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import aux_funcs
from conftest import (REPO, RICHARD, TINY, files_of, run_in_process as run, run_script,
                      trained_run, unprivileged)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
PRIME = "Now is the winter"


def readme_section(title):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    return readme.split(f"## {title}\n")[1].split("\n## ")[0]


def export(folder, *args):
    """--export into folder/models/richard; the version folder written."""
    result = run(["--export", "models/richard", *args], folder)
    assert result.returncode == 0, result.stderr
    return folder / re.search(r"^wrote (\S+) ", result.stdout, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def exported(trained):
    return export(trained, "--save-dir", "ckpt")


@pytest.fixture(scope="module")
def model(tf, exported):
    return tf.saved_model.load(str(exported))


def write(model, primes, length, temperature=1.0, seed=1):
    texts = model.signatures["serving_default"](prime=primes, length=length,
                                                  temperature=temperature, seed=seed)["text"]
    return [text.decode("utf-8") for text in texts.numpy()]


def test_export_says_what_it_read_and_numbers_versions_without_overwriting(trained, tmp_path):
    shutil.copytree(trained / "ckpt", tmp_path / "ckpt")
    first = run(["--export", "models/richard", "--save-dir", "ckpt"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    lines = first.stdout.splitlines()
    assert lines[0] == "exporting ckpt/ckpt-30 (30 iterations; 1 layer of 16, 26 characters)"
    assert re.fullmatch(r"wrote models/richard/1 \(\d+ kB\), signatures serving_default "
                        r"\(writes text\) and score \(scores it\)", lines[1])
    assert lines[2] == "load it in Python with: tf.saved_model.load('models/richard/1')"
    assert len(lines) == 3
    before = files_of(tmp_path / "models")
    # A file with the next number is passed over, not overwritten.
    (tmp_path / "models" / "richard" / "2").write_text("not a model")
    second = run(["--export", "models/richard", "--save-dir", "ckpt"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "wrote models/richard/3 " in second.stdout
    after = files_of(tmp_path / "models")
    assert {path: after[path] for path in before} == before
    assert (tmp_path / "models" / "richard" / "2").read_text() == "not a model"
    assert sorted(os.listdir(tmp_path / "models" / "richard")) == ["1", "2", "3"]


def test_the_export_holds_the_weights_and_nothing_for_training(tf, trained, exported, model):
    """The checkpoint's own numbers for the cell and the output layer, and nothing else: no
    Adam slots, no dropout, no step counter. Its variables file is those numbers' size."""
    checkpoint = tf.train.load_checkpoint(str(trained / "ckpt" / "ckpt-30"))
    names = {variable.name.split(":")[0] for variable in model.variables}
    assert names == {"rnn/lstm_cell/kernel", "rnn/lstm_cell/bias", "out_w", "out_b"}
    for variable in model.variables:
        np.testing.assert_array_equal(variable.numpy(),
                                      checkpoint.get_tensor(variable.name.split(":")[0]))
    weights = (26 + 16) * 64 + 64 + 16 * 26 + 26
    data = exported / "variables" / "variables.data-00000-of-00001"
    assert 4 * weights <= data.stat().st_size < 4 * weights + 1024


def test_greedy_text_is_what_sample_argmax_writes(trained, model):
    sampled = run(["--sample", "--argmax", "--prime", PRIME, "--sample-length", "300",
                   "--save-dir", "ckpt"], trained)
    assert sampled.returncode == 0, sampled.stderr
    [text] = write(model, [PRIME], 300, temperature=0.0)
    assert len(text) == 300
    assert PRIME + text + "\n" == sampled.stdout


def test_score_is_the_mean_surprise_visualize_prints(trained, model):
    passage = "Made glorious summer by this sun of York.\nNow is the winter of our"
    (trained / "passage.txt").write_text(passage, encoding="utf-8")
    shown = run(["richard.txt", "--visualize", "--save-dir", "ckpt", "--passage-file",
                 "passage.txt"], trained)
    assert shown.returncode == 0, shown.stderr
    printed = float(re.search(r"^the passage: 66 characters, (\d\.\d{4}) bits",
                              shown.stdout, re.MULTILINE).group(1))
    scored = model.signatures["score"](text=[passage, "N", ""])
    assert scored["chars_scored"].numpy().tolist() == [65, 0, 0]
    bits = scored["bits_per_char"].numpy()
    # Printed to four places: 5e-5 of rounding, within the 1e-4 asked.
    assert abs(bits[0] - printed) <= 1e-4
    assert np.isnan(bits[1:]).all(), "nothing to score is not a number"


def test_the_same_seed_writes_the_same_text_and_another_seed_another(model):
    primes = [PRIME, "", "M", "York"]
    first = write(model, primes, 200, seed=7)
    assert write(model, primes, 200, seed=7) == first
    assert write(model, primes, 200, seed=8) != first
    assert [len(text) for text in first] == [200] * 4
    assert all(set(text) <= set(RICHARD) for text in first)


def test_empty_primes_start_from_characters_at_random(model):
    texts = write(model, [""] * 8, 50, seed=3)
    assert [len(text) for text in texts] == [50] * 8
    assert len(set(texts)) > 1


def test_streams_side_by_side_do_not_mix(model):
    """A stream's text depends on its own prime and the seed, not on the other streams'."""
    first = write(model, ["Now", "Made glorious", ""], 80, seed=4)
    second = write(model, ["Now", "of our discontent\n", "York"], 80, seed=4)
    assert first[0] == second[0]
    assert first[1] != second[1]


def test_an_empty_batch_gets_an_empty_answer(tf, model):
    assert write(model, tf.zeros([0], tf.string), 10) == []
    scored = model.signatures["score"](text=tf.zeros([0], tf.string))
    assert scored["bits_per_char"].shape == (0,) and scored["chars_scored"].shape == (0,)


@pytest.mark.parametrize("call, words", [
    (dict(prime=["Now Zé"]), "the prime has characters the model does not know:] [Zé]"),
    (dict(length=0), "length must be from 1 to 100,000, got] [0]"),
    (dict(length=100_001), "length must be from 1 to 100,000, got] [100001]"),
    (dict(temperature=-0.5), "temperature must be 0 (the likeliest character each time) or a "
                             "positive finite number, got] [-0.5]"),
    (dict(temperature=math.nan), "positive finite number, got] [nan]"),
    (dict(temperature=math.inf), "positive finite number, got] [inf]"),
])
def test_bad_calls_fail_saying_what_is_wrong(tf, model, call, words):
    arguments = {"prime": ["Now"], "length": 10, "temperature": 1.0, "seed": 1, **call}
    with pytest.raises(tf.errors.InvalidArgumentError) as failed:
        model.signatures["serving_default"](**arguments)
    assert words in failed.value.message


def test_scoring_unknown_characters_names_them(tf, model):
    with pytest.raises(tf.errors.InvalidArgumentError) as failed:
        model.signatures["score"](text=["Now", "winter?\t"])
    assert "the text has characters the model does not know:] [?\\t]" in failed.value.message


def test_a_tiny_temperature_still_writes(model):
    [text] = write(model, [PRIME], 40, temperature=1e-40)
    assert text == write(model, [PRIME], 40, temperature=0.0)[0]


def test_eight_threads_at_once_each_get_their_text(model):
    def call(k):
        primes = [PRIME[:k % 5]] * (1 + k % 4)
        return primes, 50 + 10 * k, write(model, primes, 50 + 10 * k, seed=k)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(32)))
    for primes, length, texts in answers:
        assert [len(text) for text in texts] == [length] * len(primes)


def test_the_readme_serving_request_is_what_the_model_takes(tf, model):
    """TensorFlow Serving cannot be installed here: its REST body's inputs, converted as
    Serving converts them (each to its input's dtype), go to the same signature, and the
    command line's model name and folder are the URL's and the export's."""
    section = readme_section("Use the model elsewhere")
    server = re.search(r"^    tensorflow_model_server (.*)$", section, re.MULTILINE).group(1)
    flags = dict(flag.lstrip("-").split("=", 1) for flag in shlex.split(server))
    export_dir = re.search(r"--export (\S+)", section).group(1)
    assert flags["model_base_path"] == f"$PWD/{export_dir}"
    request = shlex.split(re.search(r"^    (curl .*)$", section, re.MULTILINE).group(1))
    assert request[-1] == f"localhost:{flags['rest_api_port']}/v1/models/" \
                          f"{flags['model_name']}:predict"
    body = json.loads(request[request.index("-d") + 1])
    signature = model.signatures[body.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    assert set(body["inputs"]) == set(specs)
    answer = signature(**{name: tf.constant(value, specs[name].dtype)
                          for name, value in body["inputs"].items()})
    texts = answer["text"].numpy()
    assert len(texts) == len(body["inputs"]["prime"])
    assert len(texts[0].decode()) == body["inputs"]["length"]


# What the README's call does in a process of its own, outside the checkout, with only
# TensorFlow: the snippet as README.md gives it, on the test's export, then a batch of one and
# of eight, and scores.
FRESH_PROCESS = """
import importlib.util, json, sys
{readme}
assert importlib.util.find_spec("aux_funcs") is None, "the project is on the path"
assert not [name for name in sys.modules if name.startswith(("aux_funcs", "tf_lstm_char"))]
write = model.signatures["serving_default"]
one = write(prime=["Now"], length=120, temperature=1.0, seed=5)["text"].numpy()
eight = write(prime=["Now", "", "M", "York", "of", "the", "sun", "Made"], length=60,
              temperature=0.7, seed=5)["text"].numpy()
score = model.signatures["score"](text=["Now is the winter", "N"])
print(json.dumps({{"one": [t.decode() for t in one], "eight": [t.decode() for t in eight],
                  "bits": score["bits_per_char"].numpy().tolist(),
                  "scored": score["chars_scored"].numpy().tolist()}}))
"""


def test_the_readme_call_works_in_a_fresh_process_with_only_tensorflow(exported,
                                                                       tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(exported, elsewhere / "model")
    code = readme_section("Use the model elsewhere").split("```python\n")[1].split("```")[0]
    assert 'tf.saved_model.load("models/shakespeare/1")' in code
    code = code.replace("models/shakespeare/1", "model")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c",
                             FRESH_PROCESS.format(readme=code)],
                            cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    *printed, last = result.stdout.splitlines()
    # The README's two prints: a continuation of 200 characters, then the score and count.
    assert printed[-1].endswith("] [34]")
    figures = json.loads(last)
    assert [len(text) for text in figures["one"]] == [120]
    assert [len(text) for text in figures["eight"]] == [60] * 8
    assert figures["scored"] == [16, 0]
    assert 0 < figures["bits"][0] < 10 and math.isnan(figures["bits"][1])


def saved_model_cli(*args):
    command = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=300)


def test_saved_model_cli_lists_both_signatures_and_runs_one(exported, trained):
    shown = saved_model_cli("show", "--dir", str(exported), "--all")
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in ("signature_def['serving_default']", "signature_def['score']",
                 "inputs['prime']", "inputs['length']", "inputs['temperature']",
                 "inputs['seed']", "outputs['text']", "inputs['text']",
                 "outputs['bits_per_char']", "outputs['chars_scored']"):
        assert name in shown.stdout
    ran = saved_model_cli("run", "--dir", str(exported), "--tag_set", "serve",
                          "--signature_def", "serving_default", "--input_exprs",
                          f'prime=["{PRIME}"];length=60;temperature=0.0;seed=1')
    assert ran.returncode == 0, ran.stderr[-2000:]
    sampled = run(["--sample", "--argmax", "--prime", PRIME, "--sample-length", "60",
                   "--save-dir", "ckpt"], trained)
    written = sampled.stdout[len(PRIME):-1]
    assert f"Result for output key text:\n[{written.encode()!r}]" in ran.stdout


@pytest.mark.parametrize("source", ["two layers with dropout", "main-2026-11-28",
                                    "layers2-2026-12-04"])
def test_deeper_and_older_checkpoints_export_and_write_as_they_sample(tf, tmp_path, source):
    if source in os.listdir(FIXTURES):
        save_dir = os.path.join(FIXTURES, source)
    else:
        trained_run(tmp_path, "richard.txt", RICHARD, "--iterations", "20", "--seed", "2",
                    "--num-layers", "2", "--dropout", "0.3", *TINY)
        save_dir = "ckpt"
    version = export(tmp_path, "--save-dir", save_dir)
    model = tf.saved_model.load(str(version))
    sampled = run(["--sample", "--argmax", "--prime", "Now", "--sample-length", "100",
                   "--save-dir", save_dir], tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert "Now" + write(model, ["Now"], 100, temperature=0.0)[0] + "\n" == sampled.stdout
    scored = model.signatures["score"](text=["Now is the winter"])
    assert scored["chars_scored"].numpy().tolist() == [16]
    assert np.isfinite(scored["bits_per_char"].numpy()).all()


def test_no_intact_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(["--export", "models/x", "--save-dir", "empty"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("tf-lstm-char.py: error: no checkpoint in empty; train first, or "
                             "give the --save-dir of a run\n")
    assert not (tmp_path / "models").exists()


def test_export_into_a_file_is_one_line_and_changes_nothing(trained, tmp_path):
    (tmp_path / "models").write_text("a file")
    result = run(["--export", "models", "--save-dir", str(trained / "ckpt")], tmp_path)
    assert result.returncode == 1
    assert result.stderr == "tf-lstm-char.py: error: --export models: is a file, not a folder\n"
    assert (tmp_path / "models").read_text() == "a file"


def test_export_into_a_folder_not_writable_is_one_line_before_tensorflow(trained, tmp_path,
                                                                          no_tensorflow):
    prefix = unprivileged()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "1").mkdir()
    os.chmod(tmp_path / "models", 0o555)
    try:
        result = run_script(["--export", "models", "--save-dir", str(trained / "ckpt")],
                            tmp_path, no_tensorflow, prefix)
    finally:
        os.chmod(tmp_path / "models", 0o755)
    assert result.returncode == 1
    assert result.stderr == "tf-lstm-char.py: error: --export models: not writable\n"
    assert os.listdir(tmp_path / "models") == ["1"]


def test_a_failed_write_leaves_no_version_behind(tf, trained, tmp_path, monkeypatch):
    (tmp_path / "models" / "1").mkdir(parents=True)

    def full_disk(builder, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tf.compat.v1.saved_model.Builder, "save", full_disk)
    result = run(["--export", "models", "--save-dir", str(trained / "ckpt")], tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("tf-lstm-char.py: error: could not write the SavedModel into "
                             "models (No space left on device); nothing was left there\n")
    assert os.listdir(tmp_path / "models") == ["1"]


def test_versions_are_numbered_past_the_highest_and_never_replace_one(tmp_path):
    parent = tmp_path / "models"
    parent.mkdir()
    for name in ("1", "7", "latest", "08"):
        (parent / name).mkdir()
    (parent / "08" / "saved_model.pb").write_text("kept")

    def built():
        folder = tmp_path / "built"
        folder.mkdir()
        (folder / "saved_model.pb").write_text("new")
        return str(folder)

    assert aux_funcs.publish_version(str(parent), built()) == str(parent / "9")
    assert (parent / "9" / "saved_model.pb").read_text() == "new"
    assert (parent / "08" / "saved_model.pb").read_text() == "kept"
    assert not (tmp_path / "built").exists()


def test_a_version_number_taken_meanwhile_is_passed_over(tmp_path, monkeypatch):
    """Between reading the folder and moving the model in, another export, or a file, may
    take the next number: the model goes to the first number still free."""
    parent = tmp_path / "models"
    (parent / "1").mkdir(parents=True)
    (parent / "2").write_text("a file")
    (parent / "3").mkdir()
    (parent / "3" / "saved_model.pb").write_text("another export")
    (tmp_path / "built").mkdir()
    (tmp_path / "built" / "saved_model.pb").write_text("new")
    monkeypatch.setattr(aux_funcs.os, "listdir", lambda path: ["1"])
    assert aux_funcs.publish_version(str(parent), str(tmp_path / "built")) == str(parent / "4")
    assert (parent / "2").read_text() == "a file"
    assert (parent / "3" / "saved_model.pb").read_text() == "another export"
    assert (parent / "4" / "saved_model.pb").read_text() == "new"
