#!/usr/bin/env python3
"""A character-level LSTM text generator, written the TensorFlow 1.x way.

The network is a graph of placeholders built once and run in a `tf.compat.v1` Session. It
reads a text one window of `seq_length` characters at a time, carries its LSTM state from one
window to the next (truncated backpropagation through time), and every `sample_every`
iterations prints the smoothed loss and a sample drawn one character at a time, redraws the
loss plot, and saves a checkpoint (weights, optimizer state, vocabulary, options, position in
the text, carried state and losses) to resume from or sample from later.

Usage:
    python tf-lstm-char.py                          # train on data/shakespeare.txt
    python tf-lstm-char.py path/to/text.txt         # or on any UTF-8 text
    python tf-lstm-char.py --iterations 501 --hidden-dim 128
    python tf-lstm-char.py --resume                 # go on after Ctrl-C, from checkpoints/
    python tf-lstm-char.py --sample --prime "ROSALIND" --temperature 0.7
    python tf-lstm-char.py --help                   # every option

Results on data/shakespeare.txt (125,179 characters, 68 distinct) with the defaults, on a
2-core x86_64 CPU with TensorFlow 2.21:

    | iterations | final smoothed loss | wall time | iterations/s |
    |------------|---------------------|-----------|--------------|
    | 4001       | 1.5853              | 4m 26s    | 15.03        |

Hyperparameters:
    seq_length     characters in one training window; gradients flow back this far
    hidden_dim     size of the LSTM's cell state c and output h
    batch_size     windows trained on side by side (the original trains on one)
    learning_rate  step size of the optimizer (Adam, or plain gradient descent)
    iterations     training windows processed; one epoch is len(text) / seq_length of them
    sample_every   iterations between samples, loss lines, plot updates and checkpoints
    sample_length  characters drawn for each sample
"""
import argparse
import contextlib
import math
import os
import signal
import sys
import tempfile
import time
import warnings
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

import aux_funcs

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "data", "shakespeare.txt")
RULE = "-" * 72
# Options that shape the graph: a checkpoint can only be restored into a graph built alike.
GRAPH_OPTIONS = ("hidden_dim", "batch_size", "optimizer")
# Options a resumed run or a sample takes from the checkpoint unless they are typed again.
STORED_OPTIONS = ("text_file", "encoding", "hidden_dim", "iterations", "seq_length",
                  "batch_size", "learning_rate", "optimizer", "sample_every", "sample_length",
                  "temperature", "prime", "argmax", "seed", "plots_dir")
KEEP_CHECKPOINTS = 5  # the newest ones; older ones are removed
# What every checkpoint's .json and .npz must hold.
RUN_INFO = ("format", "vocabulary", "options", "text_sha256", "iteration", "position",
            "rng_state")
RUN_ARRAYS = ("state", "loss_hist", "smooth_loss_hist")

Model = namedtuple("Model", "graph x y init_state final_state logits probabilities loss "
                            "training init saver vocab_size hidden_dim batch_size")
# A checkpoint on disk: its path prefix, its .json contents and its .npz arrays.
Checkpoint = namedtuple("Checkpoint", "prefix info arrays")


