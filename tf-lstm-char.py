#!/usr/bin/env python3
"""A character-level LSTM text generator, written the TensorFlow 1.x way.

The post's program, step by step: hyperparameters, the text, a generator of one-hot windows,
a graph of placeholders (x, y, init_state) through an LSTMCell and dynamic_rnn to logits,
probabilities, a loss and an Adam step, built once and run in a tf.compat.v1 Session. The
loop trains on consecutive windows, feeds each window's final LSTM state back as the next
one's init_state, and every sample_every iterations prints `iter N, loss: X` and a sample
drawn one character at a time by sample(), and redraws the loss plot. Below the post's part,
the program adds what it needs to be safe and quick: held-out evaluation, a sampler inside
the graph, checkpoints, signals, the console and TensorFlow's quiet start.

Usage:
    python tf-lstm-char.py                          # train on data/shakespeare.txt
    python tf-lstm-char.py path/to/text.txt         # or on any UTF-8 text
    python tf-lstm-char.py --iterations 501 --hidden-dim 128
    python tf-lstm-char.py --resume                 # go on after Ctrl-C, from checkpoints/
    python tf-lstm-char.py --sample --prime "ROSALIND" --temperature 0.7
    python tf-lstm-char.py --help                   # every option

Results on data/shakespeare.txt, the collected works (5,057,362 characters, 84 distinct; the
last 10% held out), on a 2-core x86_64 CPU with TensorFlow 2.21, 2026-11-28 (README.md has
more); training (smoothed) and held-out losses in bits per character:

    | options                                              | iters | training | held out |   time |
    |------------------------------------------------------|------:|---------:|---------:|-------:|
    | the defaults                                         |  4001 |    2.429 |    2.746 | 4m 11s |
    | --batch-size 32 --learning-rate 2e-3 --clip 5 --bf16 |  4201 |    2.022 |    2.075 | 9m 43s |
    | the same, longer                                     | 12801 |    1.670 |    2.057 |    30m |
    | the same with --num-layers 2                         |  5101 |    1.815 |    2.054 |    30m |

Two layers overtake one only after about half an hour on this text; on a text of half a
megabyte, --num-layers 2 --dropout 0.3 scored 0.19 bits per character better in ten minutes.

Hyperparameters:
    seq_length     characters in one training window; gradients flow back this far
    hidden_dim     size of the LSTM's cell state c and output h, in each layer
    num_layers     LSTM layers stacked, each reading the outputs of the one below (1 in the post)
    dropout        probability of dropping each layer's outputs while training (0 in the post)
    batch_size     tracks of the text trained side by side (the original trains on one)
    learning_rate  step size of the optimizer (Adam, or plain gradient descent)
    iterations     training windows processed; one epoch is len(text) / seq_length of them
    sample_every   iterations between reports: loss line, sample, plot and checkpoint
    sample_length  characters drawn for each sample
    val_fraction   share of the text, at its end, held out to measure generalisation
    clip           largest global norm of the gradients (none in the original)
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
from dataclasses import dataclass, field, fields, replace

import numpy as np

import aux_funcs
from aux_funcs import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "data", "shakespeare.txt")
RULE = "-" * 72

# The post ---------------------------------------------------------------------------------

# What an option is to a checkpoint, declared once beside its default. MODEL options shape
# the weights: a checkpoint restores only into a graph built with the same ones, so --resume
# refuses others and --sample takes them from it. The SPLIT decides which text is trained on,
# so --resume keeps it. RUN options are stored, and --resume takes them unless typed again
# (--dropout is one: it adds to the graph but no weights).
# The others belong to one command. A checkpoint written before an option existed gets the
# option's default.
MODEL, SPLIT, RUN = "model", "split", "run"


def option(default, role=None):
    return field(default=default, metadata={"role": role})


@dataclass(frozen=True)
class Options:
    """The hyperparameters and the rest of the options: one value per command, made once
    from the flags and a checkpoint's stored options (resolve_options), never changed."""
    text_file: str = option(DEFAULT_TEXT, RUN)
    encoding: str = option("utf-8", RUN)
    val_fraction: float = option(0.1, SPLIT)
    hidden_dim: int = option(500, MODEL)
    num_layers: int = option(1, MODEL)
    dropout: float = option(0.0, RUN)
    iterations: int = option(4001, RUN)
    seq_length: int = option(100, RUN)
    batch_size: int = option(1, MODEL)
    learning_rate: float = option(1e-2, RUN)
    optimizer: str = option("adam", MODEL)
    clip: float = option(None, RUN)
    sample: bool = option(False)
    sample_every: int = option(100, RUN)
    sample_length: int = option(600, RUN)
    temperature: float = option(1.0, RUN)
    prime: str = option("", RUN)
    argmax: bool = option(False, RUN)
    sampler: str = option("graph", RUN)
    best: bool = option(False)
    seed: int = option(None, RUN)
    xla: str = option("auto", RUN)
    bf16: bool = option(False, RUN)
    plots_dir: str = option("plots", RUN)
    save_dir: str = option(None)
    resume: bool = option(False)
    logdir: str = option(None, RUN)


def parse_args(argv=None):
    """The hyperparameters from the command line: {name: value} of the options typed, each
    checked. What is not typed comes from a checkpoint or the defaults (resolve_options)."""
    parser = build_parser()
    unset = object()
    typed = argparse.Namespace(**{f.name: unset for f in fields(Options)})
    parser.parse_args(argv, typed)
    typed = {name: value for name, value in vars(typed).items() if value is not unset}
    if typed.get("best") and not typed.get("sample"):
        parser.error("--best goes with --sample")
    if typed.get("sample") and typed.get("resume"):
        parser.error("--sample and --resume do not go together: sample from a checkpoint, "
                     "or go on training it")
    return typed


