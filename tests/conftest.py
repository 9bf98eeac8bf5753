"""What the tests share: the training script loaded as a module, TensorFlow imported through
it, small texts, small graphs built as the program builds them, and the script's command run
as a user runs it, in a process of its own or (faster) in this one."""
import contextlib
import functools
import importlib.util
import io
import os
import shutil
import subprocess
import sys

from unittest import mock

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tf-lstm-char.py")
sys.path.insert(0, REPO)

import aux_funcs  # noqa: E402  (found through the path above)

# Small texts to train on: long enough for a few windows of 10, short enough to train in
# seconds.
HAMLET = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind.\n" * 12
RICHARD = "Now is the winter of our discontent\nMade glorious summer by this sun of York.\n" * 10

# The size of the graphs built in-process by build().
VOCAB = 6
HIDDEN = 16


@functools.cache
def script_module():
    """tf-lstm-char.py as a module (its name has dashes, so it cannot be imported plainly),
    loaded once."""
    spec = importlib.util.spec_from_file_location("tf_lstm_char", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lstm():
    return script_module()


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


def run_in_process(args, cwd):
    """The script's command run in this process, as run_script runs it in a new one: its exit
    code and text output, without a TensorFlow start-up each time. For what a command does;
    what needs a process of its own (start-up, signals, the locale, the import of TensorFlow)
    keeps run_script."""
    lstm = script_module()
    tf = lstm.import_tensorflow()
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))
    # --seed's op determinism would hold for the whole process and refuse the unseeded
    # graphs of later tests; the seeds alone make a run repeatable here.
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), \
            mock.patch.object(tf.config.experimental, "enable_op_determinism"):
        try:
            code = lstm.command(list(args))
        except SystemExit as exit:
            code = exit.code
    out.flush()
    err.flush()
    return subprocess.CompletedProcess(args, code, out.buffer.getvalue().decode(),
                                       err.buffer.getvalue().decode())


def trained_run(folder, name, text, *args):
    """`folder`, holding the text `name` and a run of the script on it (with `args`) saved in
    ckpt/."""
    (folder / name).write_text(text, encoding="utf-8")
    result = run_in_process([name, "--save-dir", "ckpt", *args], folder)
    assert result.returncode == 0, result.stderr
    return folder


# A small model's flags, for runs that train in a second or two.
TINY = ["--hidden-dim", "16", "--seq-length", "10", "--sample-every", "10",
        "--sample-length", "30"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with richard.txt and a 30-iteration run saved in ckpt/, for a test module to
    read (tests that change it copy it first)."""
    return trained_run(tmp_path_factory.mktemp("trained"), "richard.txt", RICHARD,
                       "--iterations", "30", "--seed", "3", *TINY)


# A play in miniature, so that every feature of --visualize occurs: speakers' names in
# capitals, stage directions in brackets, a quotation.
PLAY = ("KING.\nNow is the winter of our discontent [Aside] made glorious.\n\n"
        "QUEEN.\n\"Summer\" by this sun of York, my lord.\n\n") * 30
PLAY_FLAGS = ["--hidden-dim", "16", "--seq-length", "10", "--sample-every", "10",
              "--sample-length", "20"]


@pytest.fixture(scope="session")
def play(tmp_path_factory):
    """A folder with play.txt and a 30-iteration run of it saved in ckpt/."""
    return trained_run(tmp_path_factory.mktemp("play"), "play.txt", PLAY, "--iterations", "30",
                       "--seed", "3", *PLAY_FLAGS)


@pytest.fixture(scope="session")
def visualized(play):
    """--visualize of the play's run, on a passage of 120 characters: its output; the page
    and picture are in the play's plots/."""
    result = run_in_process(["--visualize", "--save-dir", "ckpt", "--passage-length", "120"],
                            play)
    assert result.returncode == 0, result.stderr
    return result


def build(lstm, tf, vocab_size=VOCAB, **options):
    """A small graph as the program builds it, the post's with the extras: its Model."""
    options = lstm.Options(**{"hidden_dim": HIDDEN, **options})
    return lstm.add_extras(tf, lstm.build_graph(tf, vocab_size, options))


def session_of(lstm, tf, model):
    """A session with the program's options (the in-graph sampler runs in one of its pools)."""
    return tf.compat.v1.Session(graph=model.graph, config=lstm.session_config(tf, lstm.Options()))


def weights_of(model, session):
    return {v.op.name: session.run(v) for v in model.graph.get_collection("variables")}


def load_weights(model, session, weights):
    """Give a graph another graph's weights, by variable name: the graphs need not have been
    built alike, only their variables must be named alike."""
    session.run(model.init)
    for variable in model.graph.get_collection("variables"):
        variable.load(weights[variable.op.name], session)


def zero_state(model):
    return np.zeros(model.init_state.shape, dtype=np.float32)


def one_hot_steps(ids):
    """ids, one stream, as the x of a graph of VOCAB characters."""
    return aux_funcs.encode(ids, VOCAB)[:, np.newaxis, :]


def run_steps(session, model, ids, state):
    """The probabilities after each of `ids`, from `state`, and the state after the last."""
    return session.run([model.probabilities, model.final_state],
                       {model.x: one_hot_steps(ids), model.init_state: state})