class UserError(Exception):
    """A problem with the user's input, reported as one line, without a traceback."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr rather than usage plus error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(value):
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def non_negative_int(value):
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def positive_float(value):
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return number


# argparse names the type function in its message ("invalid positive_int value"), so give
# each one a name a user can read.
positive_int.__name__ = "positive integer"
non_negative_int.__name__ = "non-negative integer"
positive_float.__name__ = "positive number"


def build_parser():
    parser = OneLineArgumentParser(
        prog="tf-lstm-char.py",
        description="Train a character-level LSTM on a text file, printing samples as it "
                    "learns and saving a plot of the loss and checkpoints; or, with "
                    "--sample, write text from a saved checkpoint.")

    data = parser.add_argument_group("data")
    data.add_argument("text_file", metavar="TEXT_FILE", nargs="?",
                      help="text to train on (default: data/shakespeare.txt, or with "
                           "--resume the checkpoint's text)")
    data.add_argument("--encoding", default="utf-8", metavar="NAME",
                      help="encoding of TEXT_FILE (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--hidden-dim", type=positive_int, default=500, metavar="N",
                       help="size of the LSTM state (default: %(default)s)")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--iterations", type=positive_int, default=4001, metavar="N",
                       help="training iterations in all, counting those of a resumed run; "
                            "the upstream repository later used 501 for quick tries "
                            "(default: %(default)s)")
    optim.add_argument("--seq-length", type=positive_int, default=100, metavar="N",
                       help="characters per training window (default: %(default)s)")
    optim.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                       help="windows per iteration; only 1 for now (default: %(default)s)")
    optim.add_argument("--learning-rate", type=positive_float, default=1e-2, metavar="F",
                       help="optimizer step size (default: %(default)s)")
    optim.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="Adam, or the plain gradient descent the original keeps "
                            "commented out (default: %(default)s)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--sample", action="store_true",
                          help="do not train: print text drawn from the latest checkpoint "
                               "in --save-dir, and nothing else")
    sampling.add_argument("--sample-every", type=positive_int, default=100, metavar="N",
                          help="iterations between loss lines, samples, plot updates and "
                               "checkpoints (default: %(default)s)")
    sampling.add_argument("--sample-length", type=positive_int, default=600, metavar="N",
                          help="characters per sample (default: %(default)s)")
    sampling.add_argument("--temperature", type=positive_float, default=1.0, metavar="T",
                          help="divide the logits by T before drawing: below 1 is bolder "
                               "about likely characters, above 1 wilder (default: "
                               "%(default)s)")
    sampling.add_argument("--prime", default="", metavar="TEXT",
                          help="run TEXT through the network first and continue from it "
                               "(default: one random character)")
    sampling.add_argument("--argmax", action="store_true",
                          help="always take the most likely character instead of drawing")
    sampling.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                          help="random seed; give one to make a run or a sample repeatable "
                               "(default: a new one each run)")

    book = parser.add_argument_group("bookkeeping")
    book.add_argument("--plots-dir", default="plots", metavar="DIR",
                      help="folder for the loss plot PNG (default: %(default)s)")
    book.add_argument("--save-dir", metavar="DIR",
                      help="folder for checkpoints (default: checkpoints/<text name>)")
    book.add_argument("--resume", action="store_true",
                      help="go on training from the latest checkpoint in --save-dir")
    return parser


def parse_args(argv=None):
    """Parse the command line; `args.given` names the options the user typed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size != 1:
        parser.error("argument --batch-size: only 1 is supported for now, "
                     f"got {args.batch_size}")
    if args.sample and args.resume:
        parser.error("--sample and --resume do not go together: sample from a checkpoint, "
                     "or go on training it")
    # A second parse into a namespace of placeholders shows which options were typed, so
    # that --resume can take the others from the checkpoint.
    unset = object()
    probe = argparse.Namespace(**{name: unset for name in vars(args)})
    parser.parse_args(argv, probe)
    args.given = {name for name, value in vars(probe).items()
                  if value is not unset and value is not None}
    return args


@contextlib.contextmanager
def quiet_stderr():
    """Hide what is written to file descriptor 2 inside the block, unless the block fails.

    TensorFlow's C++ runtime prints its CUDA probes and oneDNN notes straight to fd 2 while it
    is imported, before TF_CPP_MIN_LOG_LEVEL is read, so only redirecting the descriptor
    hides them. If the block raises, what it printed is replayed: it explains the failure.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Import TensorFlow with the tf-keras RNN cells and without its start-up noise."""
    # With Keras 3, tf.compat.v1.nn.rnn_cell.LSTMCell is gone; this brings it back from
    # tf-keras, and is read only when TensorFlow is first imported.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_stderr():
            import tensorflow as tf
            tf.get_logger().setLevel("ERROR")
            tf.compat.v1.nn.rnn_cell.LSTMCell  # loads tf-keras now, inside the quiet block
    except ImportError as exc:
        raise UserError(f"cannot import TensorFlow ({exc}); "
                        "install it with: pip install -r requirements.txt") from None
    return tf