def build_graph(tf, vocab_size, options):
    """The post's graph, built once; returns its handles as a Model.

    x and y are one-hot windows, time-major: [steps, batch_size, vocab_size]; init_state is
    the LSTM's c and h to start from, and final_state where the window left them, stacked
    alike so that the loop feeds one back as the other: [2, batch_size, hidden_dim] for the
    post's one layer, [num_layers, 2, batch_size, hidden_dim] for more. Every tensor keeps
    the post's name, so a saved graph can be reopened by name.
    """
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with building(graph):
        if options.seed is not None:
            tf1.set_random_seed(options.seed)
        batch_size, hidden_dim = options.batch_size, options.hidden_dim
        x = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="x")
        y = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="y")
        init_state = tf1.placeholder(tf.float32, state_shape(options), name="init_state")
        # The post's Glorot-uniform kernel, given explicitly so that --seed reaches it too.
        cell = tf1.nn.rnn_cell.LSTMCell(hidden_dim, state_is_tuple=True,
                                       initializer=tf1.glorot_uniform_initializer())
        rnn_tuple_state = tf1.nn.rnn_cell.LSTMStateTuple(init_state[0], init_state[1])
        keep_prob = None
        if options.num_layers > 1 or options.dropout > 0:
            cell, rnn_tuple_state, keep_prob = deeper_cell(tf, cell, init_state, options)
        out_w = tf1.get_variable("out_w", shape=[hidden_dim, vocab_size])
        # Zero where the post's is random, so that the untrained network's loss is
        # log(vocab_size), the value loss_hist starts from.
        out_b = tf1.get_variable("out_b", shape=[vocab_size],
                                 initializer=tf1.zeros_initializer())
        h_states, current_state = tf1.nn.dynamic_rnn(cell, x, initial_state=rnn_tuple_state,
                                                     time_major=True,
                                                     parallel_iterations=steps_at_once(options))
        final_state = stack_state(tf, current_state, name="final_state")
        # One row per step and stream, row t * batch_size + b (the post's h_states[:, 0, :]
        # for any batch size).
        logits = tf.identity(tf.matmul(tf.reshape(h_states, [-1, hidden_dim]), out_w) + out_b,
                             name="logits")
        # 1 unless a sampler feeds another: below 1 bolder about likely characters.
        temperature = tf1.placeholder_with_default(1.0, [], name="temperature")
        probabilities = tf.nn.softmax(logits / temperature, name="probabilities")

        cross_entropy = tf1.nn.softmax_cross_entropy_with_logits_v2(
            labels=tf.reshape(y, [-1, vocab_size]), logits=logits)
        loss = tf.reduce_mean(cross_entropy, name="loss")
        transpose_kernel_once(tf, graph, cell, options)
        if options.optimizer == "adam":
            optimizer = tf1.train.AdamOptimizer(learning_rate=options.learning_rate)
        else:
            optimizer = tf1.train.GradientDescentOptimizer(learning_rate=options.learning_rate)
        if options.clip is None:
            training = optimizer.minimize(loss, name="training")
        else:
            training = clipped_minimize(tf, optimizer, loss, options.clip)
        init = tf1.global_variables_initializer()
    return Model(graph, x, y, init_state, cell, out_w, out_b, final_state, logits,
                 temperature, probabilities, loss, training, init, keep_prob)


Model = namedtuple("Model", "graph x y init_state cell out_w out_b final_state logits "
                            "temperature probabilities loss training init keep_prob")


def sample(session, model, length, rng, temperature=1.0, prime_ids=(), argmax=False):
    """The post's sample(): from a zero state and one random character (or the prime), run
    `probabilities` and the state one character at a time, draw the next character from
    them with numpy, and feed it back. Yields the ids drawn, as they are drawn."""
    _, batch_size, vocab_size = model.x.shape
    state = np.zeros(model.init_state.shape, dtype=np.float32)
    seed = list(prime_ids) or [int(rng.integers(vocab_size))]
    for _ in range(length):
        # Every stream of the batch reads the same characters; the first one is used.
        inputs = aux_funcs.encode(np.repeat([seed], batch_size, axis=0).T, vocab_size)
        char_probs, state = session.run([model.probabilities, model.final_state],
                                        {model.x: inputs, model.init_state: state,
                                         model.temperature: temperature})
        last = char_probs[-batch_size]
        if not np.all(np.isfinite(last)):
            raise Diverged("network's output", "not finite", None)
        pred = int(np.argmax(last)) if argmax else int(rng.choice(vocab_size, p=last))
        yield pred
        seed = [pred]


def train(session, model, batches, options, run):
    """The post's loop, from the iteration `run` stands at to options.iterations.

    At iterations 0, sample_every, 2 * sample_every, ... it reports before that iteration's
    step, as the post does: `iter N, loss: X` shows the network after N iterations (at 0 the
    untrained one, its loss log(vocab_size)). A last report closes the run.
    """
    progress = run.progress
    loss_hist, smooth_loss = progress.loss_hist, progress.smooth_loss_hist
    first = progress.iteration
    for it in range(first, options.iterations):
        # A resumed run was reported on where it stopped.
        if it % options.sample_every == 0 and (it == 0 or it > first):
            run.report(session)
        inputs, targets = next(batches)
        if batches.restarted:
            progress.state = np.zeros_like(progress.state)
        _loss, _, progress.state = session.run(
            [model.loss, model.training, model.final_state],
            {model.x: inputs, model.y: targets, model.init_state: progress.state,
             **dropout_feed(model, options)})
        loss_hist.append(float(_loss))
        smooth_loss.append(smooth_loss[-1] * 0.999 + loss_hist[-1] * 0.001)
        progress.iteration, progress.position = it + 1, batches.position
        if run.after_step():
            break
    run.report(session)


def main(argv=None):
    """Flags, text, batch generator, graph, Session, loop; or with --sample, a sample."""
    typed = parse_args(argv)
    # Samples are written as UTF-8 whatever the locale says, so any text can be piped.
    sys.stdout.reconfigure(encoding="utf-8")
    if typed.get("sample"):
        return sample_from_checkpoint(typed)
    resumed = checkpoint_to_resume(typed)
    options = resolve_options(typed, resumed, (MODEL, SPLIT, RUN))

    text, char_to_idx, idx_to_char, vocab_size = aux_funcs.load(options.text_file,
                                                                options.encoding)
    train_ids, val_ids = aux_funcs.split_train_val(aux_funcs.text_to_ids(text, char_to_idx),
                                                   options.val_fraction)
    run = Run(options, text, train_ids, val_ids, idx_to_char, resumed)

    batches = aux_funcs.BatchGenerator(train_ids, options.seq_length, vocab_size,
                                       options.batch_size, run.progress.position)
    tf = import_tensorflow(options)
    model = build_graph(tf, vocab_size, options)
    extras = add_extras(tf, model)
    config = session_config(tf, options)
    with out_of_memory_in_one_line(tf, options), \
            tf.compat.v1.Session(graph=model.graph, config=config) as session, \
            run.started(session, tf, model, extras):
        train(session, model, batches, options, run)
    return run.close()


# Beyond the post: layers and dropout ------------------------------------------------------

def state_shape(options):
    """The shape of init_state and final_state: each layer's c and h for each stream."""
    one_layer = [2, options.batch_size, options.hidden_dim]
    return one_layer if options.num_layers == 1 else [options.num_layers] + one_layer


def with_streams(state, batch_size):
    """The shape of a state stacked as the tensor `state` is, for batch_size streams."""
    shape = state.shape.as_list()
    shape[-2] = batch_size
    return shape


