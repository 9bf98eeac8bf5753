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

Results on data/shakespeare.txt (125,179 characters, 68 distinct; the last 10% held out) with
the defaults, on a 2-core x86_64 CPU with TensorFlow 2.21 (README.md has more):

    | iterations | training loss (smoothed) | validation loss | wall time | iterations/s |
    |------------|--------------------------|-----------------|-----------|--------------|
    | 4001       | 1.5223 (2.196 bits/char) | 1.6501 (2.381)  | 4m 23s    | 15.23        |

Hyperparameters:
    seq_length     characters in one training window; gradients flow back this far
    hidden_dim     size of the LSTM's cell state c and output h
    batch_size     tracks of the text trained side by side (the original trains on one)
    val_fraction   share of the text, at its end, held out to measure generalisation
    clip           largest global norm of the gradients (none in the original)
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
FORGET_BIAS = 1.0  # LSTMCell's default, added to the forget gate
# Options that shape the graph: a checkpoint can only be restored into a graph built alike.
GRAPH_OPTIONS = ("hidden_dim", "batch_size", "optimizer")
# Options a resumed run must keep: the graph's, and the split of the text it trains on.
FIXED_OPTIONS = GRAPH_OPTIONS + ("val_fraction",)
# Options a resumed run or a sample takes from the checkpoint unless they are typed again.
STORED_OPTIONS = ("text_file", "encoding", "val_fraction", "hidden_dim", "iterations",
                  "seq_length", "batch_size", "learning_rate", "optimizer", "clip",
                  "sample_every", "sample_length", "temperature", "prime", "argmax", "sampler",
                  "seed", "xla", "bf16", "plots_dir", "logdir")
KEEP_CHECKPOINTS = 5  # the newest ones, and the best by validation loss; others are removed
# Held-out evaluation: characters per track at least, tracks at most, steps per session.run.
VAL_TRACK_LENGTH = 1000
VAL_MAX_TRACKS = 32
VAL_WINDOW = 1000
# Beyond this many held-out characters evaluation would cost more than training between two
# sample points on a large text; the rest of the held-out text is still never trained on.
VAL_MAX_CHARS = 200_000
# Samples are drawn and printed in pieces of this many characters (one session.run of the
# in-graph sampler, well under a tenth of a second here), so that a long sample shows as it
# comes and stops soon when asked to.
SAMPLE_PIECE = 1000
# What every checkpoint's .json and .npz must hold.
RUN_INFO = ("format", "vocabulary", "options", "text_sha256", "iteration", "position",
            "rng_state", "best")
RUN_ARRAYS = ("state", "loss_hist", "smooth_loss_hist", "val_points")

Model = namedtuple("Model", "graph x y x_ids y_ids init_state final_state logits "
                            "probabilities loss training init saver val_ids val_init_state "
                            "val_final_state val_loss_sum sample_prime sample_length "
                            "temperature use_argmax sample_ids sample_start_state "
                            "sample_end_state vocab_size hidden_dim batch_size")
# A checkpoint on disk: its path prefix, its .json contents and its .npz arrays.
Checkpoint = namedtuple("Checkpoint", "prefix info arrays")


class UserError(Exception):
    """A problem with the user's input, reported as one line, without a traceback."""


class Diverged(UserError):
    """The loss or the weights stopped being finite numbers."""

    def __init__(self, what, value, it):
        at = "" if it is None else f" at iteration {it}"
        super().__init__(f"the {what} became {value}{at}: training diverged, so this state was "
                         "not saved and the last checkpoint is kept; try a lower "
                         "--learning-rate")


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


def fraction_up_to_half(value):
    number = float(value)
    if not 0 <= number <= 0.5:
        raise argparse.ArgumentTypeError(f"must be from 0 to 0.5, got {value}")
    return number