def build_graph(tf, vocab_size, hidden_dim, batch_size=1, learning_rate=1e-2,
                optimizer="adam", seed=None):
    """Build the training and sampling graph once; return its handles as a Model.

    Every tensor a user may want to reach again is named: x, y, init_state, final_state,
    out_w, out_b, logits, probabilities, loss and training.
    """
    tf1 = tf.compat.v1
    graph = tf.Graph()
    # The graph API this program teaches is deprecated as a whole; saying so at every call
    # would bury what it prints.
    with graph.as_default(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*deprecated")
        if seed is not None:
            tf1.set_random_seed(seed)
        x = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="x")
        y = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="y")
        init_state = tf1.placeholder(tf.float32, [2, batch_size, hidden_dim],
                                     name="init_state")
        cell = tf1.nn.rnn_cell.LSTMCell(hidden_dim, state_is_tuple=True,
                                       initializer=tf1.glorot_uniform_initializer())
        state = tf1.nn.rnn_cell.LSTMStateTuple(init_state[0], init_state[1])
        outputs, last = tf1.nn.dynamic_rnn(cell, x, initial_state=state, time_major=True)
        # Stacked like init_state, so a session can feed it straight back.
        final_state = tf.stack([last.c, last.h], name="final_state")

        out_w = tf1.get_variable("out_w", [hidden_dim, vocab_size],
                                 initializer=tf1.glorot_uniform_initializer())
        out_b = tf1.get_variable("out_b", [vocab_size], initializer=tf1.zeros_initializer())
        # One row per (time step, stream), time-major: row t * batch_size + b.
        logits = tf.add(tf.matmul(tf.reshape(outputs, [-1, hidden_dim]), out_w), out_b,
                        name="logits")
        probabilities = tf.nn.softmax(logits, name="probabilities")
        labels = tf.reshape(y, [-1, vocab_size])
        loss = tf.reduce_mean(
            tf1.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits),
            name="loss")
        if optimizer == "adam":
            step = tf1.train.AdamOptimizer(learning_rate)
        else:
            step = tf1.train.GradientDescentOptimizer(learning_rate)
        training = step.minimize(loss, name="training")
        init = tf1.global_variables_initializer()
        # Old checkpoints are removed by save_checkpoint, once a newer one is complete.
        saver = tf1.train.Saver(max_to_keep=None)
    graph.finalize()
    return Model(graph, x, y, init_state, final_state, logits, probabilities, loss, training,
                 init, saver, vocab_size, hidden_dim, batch_size)


def zero_state(model):
    return np.zeros((2, model.batch_size, model.hidden_dim), dtype=np.float32)


def sample(session, model, length, rng, temperature=1.0, prime_ids=(), argmax=False):
    """Draw `length` character ids, one session.run each, as the original does.

    Starts from a zero state and the prime (by default one random character); each drawn
    character is fed back as the next input, with the state the network returned.
    """
    state = zero_state(model)
    feed = list(prime_ids) or [rng.integers(model.vocab_size)]
    drawn = []
    while True:
        inputs = aux_funcs.encode(feed, model.vocab_size)[:, np.newaxis, :]
        logits, state = session.run([model.logits, model.final_state],
                                    {model.x: inputs, model.init_state: state})
        if len(drawn) == length:
            return drawn
        if argmax:
            char_id = int(np.argmax(logits[-1]))
        else:
            char_id = rng.choice(model.vocab_size,
                                 p=aux_funcs.char_distribution(logits[-1], temperature))
        drawn.append(char_id)
        feed = [char_id]


@dataclass
class Progress:
    """Where training stands: everything a resumed run needs that the graph does not hold."""
    iteration: int          # iterations done
    position: int           # where in the text the next window starts
    state: np.ndarray       # the LSTM state carried into that window
    loss_hist: list         # the loss of each iteration, after the starting value
    smooth_loss_hist: list  # the smoothed loss, likewise


def fresh_progress(model):
    start = -np.log(1.0 / model.vocab_size)
    return Progress(0, 0, zero_state(model), [start], [start])