def deeper_cell(tf, first_layer, init_state, options):
    """The post's cell made deeper and regularised, as TensorFlow's PTB tutorial does it: a
    MultiRNNCell of num_layers LSTMCells, each wrapped in a DropoutWrapper on its output when
    options.dropout is above 0. Returns the cell, its state from init_state, and the keep
    probability, a placeholder that only the training step feeds (None without dropout), so
    that evaluation, the samplers and a graph reopened by name run without dropout."""
    tf1 = tf.compat.v1
    layers = [first_layer] + [
        tf1.nn.rnn_cell.LSTMCell(options.hidden_dim, state_is_tuple=True,
                                 initializer=tf1.glorot_uniform_initializer())
        for _ in range(options.num_layers - 1)]
    keep_prob = None
    if options.dropout > 0:
        keep_prob = tf1.placeholder_with_default(1.0, [], name="keep_prob")
        layers = [tf1.nn.rnn_cell.DropoutWrapper(layer, output_keep_prob=keep_prob)
                  for layer in layers]
    cell = layers[0] if options.num_layers == 1 else tf1.nn.rnn_cell.MultiRNNCell(layers)
    return cell, cell_state(tf, init_state), keep_prob


def cell_state(tf, stacked):
    """A state stacked as init_state is, as the cell takes it: one LSTMStateTuple a layer."""
    LSTMStateTuple = tf.compat.v1.nn.rnn_cell.LSTMStateTuple
    if stacked.shape.rank == 3:
        return LSTMStateTuple(stacked[0], stacked[1])
    return tuple(LSTMStateTuple(layer[0], layer[1]) for layer in tf.unstack(stacked))


def stack_state(tf, state, name=None):
    """The cell's state stacked as init_state is: [2, batch, hidden] for one layer,
    [layers, 2, batch, hidden] for more."""
    if isinstance(state, tuple) and not hasattr(state, "c"):
        return tf.stack([tf.stack([layer.c, layer.h]) for layer in state], name=name)
    return tf.stack([state.c, state.h], name=name)


def steps_at_once(options):
    """How many of the loop's steps dynamic_rnn may run at once: TensorFlow's 32, or one at a
    time where dropout is to repeat with --seed. Each layer's dropout draws its masks from one
    random generator; steps run side by side take their masks in whatever order they reach
    it, so the same seed gave other masks (and losses) from the second step on. One step at a
    time was 5-25% slower here (2 layers, batch 32)."""
    return 1 if options.dropout > 0 and options.seed is not None else 32


def dropout_feed(model, options):
    """What the training step feeds besides the post's x, y and init_state: the keep
    probability, where the graph has dropout."""
    return {} if model.keep_prob is None else {model.keep_prob: 1.0 - options.dropout}


def top_output(state):
    """The top layer's h in a cell's state: the output the logits are made from."""
    return state.h if hasattr(state, "h") else state[-1].h


# Beyond the post: held-out evaluation -----------------------------------------------------

# Held-out text is read as tracks side by side, each from a zero state: characters per track
# at least, tracks at most, and steps per session.run.
VAL_TRACK_LENGTH = 500
VAL_MAX_TRACKS = 64
VAL_WINDOW = 1000
# Each report scores the same first characters of the held-out text, so that its figures
# compare along the run; the end of a run scores all of it once. Sized so that evaluating
# takes under 10% of the default run on the 5 MB default text: about 0.4 s a report here.
VAL_SLICE_CHARS = 20_000

Evaluation = namedtuple("Evaluation", "ids init_state final_state loss_sum")


def add_evaluation(tf, model):
    """The post's cell and output layer on held-out text: integer ids, any number of tracks
    side by side, each window's first row only as input and its last only as target. It
    gives the summed loss, so windows of any length add up to a mean over the whole text."""
    tf1 = tf.compat.v1
    vocab_size = model.x.shape[2]
    ids = tf1.placeholder(tf.int32, [None, None], name="val_ids")
    init_state = tf1.placeholder(tf.float32, with_streams(model.init_state, None),
                                 name="val_init_state")
    outputs, last = tf1.nn.dynamic_rnn(
        model.cell, tf.one_hot(ids[:-1], vocab_size), initial_state=cell_state(tf, init_state),
        time_major=True, scope="val_rnn")
    loss_sum = tf.reduce_sum(
        tf1.nn.softmax_cross_entropy_with_logits_v2(
            labels=tf.one_hot(tf.reshape(ids[1:], [-1]), vocab_size),
            logits=output_layer(tf, model, outputs)),
        name="val_loss_sum")
    return Evaluation(ids, init_state, stack_state(tf, last, name="val_final_state"), loss_sum)


def output_layer(tf, model, lstm_outputs):
    """The post's logits, for LSTM outputs of any leading shape: one row per output."""
    hidden_dim = model.out_w.shape[0]
    return tf.matmul(tf.reshape(lstm_outputs, [-1, hidden_dim]), model.out_w) + model.out_b