# argparse names the type function in its message ("invalid positive_int value"), so give
# each one a name a user can read.
positive_int.__name__ = "positive integer"
non_negative_int.__name__ = "non-negative integer"
positive_float.__name__ = "positive number"
fraction_up_to_half.__name__ = "fraction"


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
    data.add_argument("--val-fraction", type=fraction_up_to_half, default=0.1, metavar="F",
                      help="hold out the last F of the text to measure how well the model "
                           "writes text it never trained on; 0 trains on all of it, as the "
                           "original does (default: %(default)s)")

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
                       help="streams trained side by side: the text is cut into this many "
                            "tracks, each read in order with its own LSTM state; 1 is the "
                            "original (default: %(default)s)")
    optim.add_argument("--learning-rate", type=positive_float, default=1e-2, metavar="F",
                       help="optimizer step size (default: %(default)s)")
    optim.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                       help="Adam, or the plain gradient descent the original keeps "
                            "commented out (default: %(default)s)")
    optim.add_argument("--clip", type=positive_float, default=None, metavar="F",
                       help="scale the gradients down to a global norm of at most F "
                            "(default: no clipping, as the original)")

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
    sampling.add_argument("--sampler", choices=("graph", "feed"), default="graph",
                          help="draw a whole sample in one session.run with a tf.while_loop, "
                               "or feed one character per session.run as the original does "
                               "(default: %(default)s)")
    sampling.add_argument("--best", action="store_true",
                          help="with --sample, use the checkpoint with the lowest validation "
                               "loss instead of the latest")
    sampling.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                          help="random seed; give one to make a run or a sample repeatable "
                               "(default: a new one each run)")

    speed = parser.add_argument_group("speed (see the Performance section of README.md)")
    speed.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                       help="let XLA compile clusters of the graph; auto turns it on where it "
                            "paid off here: batch 1 without --bf16 (default: %(default)s)")
    speed.add_argument("--bf16", action="store_true",
                       help="run the matrix products in bfloat16 (weights and sums stay "
                            "float32): much faster on processors with AVX512-BF16 or AMX, "
                            "slightly different numbers")

    book = parser.add_argument_group("bookkeeping")
    book.add_argument("--plots-dir", default="plots", metavar="DIR",
                      help="folder for the loss plot PNG (default: %(default)s)")
    book.add_argument("--save-dir", metavar="DIR",
                      help="folder for checkpoints (default: checkpoints/<text name>)")
    book.add_argument("--resume", action="store_true",
                      help="go on training from the latest checkpoint in --save-dir")
    book.add_argument("--logdir", metavar="DIR",
                      help="also write TensorBoard event files (graph, losses) to DIR "
                           "(default: none)")
    return parser