class StopRequest:
    """Turn the first SIGINT or SIGTERM into a request to stop after the current step.

    The training loop asks `signum` after each step, saves and stops; a second signal
    interrupts at once (the last complete checkpoint is still there).
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def train(session, model, ids, progress, args, vocab, rng, checkpoint, stop):
    """Run the training loop from `progress` to args.iterations, or until `stop` is asked.

    At every sample point (and when stopping) it prints the smoothed loss and a sample,
    redraws the plot and calls checkpoint(progress).
    """
    it_per_epoch = len(ids) / args.seq_length
    text_name = text_name_of(args.text_file)
    width = len(str(args.iterations - 1))
    prime_ids = [vocab.index(ch) for ch in args.prime]
    batches = aux_funcs.batch_generator(ids, args.seq_length, model.vocab_size,
                                        progress.position)
    while progress.iteration < args.iterations:
        it = progress.iteration
        position, inputs, targets = next(batches)
        if position == 0:
            progress.state = zero_state(model)
        loss, progress.state, _ = session.run(
            [model.loss, model.final_state, model.training],
            {model.x: inputs, model.y: targets, model.init_state: progress.state})
        smooth_loss = progress.smooth_loss_hist[-1] * 0.999 + loss * 0.001
        progress.loss_hist.append(float(loss))
        progress.smooth_loss_hist.append(smooth_loss)
        progress.iteration = it + 1
        progress.position = position + args.seq_length
        if it % args.sample_every == 0 or progress.iteration == args.iterations or stop.signum:
            print(f"iter {it:>{width}}, loss: {smooth_loss:.4f}")
            drawn = sample(session, model, args.sample_length, rng, args.temperature,
                           prime_ids, args.argmax)
            text = args.prime + "".join(vocab[i] for i in drawn)
            print(f"{RULE}\n{text}\n{RULE}", flush=True)
            aux_funcs.plot(progress.loss_hist, progress.smooth_loss_hist, it, it_per_epoch,
                           text_name, args.plots_dir)
            checkpoint(progress)
        if stop.signum:
            return


def checkpoint_prefix(save_dir, iteration):
    return os.path.join(save_dir, f"ckpt-{iteration}")


def save_checkpoint(session, model, save_dir, progress, info, rng):
    """Save weights, optimizer slots and `progress` as checkpoint ckpt-<iteration>.

    All or nothing: the new checkpoint is listed in <save_dir>/checkpoint only once all its
    files are complete, and older ones are removed only after that.
    """
    name = f"ckpt-{progress.iteration}"
    prefix = checkpoint_prefix(save_dir, progress.iteration)
    earlier = [n for n in aux_funcs.read_checkpoint_list(save_dir) if n != name]
    kept = (earlier + [name])[-KEEP_CHECKPOINTS:]
    try:
        model.saver.save(session, prefix, write_state=False)
        info = dict(info, iteration=progress.iteration, position=progress.position,
                    rng_state=rng.bit_generator.state)
        aux_funcs.save_run_state(prefix, info, {
            "state": progress.state,
            "loss_hist": np.array(progress.loss_hist, dtype=np.float64),
            "smooth_loss_hist": np.array(progress.smooth_loss_hist, dtype=np.float64)})
        aux_funcs.write_checkpoint_list(save_dir, kept)
    except Exception as exc:
        # Whatever failed (a full disk, a permission, TensorFlow's writer), the new
        # checkpoint is unlisted and incomplete: remove what there is of it.
        remove_checkpoint_files(save_dir, name)
        raise UserError(f"could not save checkpoint {prefix} ({type(exc).__name__}: "
                        f"{exc}); the previous checkpoint is intact") from None
    for old in set(earlier) - set(kept):
        remove_checkpoint_files(save_dir, old)


def remove_checkpoint_files(save_dir, name):
    for entry in os.listdir(save_dir):
        if entry.startswith(name + "."):
            os.unlink(os.path.join(save_dir, entry))


def latest_checkpoint(save_dir):
    """The newest complete checkpoint in save_dir, as a Checkpoint."""
    names = aux_funcs.read_checkpoint_list(save_dir)
    if not names:
        raise UserError(f"no checkpoint in {save_dir}; train first, or give the --save-dir "
                        "of a run")
    prefix = os.path.join(save_dir, names[-1])
    try:
        info, arrays = aux_funcs.load_run_state(prefix)
    except (OSError, ValueError) as exc:
        raise UserError(f"checkpoint {prefix} is damaged or incomplete ({exc})") from None
    missing = [key for key in RUN_INFO if not isinstance(info, dict) or key not in info]
    missing += [key for key in RUN_ARRAYS if key not in arrays]
    if not missing:
        missing = [key for key in STORED_OPTIONS if key not in info["options"]]
    if missing:
        raise UserError(f"checkpoint {prefix} is damaged or incomplete (no "
                        f"{', '.join(missing)})")
    return Checkpoint(prefix, info, arrays)


def restore_checkpoint(session, model, prefix):
    try:
        model.saver.restore(session, prefix)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"checkpoint {prefix} cannot be restored ({first_line})") from None


def adopt_checkpoint_options(args, saved, names):
    """Take the options `names` from the checkpoint where the user did not type them; refuse
    a typed one that would change the graph."""
    stored, prefix = saved.info["options"], saved.prefix
    for name in GRAPH_OPTIONS:
        if name in args.given and getattr(args, name) != stored[name]:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {getattr(args, name)} does not match checkpoint {prefix}, "
                            f"which has {stored[name]}; leave {flag} out to use it")
    for name in names:
        if name not in args.given:
            setattr(args, name, stored[name])


def check_prime(prime, vocab):
    unknown = sorted(set(prime) - set(vocab))
    if unknown:
        raise UserError("--prime has characters the model does not know: "
                        + " ".join(repr(ch) for ch in unknown))


def read_text(path, encoding):
    """Load the text and its vocabulary, turning the usual ways a file can be wrong into
    one-line errors."""
    try:
        text, char_to_idx, _, _ = aux_funcs.load(path, encoding)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a text file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except LookupError:
        raise UserError(f"--encoding {encoding}: unknown encoding") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid {encoding} at byte {exc.start}; "
                        "try --encoding latin-1") from None
    return text, char_to_idx


def make_writable_dir(path, flag):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: not writable")


def display_path(path):
    """The path relative to the working folder when it lies below it, else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def format_duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def text_name_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def default_save_dir(args):
    return os.path.join("checkpoints", text_name_of(args.text_file or DEFAULT_TEXT))