def held_out_tracks(val_ids):
    """Held-out ids as side-by-side tracks of at least VAL_TRACK_LENGTH characters.

    Reading a few tracks at once costs little more than reading one, and each track is long
    enough that starting it from a zero state hardly changes its mean loss.
    """
    count = max(1, min(VAL_MAX_TRACKS, len(val_ids) // VAL_TRACK_LENGTH))
    return aux_funcs.tracks(val_ids, count)


def evaluate(session, evaluation, val_tracks):
    """Mean loss, in nats per character, over held-out tracks (time-major, one per column),
    each read from a zero state with its state carried from window to window."""
    steps, count = val_tracks.shape
    state = np.zeros(with_streams(evaluation.init_state, count), dtype=np.float32)
    total = 0.0
    for start in range(0, steps - 1, VAL_WINDOW):
        loss_sum, state = session.run(
            [evaluation.loss_sum, evaluation.final_state],
            {evaluation.ids: val_tracks[start:start + VAL_WINDOW + 1],
             evaluation.init_state: state})
        total += float(loss_sum)
    return total / ((steps - 1) * count)


# Beyond the post: the in-graph sampler ----------------------------------------------------

# Samples are drawn in pieces of this many characters, one session.run each (well under a
# tenth of a second here), so that a long sample shows as it comes and stops soon when asked.
SAMPLE_PIECE = 1000
# The sampler's loop is a chain of small operations, each waiting for the last: run by one
# thread they do not wait for hand-overs between threads. Measured here, its own one-thread
# pool of the session made it 10-25% faster (sessions get it from session_config).
SAMPLER_POOL = 1

Sampler = namedtuple("Sampler", "prime length argmax ids start_state end_state run_options")


def add_sampler(tf, model):
    """What sample() does, inside the graph: the prime is read from a zero state, then a
    tf.while_loop calls the post's cell once per character, drawing each next character with
    tf.random.categorical and feeding it back, so that a whole piece of a sample is one
    session.run. A piece starts from `start_state` (by default the prime's) and ends in
    `end_state`, where the next piece goes on."""
    tf1 = tf.compat.v1
    vocab_size = model.x.shape[2]
    prime = tf1.placeholder(tf.int32, [None], name="sample_prime")
    length = tf1.placeholder(tf.int32, [], name="sample_length")
    use_argmax = tf1.placeholder_with_default(False, [], name="argmax")
    _, prime_state = tf1.nn.dynamic_rnn(
        model.cell, tf.one_hot(prime[:, tf.newaxis], vocab_size),
        initial_state=model.cell.zero_state(1, tf.float32), time_major=True,
        scope="sample_rnn")
    start_state = tf1.placeholder_with_default(stack_state(tf, prime_state),
                                               with_streams(model.init_state, 1),
                                               name="sample_start_state")

    def draw_one(i, state, drawn):
        # The cell's output is its top layer's h, so the scores come from the state.
        scores = output_layer(tf, model, top_output(state)) / model.temperature
        next_id = tf1.where(use_argmax, tf.argmax(scores, axis=1, output_type=tf.int32),
                            tf.random.categorical(scores, 1, dtype=tf.int32)[:, 0])
        _, state = model.cell(tf.one_hot(next_id, vocab_size), state)
        return i + 1, state, drawn.write(i, next_id[0])

    _, end_state, drawn = tf.while_loop(
        lambda i, *rest: i < length, draw_one,
        [tf.constant(0), cell_state(tf, start_state), tf.TensorArray(tf.int32, size=length)])
    return Sampler(prime, length, use_argmax, tf.identity(drawn.stack(), name="sample_ids"),
                   start_state, stack_state(tf, end_state, name="sample_end_state"),
                   tf1.RunOptions(inter_op_thread_pool=SAMPLER_POOL))


def sample_in_graph(session, model, sampler, length, rng, temperature=1.0, prime_ids=(),
                    argmax=False):
    """sample(), drawn by the in-graph sampler a piece at a time: yields the ids drawn."""
    start = list(prime_ids) or [int(rng.integers(model.x.shape[2]))]
    fed = {sampler.prime: start, model.temperature: temperature, sampler.argmax: argmax}
    for done in range(0, length, SAMPLE_PIECE):
        fed[sampler.length] = min(SAMPLE_PIECE, length - done)
        drawn, fed[sampler.start_state] = session.run([sampler.ids, sampler.end_state], fed,
                                                      options=sampler.run_options)
        if np.any(drawn < 0) or np.any(drawn >= model.x.shape[2]):
            raise Diverged("network's output", "not finite", None)
        yield from drawn.tolist()


def draw(session, model, sampler, options, prime_ids, length, rng):
    """The ids of a sample that goes on from prime_ids, from the sampler options.sampler
    names: the post's sample(), or the in-graph one."""
    if options.sampler == "feed":
        return sample(session, model, length, rng, options.temperature, prime_ids,
                      options.argmax)
    return sample_in_graph(session, model, sampler, length, rng, options.temperature,
                           prime_ids, options.argmax)


# Beyond the post: everything added to the graph -------------------------------------------

Extras = namedtuple("Extras", "evaluation sampler saver")


def add_extras(tf, model):
    """Add held-out evaluation, the in-graph sampler and a Saver to the post's graph, then
    close the graph to changes."""
    with building(model.graph):
        # Old checkpoints are removed by save_checkpoint, once a newer one is complete.
        extras = Extras(add_evaluation(tf, model), add_sampler(tf, model),
                        tf.compat.v1.train.Saver(max_to_keep=None))
    model.graph.finalize()
    return extras


def clipped_minimize(tf, optimizer, loss, clip):
    """optimizer.minimize(loss), with the gradients scaled down to a global norm of at most
    `clip` first."""
    gradients, variables = zip(*optimizer.compute_gradients(loss))
    gradients, _ = tf.clip_by_global_norm(gradients, clip)
    return optimizer.apply_gradients(zip(gradients, variables), name="training")


# Beyond the post: checkpoints, resume and --sample ----------------------------------------

KEEP_CHECKPOINTS = 5  # the newest ones, and the best by validation loss; others are removed


class Diverged(UserError):
    """The loss or the weights stopped being finite numbers."""

    def __init__(self, what, value, it):
        at = "" if it is None else f" at iteration {it}"
        super().__init__(f"the {what} became {value}{at}: training diverged, so this state was "
                         "not saved and the last checkpoint is kept; try a lower "
                         "--learning-rate")


@dataclass
class Progress:
    """Where training stands: everything a resumed run needs that the graph does not hold."""
    iteration: int          # iterations done
    position: int           # where in the training text the next window starts
    state: np.ndarray       # the LSTM state carried into that window
    loss_hist: list         # the loss of each iteration, after the starting value
    smooth_loss_hist: list  # the smoothed loss, likewise
    val_points: list        # (iterations done, validation loss) at each report
    best: list              # [iterations done, validation loss] of the best so far, or None


# Where runs keep their folders when --save-dir is not given: <text name>, <text name>-2, ...
RUNS = "checkpoints"


def run_to_read(typed, best=False):
    """The checkpoint that --resume or --sample reads: the latest (or best) one in --save-dir,
    or without it in the run of the text whose checkpoints were written last."""
    if typed.get("save_dir"):
        return aux_funcs.latest_checkpoint(typed["save_dir"], best)
    name = aux_funcs.text_name_of(typed.get("text_file", DEFAULT_TEXT))
    folder = aux_funcs.latest_run_folder(RUNS, name)
    if folder is None:
        raise UserError(f"no run of {name} in {RUNS}/; train first, or give the --save-dir "
                        "of a run")
    return aux_funcs.latest_checkpoint(folder, best)


def checkpoint_to_resume(typed):
    return run_to_read(typed) if typed.get("resume") else None


def resolve_options(typed, saved, roles):
    """The one Options of a command: the options typed; for the others, a checkpoint's
    stored ones of the given roles; for the rest, the defaults. A typed MODEL or SPLIT option
    that differs from the checkpoint's is refused."""
    values = {"save_dir": os.path.dirname(saved.prefix)} if saved else {}
    stored = saved.info["options"] if saved else {}
    for option in fields(Options):
        role, name = option.metadata["role"], option.name
        if role not in roles or name not in stored:
            continue
        if role in (MODEL, SPLIT) and name in typed and typed[name] != stored[name]:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {typed[name]} does not match checkpoint {saved.prefix}, "
                            f"which has {stored[name]}; leave {flag} out to use it")
        values[name] = stored[name]
    return Options(**{**values, **typed})


def stored_options(options):
    """What a checkpoint keeps of the options: those with a role, the text by its full path."""
    kept = {f.name: getattr(options, f.name) for f in fields(Options) if f.metadata["role"]}
    return dict(kept, text_file=os.path.abspath(options.text_file))


def save_checkpoint(session, saver, save_dir, progress, info, rng):
    """Save weights, optimizer slots and `progress` as checkpoint ckpt-<iteration>.

    All or nothing: the new checkpoint is listed in <save_dir>/checkpoint only once all its
    files are complete, and older ones are removed only after that.
    """
    name = aux_funcs.checkpoint_name(progress.iteration)
    prefix = aux_funcs.checkpoint_prefix(save_dir, progress.iteration)
    earlier = [n for n in aux_funcs.listed_checkpoints(save_dir) if n != name]
    kept = (earlier + [name])[-KEEP_CHECKPOINTS:]
    best = progress.best and aux_funcs.checkpoint_name(progress.best[0])
    if best in earlier and best not in kept:
        kept.insert(0, best)
    try:
        # In the session's graph whatever the caller entered: outside any graph, the Saver
        # takes itself to be running eagerly and fails.
        with session.graph.as_default():
            saver.save(session, prefix, write_state=False)
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


def restore_checkpoint(session, saver, prefix):
    try:
        with session.graph.as_default():
            saver.restore(session, prefix)
    except Exception as exc:
        raise UserError(f"checkpoint {prefix} cannot be restored "
                        f"({error_summary(exc)})") from None


def sample_from_checkpoint(typed):
    """--sample: print text drawn from the latest (or best) checkpoint, and nothing else."""
    saved = run_to_read(typed, typed.get("best", False))
    if not typed.get("save_dir"):
        print(f"tf-lstm-char.py: sampling from {aux_funcs.display_path(saved.prefix)}, the "
              "latest run of its text", file=sys.stderr)
    options = resolve_options(typed, saved, (MODEL,))
    vocab = saved.info["vocabulary"]
    aux_funcs.check_prime(options.prime, vocab)
    tf = import_tensorflow(options, sampling=True)
    # One stream is enough to sample, whatever batch the checkpoint was trained with.
    model = build_graph(tf, len(vocab), replace(options, batch_size=1))
    extras = add_extras(tf, model)
    rng = np.random.default_rng(options.seed)
    written = 0
    with out_of_memory_in_one_line(tf, options), \
            tf.compat.v1.Session(graph=model.graph,
                                 config=session_config(tf, options, sampling=True)) as session, \
            aux_funcs.StopRequest() as stop:
        restore_checkpoint(session, extras.saver, saved.prefix)
        sys.stdout.write(options.prime)
        flushed = time.monotonic()
        for char_id in draw(session, model, extras.sampler, options,
                            [vocab.index(ch) for ch in options.prime], options.sample_length,
                            rng):
            sys.stdout.write(vocab[char_id])
            written += 1
            if stop.signum:
                break
            if time.monotonic() - flushed > 0.1:  # show the sample as it comes
                sys.stdout.flush()
                flushed = time.monotonic()
    sys.stdout.write("\n")
    if stop.signum:
        print(f"tf-lstm-char.py: stopped by {signal.Signals(stop.signum).name} after "
              f"{written} of {options.sample_length} characters", file=sys.stderr)
        return 128 + stop.signum
    return 0


# Beyond the post: a model too big for the machine ---------------------------------------

def weight_count(options, vocab_size):
    """The graph's trainable numbers: each layer's kernel and bias, out_w and out_b."""
    hidden = options.hidden_dim
    layers = sum((inputs + hidden) * 4 * hidden + 4 * hidden
                 for inputs in layer_inputs(options, vocab_size))
    return layers + hidden * vocab_size + vocab_size


def layer_inputs(options, vocab_size):
    """The width of each layer's input: the one-hot character, then the layer below's h."""
    return [vocab_size] + [options.hidden_dim] * (options.num_layers - 1)


def training_bytes(options, vocab_size):
    """About how much memory training the model takes, TensorFlow's own aside: seven copies of
    the weights (the weights, their gradient, Adam's two slots, and in the backward pass the
    kernel's gradient of one step, its running sum and the transposed kernel), one window's
    activations kept for the backward pass, and the held-out tracks scored side by side."""
    hidden = options.hidden_dim
    weights = weight_count(options, vocab_size)
    # Per step, stream and layer: the concatenated input (the layer's input and h), the gates
    # before and after their activations, c and h; per row of logits: scores, probabilities
    # and their gradients; doubled for the gradients of them all.
    rows = options.seq_length * options.batch_size
    per_step = sum(inputs + 11 * hidden for inputs in layer_inputs(options, vocab_size))
    window = 2 * rows * (per_step + 4 * vocab_size)
    evaluation = VAL_MAX_TRACKS * VAL_WINDOW * (options.num_layers * hidden + vocab_size)
    return 4 * (7 * weights + window + evaluation)


def check_memory(options, vocab_size):
    """Refuse, in one line, a model whose training needs more memory than is available."""
    needed, available = training_bytes(options, vocab_size), aux_funcs.available_memory()
    if available is not None and needed > available:
        layers = f"--num-layers {options.num_layers} " if options.num_layers > 1 else ""
        raise UserError(f"{layers}--hidden-dim {options.hidden_dim} --batch-size "
                        f"{options.batch_size} --seq-length {options.seq_length} needs about "
                        f"{needed / 2**30:,.1f} GiB to train (weights, Adam's slots, a "
                        "window's activations), more than the "
                        f"{available / 2**30:,.1f} GiB of memory available; lower "
                        f"{flags_to_lower(options)}")


def flags_to_lower(options):
    """The flags that make the model take less memory, --num-layers among them once it is
    above 1."""
    layers = "--num-layers, " if options.num_layers > 1 else ""
    return f"{layers}--hidden-dim, --batch-size or --seq-length"


@contextlib.contextmanager
def out_of_memory_in_one_line(tf, options):
    """Where TensorFlow runs out of memory all the same, say so in one line."""
    try:
        yield
    except tf.errors.ResourceExhaustedError as exc:
        raise UserError(f"out of memory ({error_summary(exc)}); lower "
                        f"{flags_to_lower(options)}") from None


# Beyond the post: the run around the loop -------------------------------------------------

class Run:
    """What the program does around the post's loop: the checks before it, and at each
    report held-out evaluation, the sample, the plot and history, a checkpoint and
    TensorBoard; after each step the progress bar and stop requests; at the end the whole
    held-out text scored once and the closing lines."""

    def __init__(self, options, text, train_ids, val_ids, idx_to_char, resumed):
        """Check everything that can be wrong before TensorFlow loads, claim the run's folder
        and say where it writes."""
        self.options, self.resumed = options, resumed
        self.vocab = "".join(idx_to_char[i] for i in range(len(idx_to_char)))
        held_out = len(val_ids)
        aux_funcs.check_text_fits(options.text_file, train_ids, held_out, options.seq_length,
                                  options.batch_size, options.val_fraction)
        check_memory(options, len(self.vocab))
        text_sha256 = aux_funcs.sha256_of_file(options.text_file)
        if resumed:
            if (text_sha256 != resumed.info["text_sha256"]
                    or self.vocab != resumed.info["vocabulary"]):
                raise UserError(f"{options.text_file} is not the text checkpoint "
                                f"{resumed.prefix} was trained on "
                                f"({resumed.info['options']['text_file']})")
            if resumed.info["iteration"] >= options.iterations:
                raise UserError(f"checkpoint {resumed.prefix} has done "
                                f"{resumed.info['iteration']} iterations already; give a "
                                "larger --iterations to train on")
        elif options.save_dir and aux_funcs.listed_checkpoints(options.save_dir):
            raise UserError(f"{options.save_dir} holds a checkpoint already; add --resume to "
                            "go on training it, or give another --save-dir")
        aux_funcs.check_prime(options.prime, self.vocab)
        aux_funcs.make_writable_dir(options.plots_dir, "--plots-dir")
        if options.save_dir:
            aux_funcs.make_writable_dir(options.save_dir, "--save-dir")
        if options.logdir:
            aux_funcs.make_writable_dir(options.logdir, "--logdir")
        # Last, once nothing can be refused: a fresh run without --save-dir takes a folder of
        # its own, so that no earlier run is overwritten.
        self.save_dir = options.save_dir or aux_funcs.claim_run_folder(
            RUNS, aux_funcs.text_name_of(options.text_file))
        # The plot and history are named after the run's folder, so they are its own too.
        self.name = os.path.basename(os.path.normpath(self.save_dir))
        self.plot_path = aux_funcs.loss_plot_path(options.plots_dir, self.name)
        self.history_path = os.path.join(options.plots_dir, f"{self.name}_history.csv")

        self.info = {"format": aux_funcs.CHECKPOINT_FORMAT, "vocabulary": self.vocab,
                     "options": stored_options(options), "text_sha256": text_sha256}
        self.val_ids = val_ids
        # Whether reports score only the first part of the held-out text, and the end all of it.
        self.sliced = held_out > VAL_SLICE_CHARS
        self.val_slice = held_out_tracks(val_ids[:VAL_SLICE_CHARS]) if held_out else None
        self.val_label = f"val[:{VAL_SLICE_CHARS}]" if self.sliced else "val"
        self.prime_ids = [self.vocab.index(ch) for ch in options.prime]
        self.it_per_epoch = len(train_ids) / (options.seq_length * options.batch_size)
        self.rng = np.random.default_rng(options.seed)
        if resumed:
            arrays = resumed.arrays
            self.progress = Progress(
                resumed.info["iteration"], resumed.info["position"], arrays["state"],
                arrays["loss_hist"].tolist(), arrays["smooth_loss_hist"].tolist(),
                [tuple(point) for point in arrays["val_points"].tolist()],
                resumed.info["best"])
            self.rng.bit_generator.state = resumed.info["rng_state"]
        else:
            start = math.log(len(self.vocab))
            self.progress = Progress(0, 0, np.zeros(state_shape(options), np.float32),
                                     [start], [start], [], None)
        scored = (f" (the first {VAL_SLICE_CHARS:,} scored at each report, all at the end)"
                  if self.sliced else "")
        print(f"{aux_funcs.display_path(options.text_file)}: {len(text):,} characters, "
              f"{len(self.vocab)} distinct; training on {len(train_ids):,}, holding out "
              f"{held_out:,}{scored}")
        print(f"writing checkpoints to {self.save_dir}, the plot and history to "
              f"{self.plot_path} and {self.history_path}", flush=True)

    @contextlib.contextmanager
    def started(self, session, tf, model, extras):
        """The run inside the session: restored or initialised, with signals turned into
        stop requests and TensorBoard written to, while the block lasts; at its end, unless
        stopped, the whole held-out text scored once."""
        if self.resumed:
            restore_checkpoint(session, extras.saver, self.resumed.prefix)
            print(f"resuming {aux_funcs.display_path(self.resumed.prefix)} at iteration "
                  f"{self.progress.iteration}", flush=True)
        else:
            session.run(model.init)
        self.model, self.extras = model, extras
        self.bar = aux_funcs.ProgressBar(sys.stdout)
        self.first_iteration = self.last_report = self.progress.iteration
        self.started_at = self.last_report_at = time.perf_counter()
        self.eval_seconds, self.val_loss_all = 0.0, None
        self.summaries = Summaries(tf, self.options.logdir, model.graph)
        try:
            with aux_funcs.StopRequest() as self.stop:
                yield self
                if not self.sliced and self.progress.val_points:
                    self.val_loss_all = self.progress.val_points[-1][1]  # all of it already
                elif self.sliced and not self.stop.signum:
                    self.val_loss_all = self.evaluate(session, held_out_tracks(self.val_ids))
        finally:
            self.summaries.close()
            self.elapsed = time.perf_counter() - self.started_at

    def evaluate(self, session, val_tracks):
        """The mean loss on held-out tracks, timed; a loss that is not finite stops the run."""
        start = time.perf_counter()
        val_loss = evaluate(session, self.extras.evaluation, val_tracks)
        self.eval_seconds += time.perf_counter() - start
        if not math.isfinite(val_loss):
            self.bar.clear()
            raise Diverged("validation loss", val_loss, self.progress.iteration)
        return val_loss

    def report(self, session):
        """`iter N, loss: X` and more, a sample, the plot and history, and a checkpoint."""
        options, progress = self.options, self.progress
        done, now = progress.iteration, time.perf_counter()
        val_loss = None
        if self.val_slice is not None:
            val_loss = self.evaluate(session, self.val_slice)
            progress.val_points.append((done, val_loss))
            if progress.best is None or val_loss < progress.best[1]:
                progress.best = [done, val_loss]
            self.summaries.scalars(done, val_loss=val_loss)
        timing = {}
        if done > self.last_report:
            rate = (done - self.last_report) / (now - self.last_report_at)
            elapsed = now - self.started_at
            timing = dict(rate=rate,
                          chars_per_second=rate * options.seq_length * options.batch_size,
                          elapsed=elapsed, left=(options.iterations - done) * elapsed
                          / (done - self.first_iteration))
        self.bar.clear()
        print(aux_funcs.report_line(done, progress.smooth_loss_hist[-1],
                                    done / self.it_per_epoch, val_loss, self.val_label,
                                    **timing))
        drawn = draw(session, self.model, self.extras.sampler, options, self.prime_ids,
                     options.sample_length, self.rng)
        text = options.prime + "".join(self.vocab[i] for i in drawn)
        print(f"{RULE}\n{text}\n{RULE}", flush=True)
        aux_funcs.plot(progress.loss_hist, progress.smooth_loss_hist, done, self.it_per_epoch,
                       self.name, options.plots_dir, progress.val_points,
                       f"validation loss ({self.val_label}, held-out text)")
        aux_funcs.write_history(self.history_path, progress.loss_hist,
                                progress.smooth_loss_hist, progress.val_points)
        save_checkpoint(session, self.extras.saver, self.save_dir, progress, self.info,
                        self.rng)
        self.summaries.flush()
        self.last_report, self.last_report_at = done, time.perf_counter()

    def after_step(self):
        """Check the step's loss, log it, move the bar; True when asked to stop."""
        progress, every = self.progress, self.options.sample_every
        loss = progress.loss_hist[-1]
        if not math.isfinite(loss):
            self.bar.clear()
            raise Diverged("loss", loss, progress.iteration - 1)
        self.summaries.scalars(progress.iteration, loss=loss,
                               smoothed_loss=progress.smooth_loss_hist[-1])
        self.bar.update(progress.iteration % every, every)
        return self.stop.signum is not None

    def close(self):
        """The closing lines; the exit code."""
        progress = self.progress
        done = progress.iteration - self.first_iteration
        print(f"trained {done} iterations in {aux_funcs.format_duration(self.elapsed)} "
              f"({done / self.elapsed:.2f} iterations/s), "
              f"final smoothed loss {progress.smooth_loss_hist[-1]:.4f}")
        if progress.best:
            # Stopped early, the whole held-out text was not scored: only the reports' slice.
            whole = "" if self.val_loss_all is None else (
                f"validation loss on all {len(self.val_ids):,} held-out characters: "
                f"{self.val_loss_all:.4f} nats, {self.val_loss_all / math.log(2):.3f} bits "
                "per character; ")
            print(f"{whole}at the best report ({progress.best[0]}), {self.val_label} "
                  f"{progress.best[1]:.4f} nats; evaluating took {self.eval_seconds:.1f}s "
                  f"({100 * self.eval_seconds / self.elapsed:.1f}% of the time)")
        print(f"loss plot: {self.plot_path}, history: {self.history_path}")
        checkpoint = aux_funcs.checkpoint_prefix(self.save_dir, progress.iteration)
        best = progress.best and aux_funcs.checkpoint_prefix(self.save_dir, progress.best[0])
        print(f"checkpoint: {checkpoint}" + (f", best: {best}" if best else ""), flush=True)
        if self.stop.signum:
            name = signal.Signals(self.stop.signum).name
            if progress.iteration >= self.options.iterations:
                # It came while the whole held-out text was scored, after the last step.
                print(f"tf-lstm-char.py: {name} came after the last iteration; the run is "
                      "complete, there is nothing to resume", file=sys.stderr)
            else:
                print(f"tf-lstm-char.py: stopped by {name} at iteration {progress.iteration}; "
                      f"go on with: python tf-lstm-char.py --resume --save-dir "
                      f"{self.save_dir}", file=sys.stderr)
            return 128 + self.stop.signum
        return 0


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


# Beyond the post: the flags and their checks ----------------------------------------------

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


def dropout_probability(value):
    number = float(value)
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 up to (not including) 1, got {value}")
    return number


# argparse names the type function in its message ("invalid positive_int value"), so give
# each one a name a user can read.
positive_int.__name__ = "positive integer"
non_negative_int.__name__ = "non-negative integer"
positive_float.__name__ = "positive number"
fraction_up_to_half.__name__ = "fraction"
dropout_probability.__name__ = "probability"


def build_parser():
    """The flags, grouped, each with one line of help; their defaults are Options'."""
    parser = OneLineArgumentParser(
        prog="tf-lstm-char.py",
        description="Train a character-level LSTM on a text file, printing samples as it "
                    "learns and saving a plot of the loss and checkpoints; or, with "
                    "--sample, write text from a saved checkpoint.")

    data = parser.add_argument_group("data")
    # SUPPRESS: argparse would otherwise set a missing positional to its default, as if typed.
    data.add_argument("text_file", metavar="TEXT_FILE", nargs="?", default=argparse.SUPPRESS,
                      help="text to train on (default: data/shakespeare.txt, or with "
                           "--resume the checkpoint's text)")
    data.add_argument("--encoding", metavar="NAME",
                      help="encoding of TEXT_FILE (default: %(default)s)")
    data.add_argument("--val-fraction", type=fraction_up_to_half, metavar="F",
                      help="hold out the last F of the text to measure how well the model "
                           "writes text it never trained on; 0 trains on all of it, as the "
                           "original does (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--hidden-dim", type=positive_int, metavar="N",
                       help="size of the LSTM state, in each layer (default: %(default)s)")
    model.add_argument("--num-layers", type=positive_int, metavar="N",
                       help="LSTM layers stacked, each reading the outputs of the one below; "
                            "1 is the original (default: %(default)s)")
    model.add_argument("--dropout", type=dropout_probability, metavar="P",
                       help="while training, drop each layer's outputs with probability P, "
                            "against memorising a small text; 0 is the original, and it may "
                            "change on --resume (default: %(default)s)")

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--iterations", type=positive_int, metavar="N",
                       help="training iterations in all, counting those of a resumed run; "
                            "the upstream repository later used 501 for quick tries "
                            "(default: %(default)s)")
    optim.add_argument("--seq-length", type=positive_int, metavar="N",
                       help="characters per training window (default: %(default)s)")
    optim.add_argument("--batch-size", type=positive_int, metavar="N",
                       help="streams trained side by side: the text is cut into this many "
                            "tracks, each read in order with its own LSTM state; 1 is the "
                            "original (default: %(default)s)")
    optim.add_argument("--learning-rate", type=positive_float, metavar="F",
                       help="optimizer step size (default: %(default)s)")
    optim.add_argument("--optimizer", choices=("adam", "sgd"),
                       help="Adam, or the plain gradient descent the original keeps "
                            "commented out (default: %(default)s)")
    optim.add_argument("--clip", type=positive_float, metavar="F",
                       help="scale the gradients down to a global norm of at most F "
                            "(default: no clipping, as the original)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--sample", action="store_true",
                          help="do not train: print text drawn from the latest checkpoint "
                               "in --save-dir, and nothing else")
    sampling.add_argument("--sample-every", type=positive_int, metavar="N",
                          help="iterations between reports: loss line, sample, plot update "
                               "and checkpoint (default: %(default)s)")
    sampling.add_argument("--sample-length", type=positive_int, metavar="N",
                          help="characters per sample (default: %(default)s)")
    sampling.add_argument("--temperature", type=positive_float, metavar="T",
                          help="divide the logits by T before drawing: below 1 is bolder "
                               "about likely characters, above 1 wilder (default: "
                               "%(default)s)")
    sampling.add_argument("--prime", metavar="TEXT",
                          help="run TEXT through the network first and continue from it "
                               "(default: one random character)")
    sampling.add_argument("--argmax", action="store_true",
                          help="always take the most likely character instead of drawing")
    sampling.add_argument("--sampler", choices=("graph", "feed"),
                          help="draw in the graph, a tf.while_loop per 1,000 characters, or "
                               "with the post's sample(), a session.run per character "
                               "(default: %(default)s)")
    sampling.add_argument("--best", action="store_true",
                          help="with --sample, use the checkpoint with the lowest validation "
                               "loss instead of the latest")
    sampling.add_argument("--seed", type=non_negative_int, metavar="N",
                          help="random seed; give one to make a run or a sample repeatable "
                               "(default: a new one each run)")

    speed = parser.add_argument_group("speed (see the Performance section of README.md)")
    speed.add_argument("--xla", choices=("auto", "on", "off"),
                       help="let XLA compile clusters of the graph; auto turns it on where it "
                            "paid off here: batch 1 without --bf16 (default: %(default)s)")
    speed.add_argument("--bf16", action="store_true",
                       help="run the matrix products in bfloat16 (weights and sums stay "
                            "float32): much faster on processors with AVX512-BF16 or AMX, "
                            "slightly different numbers")

    book = parser.add_argument_group("bookkeeping")
    book.add_argument("--plots-dir", metavar="DIR",
                      help="folder for the loss plot PNG and the history CSV, named after "
                           "the run's folder (default: %(default)s)")
    book.add_argument("--save-dir", metavar="DIR",
                      help="folder for checkpoints (default: a new checkpoints/<text name>, "
                           "<text name>-2, ... for each run; with --resume or --sample the "
                           "text's run written last)")
    book.add_argument("--resume", action="store_true",
                      help="go on training from the latest checkpoint in --save-dir")
    book.add_argument("--logdir", metavar="DIR",
                      help="also write TensorBoard event files (graph, losses) to DIR "
                           "(default: none)")
    parser.set_defaults(**{f.name: f.default for f in fields(Options) if f.name != "text_file"})
    return parser


