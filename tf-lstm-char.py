#!/usr/bin/env python3
"""A character-level LSTM text generator, written the TensorFlow 1.x way.

The network is a graph of placeholders built once and run in a `tf.compat.v1` Session. It
reads a text one window of `seq_length` characters at a time, carries its LSTM state from one
window to the next (truncated backpropagation through time), and every `sample_every`
iterations prints the smoothed loss and a sample drawn from it one character at a time, and
redraws the loss plot.

Usage:
    python tf-lstm-char.py                          # train on data/shakespeare.txt
    python tf-lstm-char.py path/to/text.txt         # or on any UTF-8 text
    python tf-lstm-char.py --iterations 501 --hidden-dim 128
    python tf-lstm-char.py --help                   # every option

Results on data/shakespeare.txt (125,179 characters, 68 distinct) with the defaults, on a
2-core x86_64 CPU with TensorFlow 2.21:

    | iterations | final smoothed loss | wall time | iterations/s |
    |------------|---------------------|-----------|--------------|
    | 4001       | 1.5631              | 6m 02s    | 11.04        |

Hyperparameters:
    seq_length     characters in one training window; gradients flow back this far
    hidden_dim     size of the LSTM's cell state c and output h
    batch_size     windows trained on side by side (the original trains on one)
    learning_rate  step size of the optimizer (Adam, or plain gradient descent)
    iterations     training windows processed; one epoch is len(text) / seq_length of them
    sample_every   iterations between samples, loss lines and plot updates
    sample_length  characters drawn for each sample
"""
import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import warnings
from collections import namedtuple

import numpy as np

import aux_funcs

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "data", "shakespeare.txt")
RULE = "-" * 72

Model = namedtuple("Model", "graph x y init_state final_state probabilities loss training "
                            "init vocab_size hidden_dim batch_size")


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


def parse_args(argv=None):
    parser = OneLineArgumentParser(
        prog="tf-lstm-char.py",
        description="Train a character-level LSTM on a text file, printing samples as it "
                    "learns and saving a plot of the loss.")

    data = parser.add_argument_group("data")
    data.add_argument("text_file", metavar="TEXT_FILE", nargs="?", default=DEFAULT_TEXT,
                      help="text to train on (default: data/shakespeare.txt)")
    data.add_argument("--encoding", default="utf-8", metavar="NAME",
                      help="encoding of TEXT_FILE (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--hidden-dim", type=positive_int, default=500, metavar="N",
                       help="size of the LSTM state (default: %(default)s)")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--iterations", type=positive_int, default=4001, metavar="N",
                       help="training iterations; the upstream repository later used 501 "
                            "for quick tries (default: %(default)s)")
    optim.add_argument("--seq-length", type=positive_int, default=100, metavar="N",
                       help="characters per training window (default: %(default)s)")
    optim.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                       help="windows per iteration; only 1 for now (default: %(default)s)")
    optim.add_argument("--learning-rate", type=positive_float, default=1e-2, metavar="F",
                       help="optimizer step size (default: %(default)s)")
    optim.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="Adam, or the plain gradient descent the original keeps "
                            "commented out (default: %(default)s)")

    book = parser.add_argument_group("sampling and bookkeeping")
    book.add_argument("--sample-every", type=positive_int, default=100, metavar="N",
                      help="iterations between loss lines, samples and plot updates "
                           "(default: %(default)s)")
    book.add_argument("--sample-length", type=positive_int, default=600, metavar="N",
                      help="characters per sample (default: %(default)s)")
    book.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                      help="random seed; give one to make a run repeatable "
                           "(default: a new one each run)")
    book.add_argument("--plots-dir", default="plots", metavar="DIR",
                      help="folder for the loss plot PNG (default: %(default)s)")

    args = parser.parse_args(argv)
    if args.batch_size != 1:
        parser.error("argument --batch-size: only 1 is supported for now, "
                     f"got {args.batch_size}")
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
    graph.finalize()
    return Model(graph, x, y, init_state, final_state, probabilities, loss, training, init,
                 vocab_size, hidden_dim, batch_size)


def zero_state(model):
    return np.zeros((2, model.batch_size, model.hidden_dim), dtype=np.float32)