def parse_args(argv=None):
    """Parse the command line; `args.given` names the options the user typed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.best and not args.sample:
        parser.error("--best goes with --sample")
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


def use_xla(args, sampling=False):
    """Whether to turn XLA on: measured here (tests/benchmark.py) it speeds up training at
    batch 1, but slows down training at batch 32 and the in-graph sampler, and keeps --bf16
    from applying."""
    if args.xla == "auto":
        return not sampling and args.batch_size == 1 and not args.bf16
    return args.xla == "on"


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


def amd_processor():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return "AuthenticAMD" in cpuinfo.read(4096)
    except OSError:
        return False


def import_tensorflow(xla=False, bf16=False):
    """Import TensorFlow with the tf-keras RNN cells and without its start-up noise.

    Everything here is read once, when TensorFlow is first imported in the process.
    """
    # With Keras 3, tf.compat.v1.nn.rnn_cell.LSTMCell is gone; this brings it back from
    # tf-keras.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's kernels are TensorFlow's default only on some processors; they are the
    # largest single speed-up measured here (tests/benchmark.py), so ask for them everywhere.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if amd_processor() and not bf16:
        # On the AMD EPYC this was measured on, oneDNN's AVX-512 code was slow at the
        # backward pass's product with the transposed kernel, and capping oneDNN at AVX2
        # made batch-32 training 6-26% faster (batch 1 the same; tests/benchmark.py has
        # both). Intel processors keep AVX-512; so does --bf16, whose products need it.
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    if xla:
        # On the CPU, XLA auto-clustering needs this besides the session's global_jit_level.
        os.environ.setdefault("TF_XLA_FLAGS", "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit")
    try:
        with quiet_stderr():
            import tensorflow as tf
            tf.get_logger().setLevel("ERROR")
            tf.compat.v1.nn.rnn_cell.LSTMCell  # loads tf-keras now, inside the quiet block
    except ImportError as exc:
        raise UserError(f"cannot import TensorFlow ({exc}); "
                        "install it with: pip install -r requirements.txt") from None
    return tf


def session_config(tf, xla=False, bf16=False):
    """Session options that run the same graph faster (see the Performance section)."""
    config = tf.compat.v1.ConfigProto()
    if xla:
        config.graph_options.optimizer_options.global_jit_level = (
            tf.compat.v1.OptimizerOptions.ON_1)
    if bf16:
        # oneDNN runs matrix products in bfloat16 where the processor has it; weights and
        # sums stay float32.
        rewrites = config.graph_options.rewrite_options
        rewrites.auto_mixed_precision_onednn_bfloat16 = type(rewrites).ON
    return config


def build_graph(tf, vocab_size, hidden_dim, batch_size=1, learning_rate=1e-2,
                optimizer="adam", seed=None, clip=None):
    """Build the training, evaluation and sampling graph once; return its handles as a Model.

    Every tensor a user may want to reach again is named: x, y, init_state, final_state,
    out_w, out_b, logits, probabilities, loss and training as in the original; x_ids and
    y_ids, the integer form of x and y the trainer feeds; val_ids, val_init_state,
    val_final_state and val_loss_sum for held-out text; sample_prime, sample_length,
    temperature, argmax and sample_ids for the in-graph sampler, with sample_start_state and
    sample_end_state to go on where it stopped.
    """
    tf1 = tf.compat.v1
    graph = tf.Graph()
    # The graph API this program teaches is deprecated as a whole; saying so at every call
    # would bury what it prints.
    with graph.as_default(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*deprecated")
        if seed is not None:
            tf1.set_random_seed(seed)
        # x and y are the original's one-hot placeholders. The trainer feeds character ids
        # instead and lets the graph expand them, which spares building the one-hot arrays
        # in Python; x and y can still be fed directly, by name, as in the original.
        x_ids = tf1.placeholder_with_default(tf.zeros([0, batch_size], tf.int32),
                                             [None, batch_size], name="x_ids")
        y_ids = tf1.placeholder_with_default(tf.zeros([0, batch_size], tf.int32),
                                             [None, batch_size], name="y_ids")
        x = tf1.placeholder_with_default(tf.one_hot(x_ids, vocab_size),
                                         [None, batch_size, vocab_size], name="x")
        y = tf1.placeholder_with_default(tf.one_hot(y_ids, vocab_size),
                                         [None, batch_size, vocab_size], name="y")
        init_state = tf1.placeholder(tf.float32, [2, batch_size, hidden_dim],
                                     name="init_state")
        cell = tf1.nn.rnn_cell.LSTMCell(hidden_dim, state_is_tuple=True,
                                       forget_bias=FORGET_BIAS,
                                       initializer=tf1.glorot_uniform_initializer())
        state = tf1.nn.rnn_cell.LSTMStateTuple(init_state[0], init_state[1])
        outputs, last = tf1.nn.dynamic_rnn(cell, x, initial_state=state, time_major=True)
        # Stacked like init_state, so a session can feed it straight back.
        final_state = tf.stack([last.c, last.h], name="final_state")

        out_w = tf1.get_variable("out_w", [hidden_dim, vocab_size],
                                 initializer=tf1.glorot_uniform_initializer())
        out_b = tf1.get_variable("out_b", [vocab_size], initializer=tf1.zeros_initializer())

        def scores(lstm_outputs):
            return tf.matmul(tf.reshape(lstm_outputs, [-1, hidden_dim]), out_w) + out_b

        # One row per (time step, stream), time-major: row t * batch_size + b.
        logits = tf.identity(scores(outputs), name="logits")
        probabilities = tf.nn.softmax(logits, name="probabilities")
        labels = tf.reshape(y, [-1, vocab_size])
        loss = tf.reduce_mean(
            tf1.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=logits),
            name="loss")

        # Held-out evaluation: the same cell and output layer, fed integer ids, any number of
        # side-by-side tracks, each window's first row only as input and its last only as
        # target. It gives the summed loss, so windows of any length add up to a mean over the
        # whole text.
        val_ids = tf1.placeholder(tf.int32, [None, None], name="val_ids")
        val_init_state = tf1.placeholder(tf.float32, [2, None, hidden_dim],
                                         name="val_init_state")
        val_outputs, val_last = tf1.nn.dynamic_rnn(
            cell, tf.one_hot(val_ids[:-1], vocab_size),
            initial_state=tf1.nn.rnn_cell.LSTMStateTuple(val_init_state[0], val_init_state[1]),
            time_major=True, scope="val_rnn")
        val_final_state = tf.stack([val_last.c, val_last.h], name="val_final_state")
        val_loss_sum = tf.reduce_sum(
            tf1.nn.softmax_cross_entropy_with_logits_v2(
                labels=tf.one_hot(tf.reshape(val_ids[1:], [-1]), vocab_size),
                logits=scores(val_outputs)),
            name="val_loss_sum")

        # The in-graph sampler: read the prime from a zero state, then draw one character at
        # a time inside a tf.while_loop, feeding each back, so a whole sample is one
        # session.run instead of one per character. Its step is the LSTM cell's own
        # arithmetic written out on the cell's variables (a test checks that it reaches the
        # cell's state), because a one-hot input times the kernel is just one row of it:
        # gathering that row instead of multiplying made sampling about half again as fast.
        sample_prime = tf1.placeholder(tf.int32, [None], name="sample_prime")
        sample_length = tf1.placeholder(tf.int32, [], name="sample_length")
        temperature = tf1.placeholder_with_default(1.0, [], name="temperature")
        use_argmax = tf1.placeholder_with_default(False, [], name="argmax")
        prime_outputs, prime_state = tf1.nn.dynamic_rnn(
            cell, tf.one_hot(sample_prime[:, tf.newaxis], vocab_size),
            initial_state=cell.zero_state(1, tf.float32), time_major=True, scope="sample_rnn")
        kernel, bias = (next(v for v in cell.variables if v.op.name.endswith(name))
                        for name in ("kernel", "bias"))
        # The kernel's columns hold the gates i, j, f, o side by side; f gets the forget
        # bias. Cutting out each gate's block once, outside the loop, turns the step's one
        # product with the whole kernel into four a quarter of its size: measured here, that
        # about doubled the sampler's speed.
        gate_rows = tf.split(kernel[:vocab_size], 4, axis=1)
        gate_kernels = tf.split(kernel[vocab_size:], 4, axis=1)
        gate_biases = tf.split(bias, 4)
        gate_biases[2] += FORGET_BIAS

        def draw_one(i, last_scores, lstm_state, drawn):
            next_id = tf1.where(
                use_argmax, tf.argmax(last_scores, axis=1, output_type=tf.int32),
                tf.random.categorical(last_scores / temperature, 1, dtype=tf.int32)[:, 0])
            c, h = lstm_state
            in_gate, candidate, forget_gate, out_gate = (
                tf.gather(rows, next_id) + tf.matmul(h, block) + gate_bias
                for rows, block, gate_bias in zip(gate_rows, gate_kernels, gate_biases))
            c = tf.sigmoid(forget_gate) * c + tf.sigmoid(in_gate) * tf.tanh(candidate)
            h = tf.sigmoid(out_gate) * tf.tanh(c)
            return (i + 1, scores(h), tf1.nn.rnn_cell.LSTMStateTuple(c, h),
                    drawn.write(i, next_id[0]))

        # A long sample is drawn in pieces, each starting from the state the last one ended
        # in (by default the prime's), so that it can be printed as it comes and stopped
        # between pieces. The first draw's scores are those of the state's h.
        start_state = tf1.placeholder_with_default(
            tf.stack([prime_state.c, prime_state.h]), [2, 1, hidden_dim],
            name="sample_start_state")
        _, _, end_state, drawn = tf.while_loop(
            lambda i, *rest: i < sample_length, draw_one,
            [tf.constant(0), scores(start_state[1]),
             tf1.nn.rnn_cell.LSTMStateTuple(start_state[0], start_state[1]),
             tf.TensorArray(tf.int32, size=sample_length)])
        sample_ids = tf.identity(drawn.stack(), name="sample_ids")
        end_state = tf.stack([end_state.c, end_state.h], name="sample_end_state")

        if optimizer == "adam":
            step = tf1.train.AdamOptimizer(learning_rate)
        else:
            step = tf1.train.GradientDescentOptimizer(learning_rate)
        if clip:
            gradients, variables = zip(*step.compute_gradients(loss))
            gradients, _ = tf.clip_by_global_norm(gradients, clip)
            training = step.apply_gradients(zip(gradients, variables), name="training")
        else:
            training = step.minimize(loss, name="training")
        init = tf1.global_variables_initializer()
        # Old checkpoints are removed by save_checkpoint, once a newer one is complete.
        saver = tf1.train.Saver(max_to_keep=None)
    graph.finalize()
    return Model(graph=graph, x=x, y=y, x_ids=x_ids, y_ids=y_ids, init_state=init_state,
                 final_state=final_state, logits=logits, probabilities=probabilities,
                 loss=loss, training=training, init=init, saver=saver, val_ids=val_ids,
                 val_init_state=val_init_state, val_final_state=val_final_state,
                 val_loss_sum=val_loss_sum, sample_prime=sample_prime,
                 sample_length=sample_length, temperature=temperature, use_argmax=use_argmax,
                 sample_ids=sample_ids, sample_start_state=start_state,
                 sample_end_state=end_state, vocab_size=vocab_size, hidden_dim=hidden_dim,
                 batch_size=batch_size)


def zero_state(model):
    return np.zeros((2, model.batch_size, model.hidden_dim), dtype=np.float32)


def sample(session, model, length, rng, temperature=1.0, prime_ids=(), argmax=False,
           sampler="graph"):
    """Draw `length` character ids after the prime (by default one random character), read
    from a zero state; each drawn character is fed back as the next input.

    The "graph" sampler does it inside the graph, a session.run per SAMPLE_PIECE characters;
    the "feed" sampler is the original's, one session.run per character. They draw from the
    same distribution.
    """
    return [i for piece in sample_pieces(session, model, length, rng, temperature, prime_ids,
                                         argmax, sampler)
            for i in piece]


def sample_pieces(session, model, length, rng, temperature=1.0, prime_ids=(), argmax=False,
                  sampler="graph"):
    """sample(), as it is drawn: lists of at most SAMPLE_PIECE ids that add up to `length`."""
    start = list(prime_ids) or [int(rng.integers(model.vocab_size))]
    if sampler == "feed":
        yield from sample_by_feeding(session, model, length, rng, temperature, start, argmax)
        return
    # The first piece reads the prime; each later one starts from the state the last left.
    fed = {model.sample_prime: start, model.temperature: temperature,
           model.use_argmax: argmax}
    for done in range(0, length, SAMPLE_PIECE):
        fed[model.sample_length] = min(SAMPLE_PIECE, length - done)
        drawn, fed[model.sample_start_state] = session.run(
            [model.sample_ids, model.sample_end_state], fed)
        if np.any(drawn < 0) or np.any(drawn >= model.vocab_size):
            raise Diverged("network's output", "not finite", None)
        yield drawn.tolist()


def sample_by_feeding(session, model, length, rng, temperature, start, argmax):
    # The training graph reads batch_size streams; all of them get the same characters here
    # and the first is read.
    state = zero_state(model)
    feed, piece, left = start, [], length
    while True:
        inputs = np.repeat(np.asarray(feed)[:, np.newaxis], model.batch_size, axis=1)
        logits, state = session.run([model.logits, model.final_state],
                                    {model.x_ids: inputs, model.init_state: state})
        last = logits[(len(feed) - 1) * model.batch_size]
        if not np.all(np.isfinite(last)):
            raise Diverged("network's output", "not finite", None)
        if len(piece) == SAMPLE_PIECE or not left:
            yield piece
            piece = []
        if not left:
            return
        if argmax:
            char_id = int(np.argmax(last))
        else:
            char_id = int(rng.choice(model.vocab_size,
                                     p=aux_funcs.char_distribution(last, temperature)))
        piece.append(char_id)
        left -= 1
        feed = [char_id]


@dataclass
class Progress:
    """Where training stands: everything a resumed run needs that the graph does not hold."""
    iteration: int          # iterations done
    position: int           # where in the training text the next window starts
    state: np.ndarray       # the LSTM state carried into that window
    loss_hist: list         # the loss of each iteration, after the starting value
    smooth_loss_hist: list  # the smoothed loss, likewise
    val_points: list        # (iterations done, validation loss) at each sample point
    best: list              # [iterations done, validation loss] of the best so far, or None


def fresh_progress(model):
    start = -np.log(1.0 / model.vocab_size)
    return Progress(0, 0, zero_state(model), [start], [start], [], None)


class StopRequest:
    """Turn the first SIGINT or SIGTERM into a request to stop at the next good place.

    The training loop asks `signum` after each step, saves and stops; the sampler asks after
    each piece. A second signal interrupts at once (the last complete checkpoint is still
    there: a save cut short removes what it wrote).
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