def run_sample(args):
    """--sample: print text drawn from the latest checkpoint, and nothing else."""
    save_dir = args.save_dir or default_save_dir(args)
    saved = latest_checkpoint(save_dir)
    adopt_checkpoint_options(args, saved, GRAPH_OPTIONS)
    vocab = list(saved.info["vocabulary"])
    check_prime(args.prime, vocab)
    tf = import_tensorflow()
    # One stream is enough to sample, whatever batch the checkpoint was trained with.
    model = build_graph(tf, len(vocab), args.hidden_dim, 1, args.learning_rate,
                        args.optimizer)
    rng = np.random.default_rng(args.seed)
    with tf.compat.v1.Session(graph=model.graph) as session:
        restore_checkpoint(session, model, saved.prefix)
        drawn = sample(session, model, args.sample_length, rng, args.temperature,
                       [vocab.index(ch) for ch in args.prime], args.argmax)
    sys.stdout.write(args.prime + "".join(vocab[i] for i in drawn) + "\n")
    return 0


def check_training_inputs(args, resumed):
    """Everything that can be wrong before training, checked before TensorFlow loads.

    Returns (text, char_to_idx, vocab, text_sha256).
    """
    text, char_to_idx = read_text(args.text_file, args.encoding)
    if len(text) < args.seq_length + 1:
        raise UserError(f"{args.text_file}: {len(text)} characters is too short for "
                        f"--seq-length {args.seq_length}; it needs at least "
                        f"{args.seq_length + 1}")
    vocab = sorted(char_to_idx, key=char_to_idx.get)
    text_sha256 = aux_funcs.sha256_of_file(args.text_file)
    if resumed:
        if (text_sha256 != resumed.info["text_sha256"]
                or vocab != list(resumed.info["vocabulary"])):
            raise UserError(f"{args.text_file} is not the text checkpoint {resumed.prefix} "
                            f"was trained on ({resumed.info['options']['text_file']})")
        if resumed.info["iteration"] >= args.iterations:
            raise UserError(f"checkpoint {resumed.prefix} has done "
                            f"{resumed.info['iteration']} iterations already; give a larger "
                            "--iterations to train on")
    elif aux_funcs.read_checkpoint_list(args.save_dir):
        raise UserError(f"{args.save_dir} holds a checkpoint already; add --resume to go on "
                        "training it, or give another --save-dir")
    check_prime(args.prime, vocab)
    make_writable_dir(args.plots_dir, "--plots-dir")
    make_writable_dir(args.save_dir, "--save-dir")
    return text, char_to_idx, vocab, text_sha256