# Beyond the post: the backward pass's product with the kernel --------------------------

def transpose_kernel_once(tf, graph, cell, options):
    """Have the backward pass multiply by the kernel transposed once a window, not every step.

    Each layer, at each step of the loop, computes gates = concat([x, h]) @ kernel (x being
    the layer below's h above the first), and the gradient with
    respect to concat([x, h]) is dgates @ kernel^T. TensorFlow's gradient asks oneDNN for that
    product with the kernel transposed on the fly, at every step. Measured on an AVX-512
    processor, that was the largest op of a batch-32 step, and the backward pass given a copy
    of the kernel transposed once, before the loop, trained 1.3 times as fast (capped at AVX2,
    oneDNN gained little from it; tests/benchmark.py --profile, and its row that undoes this).
    At batch 1, and with --bf16, the copy measured no faster, and XLA compiles the products
    itself: those keep TensorFlow's gradient. The gradient is the same either way
    (tests/test_graph.py compares them).

    It reaches into the loop that dynamic_rnn built, so it does nothing if a later TensorFlow
    builds that loop differently (the same test tells).
    """
    if options.batch_size == 1 or options.bf16 or use_xla(options):
        return
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    body = getattr(loops[0], "_body_graph", None) if len(loops) == 1 else None
    if body is None:
        return
    # Inside the loop each layer's product reads its kernel through a captured tensor.
    outside = {inner.ref(): outer for outer, inner in body.captures}
    kernels = [variable for variable in cell.variables if "kernel" in variable.name]
    products = {}
    for op in body.get_operations():
        read = outside.get(op.inputs[1].ref()) if op.type == "MatMul" else None
        for kernel in kernels:
            if read is not None and read.name.startswith(kernel.op.name + "/"):
                products[kernel.ref()] = op
    if len(products) != len(kernels) or not all(
            hasattr(op, "_gradient_function") for op in products.values()):
        return
    for kernel in kernels:
        products[kernel.ref()]._gradient_function = transposed_gradient(
            tf, tf.transpose(kernel, name="kernel_transposed"))