def held_out_tracks(val_ids):
    """The held-out ids (the first VAL_MAX_CHARS of them) as side-by-side tracks of at least
    VAL_TRACK_LENGTH characters.

    Reading a few tracks at once costs little more than reading one, and each track is long
    enough that starting it from a zero state hardly changes its mean loss.
    """
    val_ids = val_ids[:VAL_MAX_CHARS]
    count = max(1, min(VAL_MAX_TRACKS, len(val_ids) // VAL_TRACK_LENGTH))
    return aux_funcs.tracks(val_ids, count)


def evaluate(session, model, val_tracks):
    """Mean loss, in nats per character, over held-out tracks (time-major, one per column),
    each read from a zero state with its state carried from window to window."""
    steps, count = val_tracks.shape
    state = np.zeros((2, count, model.hidden_dim), dtype=np.float32)
    total = 0.0
    for start in range(0, steps - 1, VAL_WINDOW):
        loss_sum, state = session.run(
            [model.val_loss_sum, model.val_final_state],
            {model.val_ids: val_tracks[start:start + VAL_WINDOW + 1],
             model.val_init_state: state})
        total += float(loss_sum)
    return total / ((steps - 1) * count)


def report_line(it, width, smooth_loss, epoch, val_loss, rate, chars_per_second, elapsed,
                left):
    """The line printed at each sample point; it starts as the original's does."""
    fields = [f"iter {it:>{width}}, loss: {smooth_loss:.4f}", f"epoch {epoch:5.2f}"]
    if val_loss is not None:
        fields.append(f"val {val_loss:.4f} ({val_loss / math.log(2):.3f} bits/char)")
    fields.append(f"{rate:5.1f} it/s {chars_per_second:>7,.0f} chars/s")
    fields.append(f"{format_clock(elapsed)} elapsed, {format_clock(left)} left")
    return " | ".join(fields)


class ProgressBar:
    """A bar for the iterations to the next sample point, redrawn in place on a terminal;
    nothing at all when the output goes to a file or a pipe."""

    def __init__(self, stream):
        self.stream = stream
        self.live = stream.isatty()
        self.drawn_at = 0.0

    def update(self, done, total):
        now = time.monotonic()
        if not self.live or now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        filled = round(30 * done / total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                          "to the next sample")
        self.stream.flush()

    def clear(self):
        if self.live and self.drawn_at:
            self.stream.write("\r\x1b[K")
            self.drawn_at = 0.0


class Summaries:
    """TensorBoard scalars and the graph through tf.compat.v1.summary.FileWriter, when a
    --logdir is given; otherwise it does nothing."""

    def __init__(self, tf, logdir, graph):
        self.tf = tf
        self.writer = None
        if logdir:
            with graph.as_default():  # FileWriter refuses to start in eager mode
                self.writer = tf.compat.v1.summary.FileWriter(logdir, graph)

    def scalars(self, step, **values):
        if self.writer:
            summary = self.tf.compat.v1.Summary(value=[
                self.tf.compat.v1.Summary.Value(tag=tag, simple_value=value)
                for tag, value in values.items()])
            self.writer.add_summary(summary, step)

    def flush(self):
        if self.writer:
            self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()


def train(session, model, data, progress, args, vocab, rng, checkpoint, stop, summaries):
    """Run the training loop from `progress` to args.iterations, or until `stop` is asked.

    At every sample point (and when stopping) it evaluates the held-out text, prints the
    report line and a sample, redraws the plot and history, and calls checkpoint(progress).
    Returns the seconds spent evaluating.
    """
    ids, val_tracks = data
    it_per_epoch = len(ids) / (args.seq_length * args.batch_size)
    text_name = text_name_of(args.text_file)
    width = len(str(args.iterations - 1))
    prime_ids = [vocab.index(ch) for ch in args.prime]
    batches = aux_funcs.batch_generator(ids, args.seq_length, args.batch_size,
                                        progress.position)
    bar = ProgressBar(sys.stdout)
    start, eval_seconds = time.perf_counter(), 0.0
    first_iteration, interval_start, interval_steps = progress.iteration, start, 0
    while progress.iteration < args.iterations:
        it = progress.iteration
        position, window = next(batches)
        if position == 0:
            progress.state = zero_state(model)
        loss, progress.state, _ = session.run(
            [model.loss, model.final_state, model.training],
            {model.x_ids: window[:-1], model.y_ids: window[1:],
             model.init_state: progress.state})
        if not math.isfinite(loss):
            bar.clear()
            raise Diverged("loss", loss, it)
        smooth_loss = progress.smooth_loss_hist[-1] * 0.999 + loss * 0.001
        progress.loss_hist.append(float(loss))
        progress.smooth_loss_hist.append(smooth_loss)
        progress.iteration = done = it + 1
        progress.position = position + args.seq_length
        summaries.scalars(done, loss=loss, smoothed_loss=smooth_loss)
        interval_steps += 1
        if it % args.sample_every and done < args.iterations and not stop.signum:
            bar.update(it % args.sample_every, args.sample_every)
            continue

        now = time.perf_counter()
        rate = interval_steps / (now - interval_start)
        val_loss = None
        if val_tracks is not None:
            val_loss = evaluate(session, model, val_tracks)
            if not math.isfinite(val_loss):
                bar.clear()
                raise Diverged("validation loss", val_loss, it)
            eval_seconds += time.perf_counter() - now
            progress.val_points.append((done, val_loss))
            if progress.best is None or val_loss < progress.best[1]:
                progress.best = [done, val_loss]
            summaries.scalars(done, val_loss=val_loss)
        elapsed = time.perf_counter() - start
        left = (args.iterations - done) * elapsed / (done - first_iteration)
        bar.clear()
        print(report_line(it, width, smooth_loss, done / it_per_epoch, val_loss, rate,
                          rate * args.seq_length * args.batch_size, elapsed, left))
        drawn = sample(session, model, args.sample_length, rng, args.temperature, prime_ids,
                       args.argmax, args.sampler)
        text = args.prime + "".join(vocab[i] for i in drawn)
        print(f"{RULE}\n{text}\n{RULE}", flush=True)
        aux_funcs.plot(progress.loss_hist, progress.smooth_loss_hist, it, it_per_epoch,
                       text_name, args.plots_dir, progress.val_points)
        aux_funcs.write_history(os.path.join(args.plots_dir, f"{text_name}_history.csv"),
                                progress.loss_hist, progress.smooth_loss_hist,
                                progress.val_points)
        checkpoint(progress)
        summaries.flush()
        if stop.signum:
            break
        interval_start, interval_steps = time.perf_counter(), 0
    return eval_seconds


def checkpoint_name(iteration):
    return f"ckpt-{iteration}"


def checkpoint_prefix(save_dir, iteration):
    return os.path.join(save_dir, checkpoint_name(iteration))


def save_checkpoint(session, model, save_dir, progress, info, rng):
    """Save weights, optimizer slots and `progress` as checkpoint ckpt-<iteration>.

    All or nothing: the new checkpoint is listed in <save_dir>/checkpoint only once all its
    files are complete, and older ones are removed only after that.
    """
    name = checkpoint_name(progress.iteration)
    prefix = checkpoint_prefix(save_dir, progress.iteration)
    earlier = [n for n in listed_checkpoints(save_dir) if n != name]
    kept = (earlier + [name])[-KEEP_CHECKPOINTS:]
    best = progress.best and checkpoint_name(progress.best[0])
    if best in earlier and best not in kept:
        kept.insert(0, best)
    try:
        model.saver.save(session, prefix, write_state=False)
        info = dict(info, iteration=progress.iteration, position=progress.position,
                    rng_state=rng.bit_generator.state, best=progress.best)
        aux_funcs.save_run_state(prefix, info, {
            "state": progress.state,
            "loss_hist": np.array(progress.loss_hist, dtype=np.float64),
            "smooth_loss_hist": np.array(progress.smooth_loss_hist, dtype=np.float64),
            "val_points": np.array(progress.val_points, dtype=np.float64).reshape(-1, 2)})
        aux_funcs.write_checkpoint_list(save_dir, kept)
    except BaseException as exc:
        # Whatever stopped it (a full disk, a permission, TensorFlow's writer, a second
        # Ctrl-C), a checkpoint the list does not name may be incomplete: remove what there
        # is of it. One the list names was complete before the list was written.
        if name not in aux_funcs.read_checkpoint_list(save_dir):
            remove_checkpoint_files(save_dir, name)
        if not isinstance(exc, Exception):
            raise
        raise UserError(f"could not save checkpoint {prefix} ({type(exc).__name__}: "
                        f"{error_summary(exc)}); the previous checkpoint is intact") from None
    for old in set(earlier) - set(kept):
        remove_checkpoint_files(save_dir, old)


def remove_checkpoint_files(save_dir, name):
    for entry in os.listdir(save_dir):
        if entry.startswith(name + "."):
            os.unlink(os.path.join(save_dir, entry))


def listed_checkpoints(save_dir):
    """The checkpoint names listed in save_dir, or one line of error about the folder."""
    refuse_a_file(save_dir, "--save-dir")
    try:
        return aux_funcs.read_checkpoint_list(save_dir)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a checkpoint list"
        raise UserError(f"--save-dir {save_dir}: cannot read its checkpoint list "
                        f"({reason})") from None


def latest_checkpoint(save_dir, best=False):
    """The newest complete checkpoint in save_dir, or with `best` the one with the lowest
    validation loss, as a Checkpoint."""
    names = listed_checkpoints(save_dir)
    if not names:
        raise UserError(f"no checkpoint in {save_dir}; train first, or give the --save-dir "
                        "of a run")
    latest = read_checkpoint(os.path.join(save_dir, names[-1]))
    if not best:
        return latest
    if latest.info["best"] is None:
        raise UserError(f"{save_dir} has no best checkpoint: its run held no text out "
                        "(--val-fraction 0)")
    return read_checkpoint(checkpoint_prefix(save_dir, latest.info["best"][0]))


def read_checkpoint(prefix):
    """The checkpoint at `prefix`, its side files read and checked, as a Checkpoint."""
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
        raise UserError(f"checkpoint {prefix} cannot be restored "
                        f"({error_summary(exc)})") from None


def error_summary(exc):
    """The part of an exception's message that says what went wrong. TensorFlow's errors wrap
    it in the trace of where the failing operation was built, and put the file before it."""
    noise = ("Graph execution error", "Detected at node", "File ", "Node:", "[[", "Hint:")
    lines = [line.strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    return (useful or [type(exc).__name__])[0].split("; ")[-1]


def adopt_checkpoint_options(args, saved, names, fixed):
    """Take the options `names` from the checkpoint where the user did not type them; refuse
    a typed one of `fixed` that differs from the checkpoint's."""
    stored, prefix = saved.info["options"], saved.prefix
    for name in fixed:
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
    if not text:
        raise UserError(f"{path}: is empty; give a text to train on")
    nul = text.find("\0")
    if nul >= 0:
        raise UserError(f"{path}: looks like a binary file (a NUL character at position "
                        f"{nul:,}); give a plain text file")
    return text, char_to_idx


def refuse_a_file(path, flag):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a folder")


def make_writable_dir(path, flag):
    refuse_a_file(path, flag)
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


def format_clock(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


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
    saved = latest_checkpoint(save_dir, args.best)
    adopt_checkpoint_options(args, saved, GRAPH_OPTIONS, GRAPH_OPTIONS)
    vocab = list(saved.info["vocabulary"])
    check_prime(args.prime, vocab)
    xla = use_xla(args, sampling=True)
    tf = import_tensorflow(xla, args.bf16)
    # One stream is enough to sample, whatever batch the checkpoint was trained with.
    model = build_graph(tf, len(vocab), args.hidden_dim, 1, args.learning_rate,
                        args.optimizer, args.seed, args.clip)
    rng = np.random.default_rng(args.seed)
    with tf.compat.v1.Session(graph=model.graph,
                              config=session_config(tf, xla, args.bf16)) as session, \
            StopRequest() as stop:
        restore_checkpoint(session, model, saved.prefix)
        sys.stdout.write(args.prime)
        written = 0
        for piece in sample_pieces(session, model, args.sample_length, rng, args.temperature,
                                   [vocab.index(ch) for ch in args.prime], args.argmax,
                                   args.sampler):
            sys.stdout.write("".join(vocab[i] for i in piece))
            sys.stdout.flush()
            written += len(piece)
            if stop.signum:
                break
    sys.stdout.write("\n")
    if stop.signum:
        print(f"tf-lstm-char.py: stopped by {signal.Signals(stop.signum).name} after "
              f"{written} of {args.sample_length} characters", file=sys.stderr)
        return 128 + stop.signum
    return 0


def check_training_inputs(args, resumed):
    """Everything that can be wrong before training, checked before TensorFlow loads.

    Returns (text, char_to_idx, vocab, text_sha256).
    """
    text, char_to_idx = read_text(args.text_file, args.encoding)
    held_out = len(aux_funcs.split_train_val(text, args.val_fraction)[1])
    if len(text) - held_out < args.seq_length + 1:
        raise UserError(f"{args.text_file}: {len(text) - held_out} characters to train on"
                        + (f" (after holding out {held_out})" if held_out else "")
                        + f" is too short for --seq-length {args.seq_length}; it needs at "
                        f"least {args.seq_length + 1}")
    track = (len(text) - held_out) // args.batch_size
    if track < args.seq_length + 1:
        raise UserError(f"--batch-size {args.batch_size} cuts the {len(text) - held_out} "
                        f"characters to train on into tracks of {track}, shorter than one "
                        f"window of --seq-length {args.seq_length} + 1; use a smaller batch")
    if args.val_fraction and held_out < 2:
        raise UserError(f"{args.text_file}: --val-fraction {args.val_fraction} holds out "
                        f"{held_out} characters, too few to evaluate; give a larger one, or 0")
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
    elif listed_checkpoints(args.save_dir):
        raise UserError(f"{args.save_dir} holds a checkpoint already; add --resume to go on "
                        "training it, or give another --save-dir")
    check_prime(args.prime, vocab)
    make_writable_dir(args.plots_dir, "--plots-dir")
    make_writable_dir(args.save_dir, "--save-dir")
    if args.logdir:
        make_writable_dir(args.logdir, "--logdir")
    return text, char_to_idx, vocab, text_sha256


def run_training(args):
    resumed = None
    if args.resume:
        resumed = latest_checkpoint(args.save_dir or default_save_dir(args))
        adopt_checkpoint_options(args, resumed, STORED_OPTIONS, FIXED_OPTIONS)
    args.save_dir = args.save_dir or default_save_dir(args)
    args.text_file = args.text_file or DEFAULT_TEXT
    text, char_to_idx, vocab, text_sha256 = check_training_inputs(args, resumed)
    train_ids, val_ids = aux_funcs.split_train_val(aux_funcs.text_to_ids(text, char_to_idx),
                                                   args.val_fraction)
    val_tracks = held_out_tracks(val_ids) if len(val_ids) else None
    print(f"{display_path(args.text_file)}: {len(text):,} characters, {len(vocab)} distinct; "
          f"training on {len(train_ids):,}, holding out {len(val_ids):,}"
          + (f" (evaluating the first {VAL_MAX_CHARS:,})" if len(val_ids) > VAL_MAX_CHARS
             else ""), flush=True)

    xla = use_xla(args)
    tf = import_tensorflow(xla, args.bf16)
    if args.seed is not None:
        tf.config.experimental.enable_op_determinism()
    model = build_graph(tf, len(vocab), args.hidden_dim, args.batch_size,
                        args.learning_rate, args.optimizer, args.seed, args.clip)
    rng = np.random.default_rng(args.seed)
    options = {name: getattr(args, name) for name in STORED_OPTIONS}
    options["text_file"] = os.path.abspath(args.text_file)
    run_info = {"format": 1, "vocabulary": "".join(vocab), "options": options,
                "text_sha256": text_sha256}
    summaries = Summaries(tf, args.logdir, model.graph)
    start = time.perf_counter()
    config = session_config(tf, xla, args.bf16)
    with tf.compat.v1.Session(graph=model.graph, config=config) as session, \
            StopRequest() as stop:
        if resumed:
            restore_checkpoint(session, model, resumed.prefix)
            progress = Progress(resumed.info["iteration"], resumed.info["position"],
                                resumed.arrays["state"], resumed.arrays["loss_hist"].tolist(),
                                resumed.arrays["smooth_loss_hist"].tolist(),
                                [tuple(p) for p in resumed.arrays["val_points"].tolist()],
                                resumed.info["best"])
            rng.bit_generator.state = resumed.info["rng_state"]
            print(f"resuming {display_path(resumed.prefix)} at iteration "
                  f"{progress.iteration}", flush=True)
        else:
            session.run(model.init)
            progress = fresh_progress(model)
        done_before = progress.iteration
        try:
            eval_seconds = train(
                session, model, (train_ids, val_tracks), progress, args, vocab, rng,
                lambda p: save_checkpoint(session, model, args.save_dir, p, run_info, rng),
                stop, summaries)
        finally:
            summaries.close()
    elapsed = time.perf_counter() - start
    done = progress.iteration - done_before
    print(f"trained {done} iterations in {format_duration(elapsed)} "
          f"({done / elapsed:.2f} iterations/s), "
          f"final smoothed loss {progress.smooth_loss_hist[-1]:.4f}")
    if progress.val_points:
        val_loss = progress.val_points[-1][1]
        print(f"validation loss {val_loss:.4f} nats, {val_loss / math.log(2):.3f} bits per "
              f"character; evaluating took {eval_seconds:.1f}s "
              f"({100 * eval_seconds / elapsed:.1f}% of the time)")
    plots = os.path.join(args.plots_dir, text_name_of(args.text_file))
    print(f"loss plot: {plots}_loss.png, history: {plots}_history.csv")
    print(f"checkpoint: {checkpoint_prefix(args.save_dir, progress.iteration)}"
          + (f", best: {checkpoint_prefix(args.save_dir, progress.best[0])}"
             if progress.best else ""), flush=True)
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