def run_training(args):
    resumed = None
    if args.resume:
        resumed = latest_checkpoint(args.save_dir or default_save_dir(args))
        adopt_checkpoint_options(args, resumed, STORED_OPTIONS)
    args.save_dir = args.save_dir or default_save_dir(args)
    args.text_file = args.text_file or DEFAULT_TEXT
    text, char_to_idx, vocab, text_sha256 = check_training_inputs(args, resumed)
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    print(f"{display_path(args.text_file)}: {len(text):,} characters, "
          f"{len(vocab)} distinct", flush=True)

    tf = import_tensorflow()
    if args.seed is not None:
        tf.config.experimental.enable_op_determinism()
    model = build_graph(tf, len(vocab), args.hidden_dim, args.batch_size,
                        args.learning_rate, args.optimizer, args.seed)
    rng = np.random.default_rng(args.seed)
    options = {name: getattr(args, name) for name in STORED_OPTIONS}
    options["text_file"] = os.path.abspath(args.text_file)
    run_info = {"format": 1, "vocabulary": "".join(vocab), "options": options,
                "text_sha256": text_sha256}
    start = time.perf_counter()
    with tf.compat.v1.Session(graph=model.graph) as session, StopRequest() as stop:
        if resumed:
            restore_checkpoint(session, model, resumed.prefix)
            progress = Progress(resumed.info["iteration"], resumed.info["position"],
                                resumed.arrays["state"], resumed.arrays["loss_hist"].tolist(),
                                resumed.arrays["smooth_loss_hist"].tolist())
            rng.bit_generator.state = resumed.info["rng_state"]
            print(f"resuming {display_path(resumed.prefix)} at iteration "
                  f"{progress.iteration}", flush=True)
        else:
            session.run(model.init)
            progress = fresh_progress(model)
        done_before = progress.iteration
        train(session, model, ids, progress, args, vocab, rng,
              lambda p: save_checkpoint(session, model, args.save_dir, p, run_info, rng),
              stop)
    elapsed = time.perf_counter() - start
    done = progress.iteration - done_before
    print(f"trained {done} iterations in {format_duration(elapsed)} "
          f"({done / elapsed:.2f} iterations/s), "
          f"final smoothed loss {progress.smooth_loss_hist[-1]:.4f}")
    print(f"loss plot: {os.path.join(args.plots_dir, text_name_of(args.text_file))}_loss.png")
    print(f"checkpoint: {checkpoint_prefix(args.save_dir, progress.iteration)}", flush=True)
    if stop.signum:
        print(f"tf-lstm-char.py: stopped by {signal.Signals(stop.signum).name} at iteration "
              f"{progress.iteration}; go on with: python tf-lstm-char.py --resume "
              f"--save-dir {args.save_dir}", file=sys.stderr)
        return 128 + stop.signum
    return 0


def main(argv=None):
    args = parse_args(argv)
    # Samples are written as UTF-8 whatever the locale says, so any text can be piped.
    sys.stdout.reconfigure(encoding="utf-8")
    return run_sample(args) if args.sample else run_training(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"tf-lstm-char.py: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("tf-lstm-char.py: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (as `| head` does); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