def sample(session, model, length, rng):
    """Draw `length` character ids, one session.run each, as the original does.

    Starts from one random character and a zero state; each drawn character is fed back as
    the next input, with the state the network returned.
    """
    state = zero_state(model)
    char_id = rng.integers(model.vocab_size)
    drawn = []
    for _ in range(length):
        inputs = aux_funcs.encode([char_id], model.vocab_size)[:, np.newaxis, :]
        probs, state = session.run([model.probabilities, model.final_state],
                                   {model.x: inputs, model.init_state: state})
        # float32 probabilities may miss summing to 1 by more than numpy tolerates.
        p = probs[0].astype(np.float64)
        char_id = rng.choice(model.vocab_size, p=p / p.sum())
        drawn.append(char_id)
    return drawn


def train(session, model, ids, idx_to_char, args, text_name, rng):
    """Run the training loop; return (loss_hist, smooth_loss_hist), one entry per iteration
    after the starting value at index 0."""
    loss_hist = [-np.log(1.0 / model.vocab_size)]
    smooth_loss = loss_hist[0]
    smooth_loss_hist = [smooth_loss]
    it_per_epoch = len(ids) / args.seq_length
    width = len(str(args.iterations - 1))
    batches = aux_funcs.batch_generator(ids, args.seq_length, model.vocab_size)
    state = zero_state(model)
    for it in range(args.iterations):
        position, inputs, targets = next(batches)
        if position == 0:
            state = zero_state(model)
        loss, state, _ = session.run(
            [model.loss, model.final_state, model.training],
            {model.x: inputs, model.y: targets, model.init_state: state})
        smooth_loss = smooth_loss * 0.999 + loss * 0.001
        loss_hist.append(float(loss))
        smooth_loss_hist.append(smooth_loss)
        if it % args.sample_every == 0 or it == args.iterations - 1:
            print(f"iter {it:>{width}}, loss: {smooth_loss:.4f}")
            text = "".join(idx_to_char[i] for i in sample(session, model,
                                                          args.sample_length, rng))
            print(f"{RULE}\n{text}\n{RULE}", flush=True)
            aux_funcs.plot(loss_hist, smooth_loss_hist, it, it_per_epoch, text_name,
                           args.plots_dir)
    return loss_hist, smooth_loss_hist


def read_text(path, encoding):
    """Load the text, turning the usual ways a file can be wrong into one-line errors."""
    try:
        text, char_to_idx, idx_to_char, vocab_size = aux_funcs.load(path, encoding)
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
    return text, char_to_idx, idx_to_char, vocab_size


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


def main(argv=None):
    args = parse_args(argv)
    text, char_to_idx, idx_to_char, vocab_size = read_text(args.text_file, args.encoding)
    if len(text) < args.seq_length + 1:
        raise UserError(f"{args.text_file}: {len(text)} characters is too short for "
                        f"--seq-length {args.seq_length}; it needs at least "
                        f"{args.seq_length + 1}")
    try:
        os.makedirs(args.plots_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--plots-dir {args.plots_dir}: {exc.strerror}") from None
    if not os.access(args.plots_dir, os.W_OK):
        raise UserError(f"--plots-dir {args.plots_dir}: not writable")
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    text_name = os.path.splitext(os.path.basename(args.text_file))[0]
    print(f"{display_path(args.text_file)}: {len(text):,} characters, "
          f"{vocab_size} distinct", flush=True)

    tf = import_tensorflow()
    if args.seed is not None:
        tf.config.experimental.enable_op_determinism()
    model = build_graph(tf, vocab_size, args.hidden_dim, args.batch_size,
                        args.learning_rate, args.optimizer, args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)
        loss_hist, smooth_loss_hist = train(session, model, ids, idx_to_char, args,
                                            text_name, rng)
    elapsed = time.perf_counter() - start
    print(f"trained {args.iterations} iterations in {format_duration(elapsed)} "
          f"({args.iterations / elapsed:.2f} iterations/s), "
          f"final smoothed loss {smooth_loss_hist[-1]:.4f}")
    print(f"loss plot: {os.path.join(args.plots_dir, text_name + '_loss.png')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"tf-lstm-char.py: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("tf-lstm-char.py: interrupted", file=sys.stderr)
        sys.exit(130)