def transposed_gradient(tf, kernel_transposed):
    """The gradient of concat([x, h]) @ kernel, given the kernel transposed already."""
    def gradient(product, dgates):
        return (tf.matmul(dgates, kernel_transposed),
                tf.matmul(product.inputs[0], dgates, transpose_a=True))
    return gradient


# Beyond the post: TensorFlow's quiet start ------------------------------------------------

def use_xla(options, sampling=False):
    """Whether to turn XLA on: measured here (tests/benchmark.py) it speeds up training at
    batch 1, but slows down training at batch 32 and the in-graph sampler, and keeps --bf16
    from applying."""
    if options.xla == "auto":
        return not sampling and options.batch_size == 1 and not options.bf16
    return options.xla == "on"


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


def import_tensorflow(options=Options(), sampling=False):
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
    if use_xla(options, sampling):
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
    if options.seed is not None:
        tf.config.experimental.enable_op_determinism()
    return tf


def session_config(tf, options, sampling=False):
    """Session options that run the same graph faster (see the Performance section)."""
    config = tf.compat.v1.ConfigProto()
    config.session_inter_op_thread_pool.add().num_threads = 0  # TensorFlow's default size
    config.session_inter_op_thread_pool.add().num_threads = 1  # SAMPLER_POOL
    if use_xla(options, sampling):
        config.graph_options.optimizer_options.global_jit_level = (
            tf.compat.v1.OptimizerOptions.ON_1)
    if options.bf16:
        # oneDNN runs matrix products in bfloat16 where the processor has it; weights and
        # sums stay float32.
        rewrites = config.graph_options.rewrite_options
        rewrites.auto_mixed_precision_onednn_bfloat16 = type(rewrites).ON
    return config


@contextlib.contextmanager
def building(graph):
    """Add to `graph`. The graph API this program teaches is deprecated as a whole; saying so
    at every call would bury what it prints."""
    with graph.as_default(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*deprecated")
        yield


def error_summary(exc):
    """The part of an exception's message that says what went wrong. TensorFlow's errors wrap
    it in the trace of where the failing operation was built, and put the file before it."""
    noise = ("Graph execution error", "Detected at node", "File ", "Node:", "[[", "Hint:")
    lines = [line.strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    return (useful or [type(exc).__name__])[0].split("; ")[-1]


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
