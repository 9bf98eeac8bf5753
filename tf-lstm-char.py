#!/usr/bin/env python3
"""A character-level LSTM text generator, written the TensorFlow 1.x way.

First the post's program, in the post's order; then what it needs to be safe and quick:
held-out evaluation, a sampler inside the graph, checkpoints, signals, the console and
TensorFlow's quiet start; a look inside the cells; the model exported as a SavedModel.
Results, and what to run for a given time and text: README.md.

Usage:
    python tf-lstm-char.py                          # train on data/shakespeare.txt
    python tf-lstm-char.py path/to/text.txt         # or on any UTF-8 text
    python tf-lstm-char.py --iterations 501 --hidden-dim 128
    python tf-lstm-char.py --batch-size 32 --learning-rate 2e-3 --clip 5 --iterations 100000 \
        --minutes 10                                # as much as ten minutes allow
    python tf-lstm-char.py --resume                 # go on after Ctrl-C, from checkpoints/
    python tf-lstm-char.py --sample --prime "ROSALIND" --temperature 0.7
    python tf-lstm-char.py --visualize              # which cells learned what, as a page
    python tf-lstm-char.py --export models/shakespeare
                                                    # a SavedModel, for TensorFlow Serving
    python tf-lstm-char.py --help                   # every option

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
import concurrent.futures
import contextlib
import math
import os
import signal
import statistics
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

def parse_args(argv=None):
    """The hyperparameters from the command line: {name: value} of the options typed, each
    checked. What is not typed comes from a checkpoint or from Options, whose defaults are the
    post's values (resolve_options)."""
    parser = build_parser()
    unset = object()
    typed = argparse.Namespace(**{f.name: unset for f in fields(Options)})
    parser.parse_args(argv, typed)
    typed = {name: value for name, value in vars(typed).items() if value is not unset}
    check_flags_together(parser, typed)
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
    with building_quietly(graph):
        if options.seed is not None:
            tf1.set_random_seed(options.seed)
        batch_size, hidden_dim = options.batch_size, options.hidden_dim
        x = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="x")
        y = tf1.placeholder(tf.float32, [None, batch_size, vocab_size], name="y")
        init_state = tf1.placeholder(tf.float32, state_shape(options), name="init_state")
        # The post's cell, one per layer; its Glorot-uniform kernel is given explicitly so
        # that --seed reaches it too.
        layers = [tf1.nn.rnn_cell.LSTMCell(hidden_dim, state_is_tuple=True,
                                           initializer=tf1.glorot_uniform_initializer())
                  for _ in range(options.num_layers)]
        lstm_cell, keep_prob = layers[0], None
        rnn_tuple_state = tf1.nn.rnn_cell.LSTMStateTuple(init_state[0], init_state[1])
        if options.num_layers > 1 or options.dropout > 0:
            lstm_cell, rnn_tuple_state, keep_prob = deeper_cell(tf, layers, init_state, options)
        out_w = tf1.get_variable("out_w", shape=[hidden_dim, vocab_size])
        # Zero where the post's is random, so that the untrained network's loss is
        # log(vocab_size), the value loss_hist starts from.
        out_b = tf1.get_variable("out_b", shape=[vocab_size],
                                 initializer=tf1.zeros_initializer())
        # The post's dynamic_rnn, called once for each layer, with dropout between layers;
        # each layer trains through its backward pass written out (beyond the post).
        h_states, current_state = layer_by_layer(
            tf, tf1.nn.dynamic_rnn, layers, x, rnn_tuple_state, keep_prob, options)
        final_state = stack_state(tf, current_state, name="final_state")
        logits = tf.identity(output_layer(tf, h_states, out_w, out_b), name="logits")
        # 1 unless a sampler feeds another: below 1 bolder about likely characters.
        temperature = tf1.placeholder_with_default(1.0, [], name="temperature")
        probabilities = tf.nn.softmax(logits / temperature, name="probabilities")

        cross_entropy = tf1.nn.softmax_cross_entropy_with_logits_v2(
            labels=tf.reshape(y, [-1, vocab_size]), logits=logits)
        loss = tf.reduce_mean(cross_entropy, name="loss")
        if options.optimizer == "adam":
            optimizer = tf1.train.AdamOptimizer(learning_rate=options.learning_rate)
        else:
            optimizer = tf1.train.GradientDescentOptimizer(learning_rate=options.learning_rate)
        if options.clip is None:
            training = optimizer.minimize(loss, name="training")
        else:
            training = clipped_minimize(tf, optimizer, loss, options.clip)
        init = tf1.global_variables_initializer()
    return Model(graph, x, y, init_state, lstm_cell, layers, out_w, out_b, final_state, logits,
                 temperature, probabilities, loss, training, init, keep_prob)


# The graph's handles: the post's, then what add_extras adds (evaluation, sampler, saver,
# and for --visualize the look inside).
Model = namedtuple("Model", "graph x y init_state cell layers out_w out_b final_state logits "
                            "temperature probabilities loss training init keep_prob "
                            "evaluation sampler saver inside", defaults=(None,) * 4)


def output_layer(tf, lstm_outputs, out_w, out_b):
    """The post's dense layer: a score per character for each LSTM output, one row per step
    and stream, row t * batch_size + b (the post's h_states[:, 0, :] for any batch size)."""
    return tf.matmul(tf.reshape(lstm_outputs, [-1, out_w.shape[0]]), out_w) + out_b


def sample(session, model, length, rng, temperature=1.0, prime_ids=(), argmax=False):
    """The post's sample(): from a zero state and one random character (or the prime), run
    `probabilities` and the state one character at a time, draw the next character from
    them with numpy, and feed it back. Yields the ids drawn, as they are drawn."""
    _, batch_size, vocab_size = model.x.shape
    state = np.zeros(model.init_state.shape, dtype=np.float32)
    seed = first_ids(prime_ids, vocab_size, rng)
    for _ in range(length):
        # Every stream of the batch reads the same characters; the first one is used.
        inputs = aux_funcs.encode(np.repeat([seed], batch_size, axis=0).T, vocab_size)
        char_probs, state = session.run([model.probabilities, model.final_state],
                                        {model.x: inputs, model.init_state: state,
                                         model.temperature: temperature})
        last = char_probs[-batch_size]
        check_drawable(np.all(np.isfinite(last)), temperature)
        pred = int(np.argmax(last)) if argmax else int(rng.choice(vocab_size, p=last))
        yield pred
        seed = [pred]


def train(session, model, batches, options, progress, report):
    """The post's loop, from the iteration `progress` stands at to options.iterations, or
    until options.minutes have passed. At iterations 0, sample_every, 2 * sample_every, ... it
    reports before that iteration's step, as the post does (`iter 0, loss: X` is the
    untrained network, X log(vocab_size)); a last report closes the run, finished, out of
    time or stopped by a signal."""
    loss_hist, smooth_loss = progress.loss_hist, progress.smooth_loss_hist
    first = progress.iteration
    for it in range(first, options.iterations + 1):
        last = it == options.iterations or report.stop_requested() or report.out_of_time()
        # A resumed run was reported on where it stopped.
        if (it % options.sample_every == 0 or last) and (it == 0 or it > first):
            # The post's line; the report adds the epoch and the speed.
            print(aux_funcs.report_line(it, smooth_loss[-1], **report.measure(session, last)))
            drawn = sample_by_options(session, model, options, report.vocab,
                                      options.sample_length, progress.rng)
            print(f"{RULE}\n{options.prime}{''.join(report.vocab[i] for i in drawn)}\n{RULE}",
                  flush=True)
            aux_funcs.plot(loss_hist, smooth_loss, it, report.it_per_epoch, report.files.name,
                           options.plots_dir, progress.val_points, report.val_legend)
            report.keep(session, last)
        if last:
            break
        inputs, targets = next(batches)
        if batches.restarted:  # reading wrapped to the text's start: so does the state
            progress.state = np.zeros_like(progress.state)
        _loss, _, progress.state = session.run(
            [model.loss, model.training, model.final_state],
            {model.x: inputs, model.y: targets, model.init_state: progress.state,
             **dropout_feed(model, options)})
        loss_hist.append(float(_loss))
        smooth_loss.append(smooth_loss[-1] * 0.999 + loss_hist[-1] * 0.001)
        progress.iteration, progress.position = it + 1, batches.position
        report.after_step()


def main(argv=None):
    """Flags, text, batch generator, graph, Session, loop; or with --sample, a sample."""
    typed = parse_args(argv)
    # Samples are written as UTF-8 whatever the locale says, so any text can be piped.
    sys.stdout.reconfigure(encoding="utf-8")
    if typed.get("sample"):
        return sample_command(typed)
    if typed.get("visualize"):
        return visualize_command(typed)
    if typed.get("export"):
        return export_command(typed)
    resumed = checkpoint_to_read(typed) if typed.get("resume") else None
    # Going on in the checkpoint's folder would write over the damaged checkpoints passed
    # over, or over those after the one --checkpoint names: the run goes on in a new folder,
    # the one a fresh run would take.
    in_its_folder = bool(resumed) and not (resumed.passed_over or typed.get("checkpoint"))
    if resumed and not in_its_folder:
        typed = {name: value for name, value in typed.items() if name != "save_dir"}
    options = resolve_options(typed, resumed, (MODEL, SPLIT, CARRIED), in_its_folder)

    text, char_to_idx, idx_to_char, vocab_size = aux_funcs.load(options.text_file,
                                                                options.encoding)
    train_ids, val_ids = aux_funcs.split_train_val(aux_funcs.text_to_ids(text, char_to_idx),
                                                   options.val_fraction)
    info = checkpoint_info(options, "".join(idx_to_char[i] for i in range(vocab_size)))
    check_before_tensorflow(options, train_ids, val_ids, info, resumed)
    files = claim_run_files(options)
    # Bookkeeping, as the post keeps it: the loss before training is a uniform guess's,
    # log(vocab_size), and training starts from a zero state. A resumed run has its own.
    if resumed:
        progress = Progress.restored(resumed)
    else:
        loss_hist = [math.log(vocab_size)]
        progress = Progress(0, 0, np.zeros(state_shape(options), np.float32), loss_hist,
                            loss_hist.copy(), np.random.default_rng(options.seed))
    it_per_epoch = len(train_ids) / (options.seq_length * options.batch_size)
    report = Report(options, files, info, progress, val_ids, it_per_epoch)
    report.announce(len(text), len(train_ids))

    batches = aux_funcs.BatchGenerator(train_ids, options.seq_length, vocab_size,
                                       options.batch_size, progress.position)
    tf = import_tensorflow(options)
    model = add_extras(tf, build_graph(tf, vocab_size, options))
    with open_session(tf, model, options) as session, report.running(tf, model):
        if resumed:
            restore_checkpoint(session, model.saver, resumed.prefix)
            print(f"resuming {aux_funcs.display_path(resumed.prefix)} at iteration "
                  f"{progress.iteration}", flush=True)
            report.catch_up(session)
        else:
            session.run(model.init)
        train(session, model, batches, options, progress, report)
    return report.close()


# Beyond the post: layers and dropout ------------------------------------------------------

def state_shape(options):
    """The shape of init_state and final_state: each layer's c and h for each stream."""
    one_layer = [2, options.batch_size, options.hidden_dim]
    return one_layer if options.num_layers == 1 else [options.num_layers] + one_layer


def state_shape_for_streams(state, streams):
    """The shape of a state stacked as the tensor `state` is, for `streams` streams."""
    shape = state.shape.as_list()
    shape[-2] = streams
    return shape


def deeper_cell(tf, layers, init_state, options):
    """The post's cell made deeper and regularised, as TensorFlow's PTB tutorial does it: the
    LSTMCells of `layers` in a MultiRNNCell, which evaluation and the samplers run, and the
    keep probability of the dropout that layer_by_layer puts on each layer's outputs while
    training: a placeholder that only the training step feeds (None without dropout), so
    that evaluation, the samplers and a graph reopened by name run without dropout. Returns
    the cell, its state from init_state, and the keep probability."""
    tf1 = tf.compat.v1
    keep_prob = None
    if options.dropout > 0:
        keep_prob = tf1.placeholder_with_default(1.0, [], name="keep_prob")
    cell = layers[0] if options.num_layers == 1 else tf1.nn.rnn_cell.MultiRNNCell(layers)
    return cell, cell_state(tf, init_state), keep_prob


def layer_by_layer(tf, dynamic_rnn, layers, inputs, initial_state, keep_prob, options):
    """The training graph's LSTM: dynamic_rnn over each layer's LSTMCell in turn, time-major,
    the layer below's outputs (after dropout, where keep_prob is given) as its inputs. This
    computes what dynamic_rnn over the MultiRNNCell of the layers, each wrapped in a
    DropoutWrapper on its output, computes, and names the variables alike, so that
    checkpoints of either reopen in the other. Run one layer at a time, each layer can get
    its own backward pass written out (with_window_gradient, where written_gradient_applies);
    dropout between them is differentiated by TensorFlow. Returns the top layer's outputs and
    the final state, as dynamic_rnn over the cell of build_graph returns them."""
    LSTMStateTuple = tf.compat.v1.nn.rnn_cell.LSTMStateTuple
    states = [initial_state] if len(layers) == 1 else initial_state
    final_states = []
    for number, (cell, state) in enumerate(zip(layers, states)):
        scope = "rnn" if len(layers) == 1 else f"rnn/multi_rnn_cell/cell_{number}"
        if written_gradient_applies(options):
            inputs, c, h = with_window_gradient(tf, dynamic_rnn, cell, scope)(
                inputs, state.c, state.h)
        else:
            outputs, final = dynamic_rnn(cell, inputs, initial_state=state, time_major=True,
                                         scope=scope)
            inputs, c, h = outputs, final.c, final.h
        if keep_prob is not None:
            inputs = tf.nn.dropout(inputs, rate=1 - keep_prob)
        final_states.append(LSTMStateTuple(c, h))
    return inputs, final_states[0] if len(layers) == 1 else tuple(final_states)


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


def dropout_feed(model, options):
    """What the training step feeds besides the post's x, y and init_state: the keep
    probability, where the graph has dropout."""
    return {} if model.keep_prob is None else {model.keep_prob: 1.0 - options.dropout}


def top_output(state):
    """The top layer's h in a cell's state: the output the logits are made from."""
    return state.h if hasattr(state, "h") else state[-1].h


# Beyond the post: the backward pass, written out -----------------------------------------

# The order in which LSTMCell splits z W + b into its gates: input, candidate (j), forget,
# output. tests/test_gradient.py holds it against the cell.
GATE_ORDER = "ijfo"


def backward_blocks(streams, hidden):
    """In how many blocks of columns the backward loop multiplies by W_h^T. For one stream
    the product is a vector times a 4 MB matrix (hidden 500), and oneDNN ran it as four
    products of a quarter of the columns each about three times faster than as one: batch 1
    trained 1.3 times faster (tests/benchmark.py has the row). For more streams the one
    product measured as fast or faster."""
    return 4 if streams == 1 and hidden % 4 == 0 else 1


class CellKeepingGates:
    """The post's LSTMCell, stepped exactly as dynamic_rnn steps it, whose output at each
    step also carries what the step computed on the way and the backward pass needs: c, and
    the four gates before their nonlinearities (z_t W + b in GATE_ORDER, as the cell's own
    Split gives them). Kept this way, window_backward need not compute them again, nor split
    the window's gates into four once more: batch 32 trained 2.7 to 5.6% faster than with
    z_t W + b kept whole (tests/BENCHMARKS.md). It calls the cell as dynamic_rnn calls a
    cell, adding no variable scope, so the variables keep the post's names."""

    def __init__(self, tf, cell):
        self.graph_of = tf.compat.v1.get_default_graph
        self.cell = cell
        self.state_size = cell.state_size
        hidden = cell.output_size
        self.output_size = (hidden, hidden) + (hidden,) * len(GATE_ORDER)

    def zero_state(self, batch_size, dtype):
        return self.cell.zero_state(batch_size, dtype)

    def __call__(self, inputs, state):
        graph = self.graph_of()
        before = len(graph.get_operations())
        h, new_state = self.cell(inputs, state)
        splits = [op for op in graph.get_operations()[before:] if op.type == "Split"]
        if len(splits) != 1 or len(splits[0].outputs) != len(GATE_ORDER):
            raise ValueError("LSTMCell no longer splits its gates in one Split")
        return (h, new_state.c, *splits[0].outputs), new_state


def with_window_gradient(tf, dynamic_rnn, cell, scope):
    """rnn(inputs, c, h) -> (outputs, c, h): dynamic_rnn over `cell` in `scope`, with its
    gradient computed by window_backward from the c's and gates the forward kept, instead of
    by TensorFlow from the loop that dynamic_rnn built."""
    LSTMStateTuple = tf.compat.v1.nn.rnn_cell.LSTMStateTuple
    keeping = CellKeepingGates(tf, cell)

    @tf.custom_gradient
    def rnn(inputs, c_first, h_first):
        (outputs, c, *gates), final = dynamic_rnn(
            keeping, inputs, initial_state=LSTMStateTuple(c_first, h_first), time_major=True,
            scope=scope)

        def gradient(d_outputs, d_c_last, d_h_last, variables=None):
            d_inputs, d_c_first, d_h_first, d_weights = window_backward(
                tf, cell, inputs, c_first, h_first, outputs, c, gates, d_outputs, d_c_last,
                d_h_last)
            return ((d_inputs, d_c_first, d_h_first),
                    [d_weights[variable.ref()] for variable in variables])
        return (outputs, final.c, final.h), gradient
    return rnn


def window_backward(tf, cell, inputs, c_first, h_first, outputs, c, gates, d_outputs,
                    d_c_last, d_h_last):
    """The gradient of one LSTMCell layer over a window, written out.

    TensorFlow differentiates dynamic_rnn step by step: at each of the window's steps it
    forms the kernel's gradient (an outer product as large as the kernel) and adds it up.
    Here, as PyTorch's fused LSTM does, the steps share what they can: the kernel's gradient
    is one product over the whole window, and only what truly runs step after step stays in
    the loop. In the post's notation, with z_t = [x_t, h_{t-1}], W the kernel and b the bias,
    the forward step is (in LSTMCell's GATE_ORDER, with its forget bias):

        i, j, f, o = split(z_t W + b)
        c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(j)
        h_t = sigmoid(o) * tanh(c_t)

    and, writing the gates after their nonlinearities as i, g = tanh(j), f and o, the
    backward step, from the loss's gradient dh_t at h_t and what step t+1 passed back (at
    the last step, the gradient of the final state):

        dh = dh_t + dh_next
        dc = dc_next + dh * o * (1 - tanh(c_t)^2)
        da = [dc * g * i (1 - i),  dc * i (1 - g^2),  dc * c_{t-1} * f (1 - f),
              dh * tanh(c_t) * o (1 - o)]                  (the gates before nonlinearity)
        dc_next = dc * f
        dh_next = da W_h^T                                  (W_h: W's rows for h)

    and once for the window

        dW = sum_t z_t^T da_t    db = sum_t da_t    dx_t = da_t W_x^T

    The forward kept every step's c and gates before their nonlinearities (c, and gates in
    GATE_ORDER, each [steps, streams, hidden], from CellKeepingGates). Everything in da that
    does not depend on dh and dc is formed from them for the whole window before the loop, so
    each step is a few elementwise operations and one product with W_h^T, transposed once
    (in column blocks for one stream: backward_blocks). Returns the gradients of inputs,
    c_first and h_first, and {variable.ref(): gradient} for the cell's kernel and bias.
    tests/test_gradient.py holds all of them equal to tf.gradients of the post's graph.
    """
    with warnings.catch_warnings():  # about serializing the initializer, not read here
        warnings.simplefilter("ignore")
        config = cell.get_config()
    if (config["activation"] != "tanh" or config["use_peepholes"] or config["cell_clip"]
            or config["num_proj"]):
        raise ValueError("window_backward is written for LSTMCell's defaults")
    kernel, bias = cell.variables
    hidden, streams = h_first.shape[-1], inputs.shape[1]
    gates = dict(zip(GATE_ORDER, gates))
    i, g = tf.sigmoid(gates["i"]), tf.tanh(gates["j"])
    f = tf.sigmoid(gates["f"] + config["forget_bias"])
    o = tf.sigmoid(gates["o"])
    c_before = tf.concat([c_first[tf.newaxis], c[:-1]], 0)
    tanh_c = tf.tanh(c)
    dh_to_dc = o * (1 - tanh_c * tanh_c)
    by_gate = {"i": g * i * (1 - i), "j": i * (1 - g * g), "f": c_before * f * (1 - f),
               "o": tanh_c * o * (1 - o)}
    to_gates = tf.concat([by_gate[gate] for gate in GATE_ORDER], 2)
    # Which of dc and dh each gate's derivative scales: only the output gate's is dh.
    from_dh = [gate == "o" for gate in GATE_ORDER]
    kernel_h_blocks = tf.split(tf.transpose(kernel[-hidden:]), backward_blocks(streams, hidden),
                               axis=1)

    def step(t, dh_next, dc_next, da_by_step):
        t -= 1
        dh = d_outputs[t] + dh_next
        dc = dc_next + dh * dh_to_dc[t]
        da = tf.concat([dh if use_dh else dc for use_dh in from_dh], 1) * to_gates[t]
        dh_before = tf.concat([tf.matmul(da, block, name="dh_before")
                               for block in kernel_h_blocks], 1)
        return t, dh_before, dc * f[t], da_by_step.write(t, da)

    # A while_loop rather than tf.scan: it stacks only da, not every step's dh and dc, and
    # reads the window's tensors a step at a time rather than copying them into lists first.
    # Batch 32 trained 2.5 to 5.6% faster, interleaved (tests/BENCHMARKS.md).
    steps = tf.shape(to_gates)[0]
    _, dh_first, dc_first, da = tf.while_loop(
        lambda t, *carried: t > 0, step,
        (steps, d_h_last, d_c_last, tf.TensorArray(to_gates.dtype, steps)))
    h_before = tf.concat([h_first[tf.newaxis], outputs[:-1]], 0)
    z = tf.reshape(tf.concat([inputs, h_before], 2), [-1, kernel.shape[0]])
    da = tf.reshape(da.stack(), [-1, 4 * hidden])
    d_inputs = tf.reshape(tf.matmul(da, kernel[:-hidden], transpose_b=True, name="d_inputs"),
                          tf.shape(inputs))
    return d_inputs, dc_first, dh_first, {
        kernel.ref(): tf.matmul(z, da, transpose_a=True, name="d_kernel"),
        bias.ref(): tf.reduce_sum(da, 0)}


def written_gradient_applies(options):
    """Whether training goes through window_backward: unless --gradient tensorflow, for it
    trained faster than TensorFlow's gradient at every batch size, depth and precision that
    tests/benchmark.py measures. (A checkpoint may store "auto", the default for a while,
    when the written gradient still computed the gates again and lost at batch 32.)"""
    return options.gradient != "tensorflow"


# Beyond the post: held-out evaluation -----------------------------------------------------

# Held-out text is read as tracks side by side, each from a zero state: characters per track
# at least, tracks at most, and steps per session.run.
VAL_TRACK_LENGTH = 500
VAL_MAX_TRACKS = 64
VAL_WINDOW = 1000
# Each report scores the same first characters of the held-out text, so that its figures
# compare along the run; the end of a run scores all of it once.
VAL_SLICE_CHARS = 20_000
# Where evaluation's copy of the weights lives in the graph.
HELD_OUT_SCOPE = "held_out"

Evaluation = namedtuple("Evaluation", "copy ids init_state final_state loss_sum")


def add_evaluation(tf, model):
    """The post's cell and output layer on held-out text, run on a copy of the weights that
    `copy` takes: a report's score is computed in a second thread while training goes on
    changing the weights. It reads integer ids, any number of tracks side by side, each
    window's first row only as input and its last only as target, and gives the summed loss,
    so that windows of any length add up to a mean over the whole text."""
    tf1 = tf.compat.v1
    vocab_size = model.x.shape[2]
    ids = tf1.placeholder(tf.int32, [None, None], name="val_ids")
    init_state = tf1.placeholder(tf.float32, state_shape_for_streams(model.init_state, None),
                                 name="val_init_state")

    def local(getter, *args, **kwargs):
        # Local variables, as tf.compat.v1.metrics keeps its counts: not trained, not saved in
        # checkpoints, not among the model's variables; and nothing drawn at random to start
        # them, since `copy` fills them before they are read.
        return getter(*args, **dict(kwargs, trainable=False, initializer=tf1.zeros_initializer(),
                                    collections=[tf1.GraphKeys.LOCAL_VARIABLES]))

    with tf1.variable_scope(HELD_OUT_SCOPE, custom_getter=local):
        layers = [tf1.nn.rnn_cell.LSTMCell(layer.output_size) for layer in model.layers]
        cell = layers[0] if len(layers) == 1 else tf1.nn.rnn_cell.MultiRNNCell(layers)
        out_w = tf1.get_variable("out_w", model.out_w.shape)
        out_b = tf1.get_variable("out_b", model.out_b.shape)
        outputs, last = tf1.nn.dynamic_rnn(
            cell, tf.one_hot(ids[:-1], vocab_size), initial_state=cell_state(tf, init_state),
            time_major=True, scope="rnn")
    loss_sum = tf.reduce_sum(
        tf1.nn.softmax_cross_entropy_with_logits_v2(
            labels=tf.one_hot(tf.reshape(ids[1:], [-1]), vocab_size),
            logits=output_layer(tf, outputs, out_w, out_b)),
        name="val_loss_sum")
    copies = [w for layer in layers for w in layer.weights] + [out_w, out_b]
    weights = [w for layer in model.layers for w in layer.weights] + [model.out_w, model.out_b]
    copy = tf.group(*[mine.assign(theirs) for mine, theirs in zip(copies, weights)],
                    name="val_copy")
    return Evaluation(copy, ids, init_state, stack_state(tf, last, name="val_final_state"),
                      loss_sum)


def held_out_tracks(val_ids):
    """Held-out ids as side-by-side tracks of at least VAL_TRACK_LENGTH characters.

    Reading a few tracks at once costs little more than reading one, and each track is long
    enough that starting it from a zero state hardly changes its mean loss.
    """
    count = max(1, min(VAL_MAX_TRACKS, len(val_ids) // VAL_TRACK_LENGTH))
    return aux_funcs.tracks(val_ids, count)


def evaluate(session, evaluation, val_tracks):
    """Mean loss, in nats per character, of the weights as they are now over held-out tracks
    (time-major, one per column), each read from a zero state with its state carried from
    window to window."""
    session.run(evaluation.copy)
    return evaluate_copy(session, evaluation, val_tracks)


def evaluate_copy(session, evaluation, val_tracks):
    """evaluate() of the weights as evaluation.copy last took them, which another thread may
    go on training meanwhile."""
    steps, count = val_tracks.shape
    state = np.zeros(state_shape_for_streams(evaluation.init_state, count), dtype=np.float32)
    total = 0.0
    for start in range(0, steps - 1, VAL_WINDOW):
        loss_sum, state = session.run(
            [evaluation.loss_sum, evaluation.final_state],
            {evaluation.ids: val_tracks[start:start + VAL_WINDOW + 1],
             evaluation.init_state: state})
        total += float(loss_sum)
    return total / ((steps - 1) * count)


# Beyond the post: the in-graph sampler ----------------------------------------------------

# Samples are drawn in pieces of this many characters, one session.run each, so that a long
# sample shows as it comes and stops soon when asked.
SAMPLE_PIECE = 1000
# The sampler's loop is a chain of small operations, each waiting for the last: run by one
# thread, they do not wait for hand-overs between threads. Sessions get this pool from
# session_config.
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
                                               state_shape_for_streams(model.init_state, 1),
                                               name="sample_start_state")

    def choose(step, scores):
        scaled = scores / model.temperature
        return tf1.where(use_argmax, tf.argmax(scaled, axis=1, output_type=tf.int32),
                         tf.random.categorical(scaled, 1, dtype=tf.int32)[:, 0])

    drawn, end_state = draw_loop(tf, model.cell, model.out_w, model.out_b,
                                 cell_state(tf, start_state), length, choose)
    return Sampler(prime, length, use_argmax, tf.identity(drawn[:, 0], name="sample_ids"),
                   start_state, stack_state(tf, end_state, name="sample_end_state"),
                   tf1.RunOptions(inter_op_thread_pool=SAMPLER_POOL))


def draw_loop(tf, cell, out_w, out_b, state, length, choose):
    """The sampler's tf.while_loop, for any number of streams: `length` times, the scores of
    the next character from the cell's state, one character a stream chosen from them by
    choose(step, scores), and the cell run on it. Returns the ids chosen, [length, streams],
    and the state after the last."""
    vocab_size = out_w.shape[1]

    def draw_one(i, state, drawn):
        # The cell's output is its top layer's h, so the scores come from the state.
        next_ids = choose(i, output_layer(tf, top_output(state), out_w, out_b))
        _, state = cell(tf.one_hot(next_ids, vocab_size), state)
        return i + 1, state, drawn.write(i, next_ids)

    _, end_state, drawn = tf.while_loop(
        lambda i, *rest: i < length, draw_one,
        [tf.constant(0), state, tf.TensorArray(tf.int32, size=length)])
    return drawn.stack(), end_state


def sample_in_graph(session, model, length, rng, temperature=1.0, prime_ids=(),
                    argmax=False):
    """sample(), drawn by the in-graph sampler a piece at a time: yields the ids drawn."""
    sampler, vocab_size = model.sampler, model.x.shape[2]
    fed = {sampler.prime: first_ids(prime_ids, vocab_size, rng),
           model.temperature: temperature, sampler.argmax: argmax}
    for done in range(0, length, SAMPLE_PIECE):
        fed[sampler.length] = min(SAMPLE_PIECE, length - done)
        drawn, fed[sampler.start_state] = session.run([sampler.ids, sampler.end_state], fed,
                                                      options=sampler.run_options)
        # Drawn from scores that are not finite, tf.random.categorical gives ids out of range.
        check_drawable(np.all((0 <= drawn) & (drawn < vocab_size)), temperature)
        yield from drawn.tolist()


def first_ids(prime_ids, vocab_size, rng):
    """What a sample starts from: the prime, or as in the post one character at random."""
    return list(prime_ids) or [int(rng.integers(vocab_size))]


def check_drawable(finite, temperature):
    """Refuse to draw from scores that are not finite numbers."""
    if not finite:
        raise UserError(f"the network's output is not finite at --temperature {temperature}: "
                        "its weights have diverged, or the temperature is too low to divide "
                        "by")


def sample_by_options(session, model, options, vocab, length, rng):
    """The ids of a sample as the options ask: after options.prime, at options.temperature
    (or argmax), by the sampler options.sampler names, the post's sample() or the in-graph
    one."""
    sampler = sample if options.sampler == "feed" else sample_in_graph
    return sampler(session, model, length, rng, options.temperature,
                   [vocab.index(ch) for ch in options.prime], options.argmax)


# Beyond the post: everything added to the graph -------------------------------------------

def add_extras(tf, model, look_inside=False):
    """The model with held-out evaluation, the in-graph sampler and a Saver added to the
    post's graph (and the look inside, if asked for), which is then closed to changes."""
    with building_quietly(model.graph):
        # The sampler first: with --seed, its draws do not move with the ops added later.
        model = model._replace(sampler=add_sampler(tf, model))
        # Old checkpoints are removed by save_checkpoint, once a newer one is complete.
        model = model._replace(evaluation=add_evaluation(tf, model),
                               saver=tf.compat.v1.train.Saver(max_to_keep=None))
        if look_inside:
            model = model._replace(inside=add_look_inside(tf, model))
    model.graph.finalize()
    return model


def clipped_minimize(tf, optimizer, loss, clip):
    """optimizer.minimize(loss), with the gradients scaled down to a global norm of at most
    `clip` first."""
    gradients, variables = zip(*optimizer.compute_gradients(loss))
    gradients, _ = tf.clip_by_global_norm(gradients, clip)
    return optimizer.apply_gradients(zip(gradients, variables), name="training")


# Beyond the post: the checks before TensorFlow loads --------------------------------------

def checkpoint_info(options, vocab):
    """What every checkpoint of a run keeps besides its weights and progress: the format, the
    vocabulary, the stored options and the text's SHA-256."""
    return {"format": aux_funcs.CHECKPOINT_FORMAT, "vocabulary": vocab,
            "options": stored_options(options),
            "text_sha256": aux_funcs.sha256_of_file(options.text_file)}


def check_before_tensorflow(options, train_ids, val_ids, info, resumed):
    """Refuse, in one line, what can be found wrong before TensorFlow loads: a text too short
    for the windows, a model too big for the memory, a checkpoint to resume that does not fit,
    a --save-dir that holds another run, a prime the text lacks, a folder not writable."""
    vocab = info["vocabulary"]
    aux_funcs.check_text_fits(options.text_file, train_ids, len(val_ids), options.seq_length,
                              options.batch_size, options.val_fraction)
    check_memory(options, len(vocab))
    if resumed:
        check_trained_on(options.text_file, info["text_sha256"], vocab, resumed)
        if resumed.info["iteration"] >= options.iterations:
            raise UserError(f"checkpoint {resumed.prefix} has done "
                            f"{resumed.info['iteration']} iterations already; give a larger "
                            "--iterations to train on")
    elif options.save_dir and aux_funcs.listed_checkpoints(options.save_dir):
        raise UserError(f"{options.save_dir} holds a checkpoint already; add --resume to go "
                        "on training it, or give another --save-dir")
    aux_funcs.check_known_characters(options.prime, vocab, "--prime")
    for folder, flag in ((options.plots_dir, "--plots-dir"), (options.save_dir, "--save-dir"),
                         (options.logdir, "--logdir")):
        if folder:
            aux_funcs.make_writable_dir(folder, flag)


def check_trained_on(text_file, text_sha256, vocab, checkpoint):
    """Refuse a text other than the one `checkpoint` was trained on, or read otherwise (with
    another --encoding): its held-out part, and its ids, would not be the checkpoint's."""
    if text_sha256 != checkpoint.info["text_sha256"] or vocab != checkpoint.info["vocabulary"]:
        raise UserError(f"{text_file} is not the text checkpoint {checkpoint.prefix} was "
                        f"trained on ({checkpoint.info['options']['text_file']})")


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
    kernel's gradient of one step, its running sum and W_h^T), one window's
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


# Beyond the post: the run's folder and file names -----------------------------------------

# Where runs keep their folders when --save-dir is not given: <text name>, <text name>-2, ...
CHECKPOINTS_DIR = "checkpoints"

RunFiles = namedtuple("RunFiles", "save_dir name plot_path history_path")


def claim_run_files(options):
    """The run's folder and the names of its plot and history, named after the folder so that
    they are its own too. A fresh run without --save-dir claims a new folder (called once
    nothing can be refused any more), so that no earlier run is overwritten."""
    save_dir = options.save_dir or aux_funcs.claim_run_folder(
        CHECKPOINTS_DIR, aux_funcs.text_name_of(options.text_file))
    name = run_name(save_dir)
    return RunFiles(save_dir, name, aux_funcs.loss_plot_path(options.plots_dir, name),
                    os.path.join(options.plots_dir, f"{name}_history.csv"))


def run_name(save_dir):
    """What a run's plots are named after: its folder's name."""
    return os.path.basename(os.path.normpath(save_dir))


def checkpoint_to_read(typed, best=False):
    """The checkpoint that --resume, --sample or --visualize reads: the latest (or best) intact
    one in --save-dir, or without it in the run of the text whose checkpoints were written
    last; or the one --checkpoint names. Damaged ones passed over on the way, and a resumed
    run's new folder, are said in one line."""
    if typed.get("checkpoint"):
        saved = aux_funcs.read_checkpoint(aux_funcs.without_checkpoint_suffix(
            typed["checkpoint"]))
        if typed.get("resume"):
            print(f"tf-lstm-char.py: going on from {aux_funcs.display_path(saved.prefix)} in a "
                  "new run folder, leaving its own as it is", file=sys.stderr)
        return saved
    folder = typed.get("save_dir")
    if not folder:
        name = aux_funcs.text_name_of(typed.get("text_file", DEFAULT_TEXT))
        folder = aux_funcs.latest_run_folder(CHECKPOINTS_DIR, name)
        if folder is None:
            raise UserError(f"no run of {name} in {CHECKPOINTS_DIR}/; train first, or give "
                            "the --save-dir of a run")
    saved = aux_funcs.latest_checkpoint(folder, best)
    if saved.passed_over:
        going_on = (", going on in a new run folder and leaving that one as it is"
                    if typed.get("resume") else "")
        print(f"tf-lstm-char.py: passed over damaged {'; '.join(saved.passed_over)}: using "
              f"{aux_funcs.display_path(saved.prefix)}, the newest intact checkpoint"
              f"{going_on}", file=sys.stderr)
    return saved


# Beyond the post: the progress kept in checkpoints, and --sample --------------------------

KEEP_CHECKPOINTS = 5  # the newest ones, and the best by validation loss; others are removed


@dataclass
class Progress:
    """Where training stands: everything a resumed run needs that the graph does not hold."""
    iteration: int              # iterations done
    position: int               # where in the training text the next window starts
    state: np.ndarray           # the LSTM state carried into that window
    loss_hist: list             # the loss of each iteration, after the starting value
    smooth_loss_hist: list      # the smoothed loss, likewise
    rng: np.random.Generator    # what the samples are drawn with
    val_points: list = field(default_factory=list)  # (iterations done, validation loss)
    best: list = None           # [iterations done, validation loss] of the best report

    @classmethod
    def restored(cls, checkpoint):
        """The progress saved with `checkpoint`."""
        info, arrays = checkpoint.info, checkpoint.arrays
        rng = np.random.default_rng()
        rng.bit_generator.state = info["rng_state"]
        return cls(info["iteration"], info["position"], arrays["state"],
                   arrays["loss_hist"].tolist(), arrays["smooth_loss_hist"].tolist(), rng,
                   [tuple(point) for point in arrays["val_points"].tolist()], info["best"])


def save_checkpoint(session, saver, save_dir, progress, info):
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
        aux_funcs.save_run_state(prefix, dict(
            info, iteration=progress.iteration, position=progress.position,
            rng_state=progress.rng.bit_generator.state, best=progress.best), {
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


def sample_command(typed):
    """--sample: print text drawn from the latest (or best) checkpoint, and nothing else."""
    saved = checkpoint_to_read(typed, typed.get("best", False))
    # Which one, where it is neither typed nor already said with what was passed over.
    if not (typed.get("save_dir") or typed.get("checkpoint") or saved.passed_over):
        print(f"tf-lstm-char.py: sampling from {aux_funcs.display_path(saved.prefix)}, the "
              "latest run of its text", file=sys.stderr)
    options = resolve_options(typed, saved, (MODEL,))
    vocab = saved.info["vocabulary"]
    aux_funcs.check_known_characters(options.prime, vocab, "--prime")
    tf = import_tensorflow(options)
    # One stream is enough to sample, whatever batch the checkpoint was trained with.
    model = add_extras(tf, build_graph(tf, len(vocab), replace(options, batch_size=1)))
    written = 0
    with open_session(tf, model, options) as session, \
            aux_funcs.StopRequest() as stop:
        restore_checkpoint(session, model.saver, saved.prefix)
        sys.stdout.write(options.prime)
        flushed = time.monotonic()
        for char_id in sample_by_options(session, model, options, vocab, options.sample_length,
                                         np.random.default_rng(options.seed)):
            sys.stdout.write(vocab[char_id])
            written += 1
            if stop.signum:
                break
            if time.monotonic() - flushed > 0.1:  # show the sample as it comes
                sys.stdout.flush()
                flushed = time.monotonic()
    sys.stdout.write("\n")
    if stop.signum:
        return signal_exit(stop.signum, lambda name: f"stopped by {name} after {written} of "
                                                     f"{options.sample_length} characters")
    return 0


# Beyond the post: the report and the console ----------------------------------------------

class Report:
    """What a report adds to the post's three lines, and the console around the loop: the
    report line's epoch and speed; after the plot, the history, a checkpoint and TensorBoard;
    the held-out score, computed in a second thread while training goes on; between reports,
    the progress bar and stop requests; the closing lines.
    """

    def __init__(self, options, files, info, progress, val_ids, it_per_epoch):
        self.options, self.files, self.info, self.progress = options, files, info, progress
        self.vocab, self.val_ids, self.it_per_epoch = info["vocabulary"], val_ids, it_per_epoch
        # Whether reports score only the first part of the held-out text, and the end all of it.
        self.sliced = len(val_ids) > VAL_SLICE_CHARS
        self.val_slice = held_out_tracks(val_ids[:VAL_SLICE_CHARS]) if len(val_ids) else None
        self.val_label = f"val[:{VAL_SLICE_CHARS}]" if self.sliced else "val"
        self.val_legend = f"validation loss ({self.val_label}, held-out text)"
        self.val_loss_all = None
        # The report whose score is being computed beside training, and its Future.
        self.scoring = None
        self.cost = EvaluationCost()

    def announce(self, text_length, train_length):
        """Say what the run trains on, and where it writes."""
        scored = (f" (the first {VAL_SLICE_CHARS:,} scored at each report, all at the end)"
                  if self.sliced else "")
        print(f"{aux_funcs.display_path(self.options.text_file)}: {text_length:,} characters, "
              f"{len(self.vocab)} distinct; training on {train_length:,}, holding out "
              f"{len(self.val_ids):,}{scored}")
        if self.options.bf16 and not bfloat16_applies(self.options):
            print("--bf16 left off: no AVX512-BF16 or AMX-BF16 on this processor, and "
                  "emulated bfloat16 trains slower than float32")
        print(f"writing checkpoints to {self.files.save_dir}, the plot and history to "
              f"{self.files.plot_path} and {self.files.history_path}", flush=True)

    @contextlib.contextmanager
    def running(self, tf, model):
        """While the block trains `model`: signals turned into stop requests, a thread for
        held-out scores (finished before the block ends), TensorBoard written to, and the
        time kept."""
        self.model, self.bar = model, aux_funcs.ProgressBar(sys.stdout)
        self.first_iteration = self.last_report = self.progress.iteration
        self.started_at = self.last_report_at = self.step_started = time.perf_counter()
        self.step_beside = False
        self.summaries = Summaries(tf, self.options.logdir, model.graph)
        try:
            with aux_funcs.StopRequest() as self.stop, \
                    concurrent.futures.ThreadPoolExecutor(1) as self.scorer:
                yield self
        finally:
            self.summaries.close()
            self.elapsed = time.perf_counter() - self.started_at

    def stop_requested(self):
        return self.stop.signum is not None

    def out_of_time(self):
        """Whether the run has trained for --minutes."""
        return (self.options.minutes is not None
                and time.perf_counter() - self.started_at >= 60 * self.options.minutes)

    def measure(self, session, last):
        """The report line's fields after the post's: the epoch and the speed since the last
        report. Except at the last report, the held-out score of the weights as they are is
        started in the second thread, beside the report's sample and plot and the steps after
        them; its line follows when it is ready."""
        progress, options = self.progress, self.options
        done, now = progress.iteration, time.perf_counter()
        self.bar.clear()
        self.cost.interval_done()
        fields = {"epoch": done / self.it_per_epoch}
        if self.val_slice is not None:
            self.take_score(wait=True)  # the last report's, with --sample-every so small
            if not last:
                session.run(self.model.evaluation.copy)
                self.scoring = done, self.scorer.submit(evaluate_copy, session,
                                                        self.model.evaluation, self.val_slice)
        if done > self.last_report:
            rate = (done - self.last_report) / (now - self.last_report_at)
            elapsed = now - self.started_at
            left = (options.iterations - done) * elapsed / (done - self.first_iteration)
            if options.minutes is not None:
                left = max(0.0, min(left, 60 * options.minutes - elapsed))
            fields.update(rate=rate, elapsed=elapsed, left=left,
                          chars_per_second=rate * options.seq_length * options.batch_size)
        # The report's own work starts here: a wait for the last score is counted as waited.
        self.report_started = time.perf_counter()
        return fields

    def take_score(self, wait):
        """Say the report's held-out score and keep it (with the best so far), if the second
        thread has it, or with `wait` once it has."""
        if self.scoring is None or not (wait or self.scoring[1].done()):
            return
        (done, future), self.scoring = self.scoring, None
        start = time.perf_counter()
        val_loss = future.result()
        self.cost.waited += time.perf_counter() - start
        self.keep_score(done, val_loss)

    def keep_score(self, done, val_loss):
        """A held-out score of the weights after `done` iterations: said, kept with the best
        so far and in TensorBoard; one that is not finite stops the run."""
        progress = self.progress
        if not math.isfinite(val_loss):
            raise Diverged("validation loss", val_loss, done)
        progress.val_points.append((done, val_loss))
        best = progress.best is None or val_loss < progress.best[1]
        if best:
            progress.best = [done, val_loss]
        self.summaries.scalars(done, val_loss=val_loss)
        self.bar.clear()
        print(aux_funcs.held_out_line(done, self.val_label, val_loss,
                                      None if best else progress.best), flush=True)

    def score_now(self, session, val_tracks):
        """The held-out loss of the weights as they are, waited for."""
        start = time.perf_counter()
        val_loss = evaluate(session, self.model.evaluation, val_tracks)
        self.cost.waited += time.perf_counter() - start
        return val_loss

    def catch_up(self, session):
        """Score a resumed checkpoint that was saved before its report's score came (the run
        was killed at once), so that its history and best are as a run straight on has them."""
        points = self.progress.val_points
        if self.val_slice is not None and (not points or points[-1][0] < self.progress.iteration):
            self.keep_score(self.progress.iteration, self.score_now(session, self.val_slice))

    def keep(self, session, last):
        """After the post's three lines: the history, a checkpoint, TensorBoard written out.
        At the last report, its held-out score is computed now and drawn too, and a finished
        run's whole held-out text is scored once."""
        progress = self.progress
        self.cost.report_work(time.perf_counter() - self.report_started, alone=last)
        if last and self.val_slice is not None:
            self.keep_score(progress.iteration, self.score_now(session, self.val_slice))
            aux_funcs.plot(progress.loss_hist, progress.smooth_loss_hist, progress.iteration,
                           self.it_per_epoch, self.files.name, self.options.plots_dir,
                           progress.val_points, self.val_legend)
        aux_funcs.write_history(self.files.history_path, progress.loss_hist,
                                progress.smooth_loss_hist, progress.val_points)
        save_checkpoint(session, self.model.saver, self.files.save_dir, progress, self.info)
        self.summaries.flush()
        if last and not self.sliced and progress.val_points:
            self.val_loss_all = progress.val_points[-1][1]  # the report scored all of it
        elif last and self.sliced and not self.stop_requested():
            self.val_loss_all = self.score_now(session, held_out_tracks(self.val_ids))
            if not math.isfinite(self.val_loss_all):
                raise Diverged("validation loss", self.val_loss_all, progress.iteration)
        self.take_score(wait=False)
        self.last_report, self.last_report_at = progress.iteration, time.perf_counter()
        self.step_started, self.step_beside = self.last_report_at, self.scoring is not None

    def after_step(self):
        """Check the step's loss, log it, say a held-out score that has come, move the bar."""
        progress, every = self.progress, self.options.sample_every
        loss = progress.loss_hist[-1]
        if not math.isfinite(loss):
            self.bar.clear()
            raise Diverged("loss", loss, progress.iteration - 1)
        self.summaries.scalars(progress.iteration, loss=loss,
                               smoothed_loss=progress.smooth_loss_hist[-1])
        now = time.perf_counter()
        self.cost.step(now - self.step_started, self.step_beside)
        self.take_score(wait=False)
        self.bar.update(progress.iteration % every, every)
        self.step_started, self.step_beside = time.perf_counter(), self.scoring is not None

    def close(self):
        """The closing lines; the exit code."""
        progress, files = self.progress, self.files
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
            seconds, slowed = self.cost.seconds(), self.cost.slowed()
            print(f"{whole}at the best report ({progress.best[0]}), {self.val_label} "
                  f"{progress.best[1]:.4f} nats; evaluating took {seconds:.1f}s "
                  f"({100 * seconds / self.elapsed:.1f}% of the time), of which {slowed:.1f}s "
                  "was training slowed by the reports' scores beside it")
        print(f"loss plot: {files.plot_path}, history: {files.history_path}")
        checkpoint = aux_funcs.checkpoint_prefix(files.save_dir, progress.iteration)
        best = progress.best and aux_funcs.checkpoint_prefix(files.save_dir, progress.best[0])
        print(f"checkpoint: {checkpoint}" + (f", best: {best}" if best else ""), flush=True)
        go_on = f"python tf-lstm-char.py --resume --save-dir {files.save_dir}"
        if not self.stop_requested():
            if progress.iteration < self.options.iterations:
                print(f"stopped after --minutes {self.options.minutes:g} at iteration "
                      f"{progress.iteration}; go on with: {go_on}", flush=True)
            return 0
        if progress.iteration >= self.options.iterations:
            # It came while the whole held-out text was scored, after the last step.
            return signal_exit(self.stop.signum, lambda name: (
                f"{name} came after the last iteration; the run is complete, there is "
                "nothing to resume"))
        return signal_exit(self.stop.signum, lambda name: (
            f"stopped by {name} at iteration {progress.iteration}; go on with: {go_on}"))


class EvaluationCost:
    """What held-out evaluation adds to a run's time: the seconds it stood still for scores,
    and an estimate of how much the reports' scores, computed in a second thread, slowed what
    ran beside them: each report's sample and plot, against the last report's, which runs
    with nothing beside it; and each step taken beside a score, against the median step of
    its interval taken without."""

    def __init__(self):
        self.waited = 0.0
        self.work_beside, self.work_alone = [], None
        self.slowed_steps, self.step_times = 0.0, ([], [])  # this interval's: without, beside
        self.usual_step = None

    def report_work(self, seconds, alone):
        if alone:
            self.work_alone = seconds
        else:
            self.work_beside.append(seconds)

    def step(self, seconds, beside):
        self.step_times[beside].append(seconds)

    def interval_done(self):
        without, beside = self.step_times
        if without:
            self.usual_step = statistics.median(without)
        if beside and self.usual_step is not None:
            self.slowed_steps += sum(beside) - self.usual_step * len(beside)
        self.step_times = ([], [])

    def slowed(self):
        work = 0.0
        if self.work_alone is not None:
            work = sum(seconds - self.work_alone for seconds in self.work_beside)
        return max(0.0, work + self.slowed_steps)

    def seconds(self):
        return self.waited + self.slowed()


class Diverged(UserError):
    """The loss stopped being a finite number."""

    def __init__(self, what, value, it):
        super().__init__(f"the {what} became {value} at iteration {it}: training diverged, so "
                         "this state was not saved and the last checkpoint is kept; try a "
                         "lower --learning-rate")


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


def signal_exit(signum, message):
    """Say on stderr what the stop signal `signum` ended, in message(its name); return the
    exit code a shell gives a program that signal ended."""
    print(f"tf-lstm-char.py: {message(signal.Signals(signum).name)}", file=sys.stderr)
    return 128 + signum


# Beyond the post: the options and their flags ---------------------------------------------

# What an option is to a checkpoint, declared once beside its default. MODEL options shape
# the weights: a checkpoint restores only into a graph built with the same ones, so --resume
# refuses others and --sample takes them from it. The SPLIT decides which text is trained on,
# so --resume keeps it. CARRIED options are stored, and --resume carries them on unless they
# are typed again (--dropout is one: it adds to the graph but no weights). The others belong
# to one command. A checkpoint written before an option existed gets the option's default.
MODEL, SPLIT, CARRIED = "model", "split", "carried"


def option(default, role=None, metavar=None, check=None, choices=None):
    """An Options field: its default, its role for checkpoints, and how its flag reads a
    value where the field's type does not say (flag_reading)."""
    return field(default=default, metadata={"role": role, "metavar": metavar, "check": check,
                                            "choices": choices})


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


# The longest passage --visualize shows. The page reads it in the browser, and the page's size
# no longer grows with it (6.7 MB for one layer of 500, mostly the weights): in headless
# Chromium on README's machine, 1,000 characters opened and were drawn in 0.4 s, 20,000 in
# 4.7 s, with the count read shown meanwhile.
PASSAGE_LIMIT = 20_000


def passage_length(value):
    number = positive_int(value)
    if number > PASSAGE_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be at most {PASSAGE_LIMIT:,}, got {value}: the page reads {PASSAGE_LIMIT:,} "
            "characters in about 5 s, as long as a reader should wait")
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


# argparse names the check in its message ("invalid positive_int value"), so give each one a
# name a user can read.
positive_int.__name__ = "positive integer"
non_negative_int.__name__ = "non-negative integer"
positive_float.__name__ = "positive number"
fraction_up_to_half.__name__ = "fraction"
dropout_probability.__name__ = "probability"


@dataclass(frozen=True)
class Options:
    """The hyperparameters and the rest of the options: one value per command, made once
    from the flags and a checkpoint's stored options (resolve_options), never changed."""
    text_file: str = option(DEFAULT_TEXT, CARRIED, "TEXT_FILE")
    encoding: str = option("utf-8", CARRIED, "NAME")
    val_fraction: float = option(0.1, SPLIT, check=fraction_up_to_half)
    hidden_dim: int = option(500, MODEL)
    num_layers: int = option(1, MODEL)
    dropout: float = option(0.0, CARRIED, "P", dropout_probability)
    iterations: int = option(4001, CARRIED)
    minutes: float = option(None, metavar="M")
    seq_length: int = option(100, CARRIED)
    batch_size: int = option(1, MODEL)
    learning_rate: float = option(1e-2, CARRIED)
    optimizer: str = option("adam", MODEL, choices=("adam", "sgd"))
    clip: float = option(None, CARRIED)
    sample: bool = option(False)
    sample_every: int = option(100, CARRIED)
    sample_length: int = option(600, CARRIED)
    temperature: float = option(1.0, CARRIED, "T")
    prime: str = option("", CARRIED, "TEXT")
    argmax: bool = option(False, CARRIED)
    sampler: str = option("graph", CARRIED, choices=("graph", "feed"))
    best: bool = option(False)
    seed: int = option(None, CARRIED, check=non_negative_int)
    gradient: str = option("written", CARRIED, choices=("written", "tensorflow"))
    bf16: bool = option(False, CARRIED)
    plots_dir: str = option("plots", CARRIED, "DIR")
    save_dir: str = option(None, metavar="DIR")
    checkpoint: str = option(None, metavar="PREFIX")
    resume: bool = option(False)
    logdir: str = option(None, CARRIED, "DIR")
    visualize: bool = option(False)
    passage_file: str = option(None, metavar="FILE")
    passage_start: int = option(0, check=non_negative_int)
    passage_length: int = option(1000, check=passage_length)
    export: str = option(None, metavar="DIR")


# --help's groups of flags, in order, with one line of help for each option.
FLAG_HELP = {
    "data": {
        "text_file": "text to train on (default: data/shakespeare.txt, or with --resume the "
                     "checkpoint's text)",
        "encoding": "encoding of TEXT_FILE (default: %(default)s)",
        "val_fraction": "hold out the last F of the text to measure how well the model writes "
                        "text it never trained on; 0 trains on all of it, as the original "
                        "does (default: %(default)s)",
    },
    "model": {
        "hidden_dim": "size of the LSTM state, in each layer (default: %(default)s)",
        "num_layers": "LSTM layers stacked, each reading the outputs of the one below; 1 is "
                      "the original (default: %(default)s)",
        "dropout": "while training, drop each layer's outputs with probability P, against "
                   "memorising a small text; 0 is the original, and it may change on --resume "
                   "(default: %(default)s)",
    },
    "optimization": {
        "iterations": "training iterations in all, counting those of a resumed run; the "
                      "upstream repository later used 501 for quick tries (default: "
                      "%(default)s)",
        "minutes": "stop training after M minutes and close the run as at --iterations, "
                   "whichever comes first; the same command then fits any processor "
                   "(default: no limit)",
        "seq_length": "characters per training window (default: %(default)s)",
        "batch_size": "streams trained side by side: the text is cut into this many tracks, "
                      "each read in order with its own LSTM state; 1 is the original "
                      "(default: %(default)s)",
        "learning_rate": "optimizer step size (default: %(default)s)",
        "optimizer": "Adam, or the plain gradient descent that the upstream script keeps "
                     "commented out (default: %(default)s)",
        "clip": "scale the gradients down to a global norm of at most F (default: no "
                "clipping, as the original)",
    },
    "sampling": {
        "sample": "do not train: print text drawn from the latest checkpoint in --save-dir, "
                  "and nothing else",
        "sample_every": "iterations between reports: loss line, sample, plot update and "
                        "checkpoint (default: %(default)s)",
        "sample_length": "characters per sample (default: %(default)s)",
        "temperature": "divide the logits by T before drawing: below 1 is bolder about likely "
                       "characters, above 1 wilder (default: %(default)s)",
        "prime": "run TEXT through the network first and continue from it (default: one "
                 "random character)",
        "argmax": "always take the most likely character instead of drawing",
        "sampler": "draw in the graph, a tf.while_loop per 1,000 characters, or with the "
                   "post's sample(), a session.run per character (default: %(default)s)",
        "best": "with --sample or --visualize, use the checkpoint with the lowest validation "
                "loss instead of the latest",
        "seed": "random seed; give one to make a run or a sample repeatable (default: a new "
                "one each run)",
    },
    "speed (see the Performance section of README.md)": {
        "gradient": "train through each layer's backward pass written out for the window, "
                    "or through the gradient TensorFlow derives from dynamic_rnn's loop: the "
                    "same numbers, and the written one faster (default: %(default)s)",
        "bf16": "run the LSTM in bfloat16: its products, gates and state, forward and "
                "backward (the weights and the optimizer stay float32; the numbers differ "
                "slightly); left off on processors without AVX512-BF16 or AMX-BF16, and "
                "faster only on some with them, see README.md",
    },
    "bookkeeping": {
        "plots_dir": "folder for the loss plot PNG and the history CSV, named after the run's "
                     "folder (default: %(default)s)",
        "save_dir": "folder for checkpoints (default: a new checkpoints/<text name>, <text "
                    "name>-2, ... for each run; with --resume or --sample the text's run "
                    "written last)",
        "checkpoint": "with --sample, --visualize or --resume, read this checkpoint, e.g. "
                      "checkpoints/shakespeare/ckpt-3400; a resumed run goes on in a new run "
                      "folder",
        "resume": "go on training from the latest checkpoint in --save-dir",
        "logdir": "also write TensorBoard event files (graph, losses) to DIR (default: none)",
    },
    "looking inside": {
        "visualize": "do not train: find the cells of the latest checkpoint in --save-dir that "
                     "track features of the text, draw them with the network's surprise and "
                     "its gates as <plots-dir>/<run>_cells.png, and write <run>_cells.html, a "
                     "page that runs the network on any passage typed into it",
        "passage_file": "with --visualize, show a passage of FILE (default: of the "
                        "checkpoint's held-out text)",
        "passage_start": "with --visualize, the passage's first character (default: "
                         "%(default)s)",
        "passage_length": "with --visualize, characters in the passage, at most "
                          f"{PASSAGE_LIMIT:,}, which the page reads in about 5 s "
                          "(default: %(default)s)",
    },
    "the model elsewhere": {
        "export": "do not train: write the latest checkpoint in --save-dir as a TensorFlow "
                  "SavedModel into DIR/1 (then DIR/2, ...), which any TensorFlow program and "
                  "TensorFlow Serving load, to write text and score it",
    },
}


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr rather than usage plus error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    """The flags, grouped, each with one line of help; their defaults are Options'."""
    parser = OneLineArgumentParser(
        prog="tf-lstm-char.py",
        description="Train a character-level LSTM on a text file, printing samples as it "
                    "learns and saving a plot of the loss and checkpoints; or, with "
                    "--sample, write text from a saved checkpoint.")
    options = {option.name: option for option in fields(Options)}
    for title, helps in FLAG_HELP.items():
        group = parser.add_argument_group(title)
        for name, help_text in helps.items():
            group.add_argument(*flag_names(options[name]), help=help_text,
                               **flag_reading(options[name]))
    return parser


def flag_names(option):
    """TEXT_FILE is given by place; every other option by its flag, --name-with-dashes."""
    return [option.name] if option.name == "text_file" else ["--" + option.name.replace("_", "-")]


def flag_reading(option):
    """How argparse reads the option's value: a switch for a bool; else its choices, or a
    check (by default, a positive number of the field's type), and a metavar."""
    meta = option.metadata
    if option.type is bool:
        return {"action": "store_true", "default": option.default}
    if option.name == "text_file":
        # SUPPRESS: argparse would otherwise set a missing positional to its default, as if
        # typed.
        return {"metavar": meta["metavar"], "nargs": "?", "default": argparse.SUPPRESS}
    if meta["choices"]:
        return {"choices": meta["choices"], "default": option.default}
    check = meta["check"] or {int: positive_int, float: positive_float}.get(option.type)
    metavar = meta["metavar"] or {int: "N", float: "F"}[option.type]
    return {"type": check, "metavar": metavar, "default": option.default}


# What --export reads: which checkpoint to export, and where to.
EXPORT_TAKES = ("export", "text_file", "save_dir", "checkpoint", "best")


def check_flags_together(parser, typed):
    """Refuse flags that do not go together."""
    modes = [f"--{mode}" for mode in ("sample", "visualize", "resume", "export")
             if typed.get(mode)]
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)} do not go together: sample from a checkpoint, "
                     "look inside it, go on training it, or export it")
    if typed.get("best") and not (typed.get("sample") or typed.get("visualize")
                                  or typed.get("export")):
        parser.error("--best goes with --sample, --visualize or --export")
    if typed.get("checkpoint") and not modes:
        parser.error("--checkpoint goes with --sample, --visualize, --resume or --export")
    if typed.get("export"):
        # What a call of the exported model is given (prime, length, temperature, seed) and
        # what shapes a run (training, sampling, plots) would be taken for settings of the
        # export, and silently do nothing.
        ignored = [name for name in typed if name not in EXPORT_TAKES]
        if ignored:
            parser.error(f"--{ignored[0].replace('_', '-')} does not go with "
                         "--export, which takes only TEXT_FILE, --save-dir, --checkpoint and "
                         "--best: the prime, length, temperature and seed are given to the "
                         "exported model at each call")
    for other in ("best", "save_dir"):
        if typed.get("checkpoint") and typed.get(other):
            parser.error(f"--checkpoint and --{other.replace('_', '-')} do not go together: "
                         "--checkpoint names the checkpoint to read")
    passage = [name for name in ("passage_file", "passage_start", "passage_length")
               if name in typed]
    if passage and not typed.get("visualize"):
        parser.error(f"--{passage[0].replace('_', '-')} goes with --visualize")


def resolve_options(typed, saved, roles, in_its_folder=True):
    """The one Options of a command: the options typed; for the others, a checkpoint's
    stored ones of the given roles (and its folder as --save-dir, unless a resumed run goes
    on elsewhere); for the rest, the defaults. A typed MODEL or SPLIT option that differs
    from the checkpoint's is refused."""
    values = {"save_dir": os.path.dirname(saved.prefix)} if saved and in_its_folder else {}
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


# Beyond the post: TensorFlow's quiet start ------------------------------------------------

def bfloat16_applies(options):
    """Whether --bf16 takes effect: only on a processor that multiplies bfloat16 natively.
    Elsewhere TensorFlow emulates it, slower than float32 (README's Performance), so the LSTM
    stays float32 there and the run says so."""
    return options.bf16 and bool(aux_funcs.bfloat16_instruction_sets())


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


def import_tensorflow(options=Options()):
    """Import TensorFlow with the tf-keras RNN cells and without its start-up noise.

    Everything here is read once, when TensorFlow is first imported in the process.
    """
    # With Keras 3, tf.compat.v1.nn.rnn_cell.LSTMCell is gone; this brings it back from
    # tf-keras.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's kernels are TensorFlow's default only on some processors, and the largest
    # single speed-up tests/benchmark.py measures: ask for them everywhere.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
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


def session_config(tf, options):
    """Session options that run the same graph faster (see the Performance section)."""
    config = tf.compat.v1.ConfigProto()
    config.session_inter_op_thread_pool.add().num_threads = 0  # TensorFlow's default size
    config.session_inter_op_thread_pool.add().num_threads = 1  # SAMPLER_POOL
    if bfloat16_applies(options):
        # Grappler's rewrite runs the LSTM in bfloat16 (products, gates and state, forward
        # and backward); the variables and Adam stay float32.
        rewrites = config.graph_options.rewrite_options
        rewrites.auto_mixed_precision_onednn_bfloat16 = type(rewrites).ON
    return config


@contextlib.contextmanager
def open_session(tf, model, options):
    """A tf.compat.v1.Session of the model's graph, configured by session_config; TensorFlow
    running out of memory in it is said in one line."""
    try:
        with tf.compat.v1.Session(graph=model.graph,
                                  config=session_config(tf, options)) as session:
            yield session
    except tf.errors.ResourceExhaustedError as exc:
        raise UserError(f"out of memory ({error_summary(exc)}); lower "
                        f"{flags_to_lower(options)}") from None


@contextlib.contextmanager
def building_quietly(graph):
    """Add to `graph`, without warnings: the graph API this program teaches is deprecated as
    a whole, and saying so at every call would bury what it prints."""
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


# Beyond the post: a look inside -----------------------------------------------------------

Inside = namedtuple("Inside", "ids init_state cells gates probabilities final_state")


def add_look_inside(tf, model):
    """The post's cell run over text step by step, rebuilt from each layer's own kernel and
    bias, so that what dynamic_rnn keeps to itself shows: in LSTMCell's order (i, j, f, o,
    with its forget bias), each layer's forget, input and output gates and its c, and the
    probabilities of the next character. Any number of tracks side by side, time-major; the
    cells come out [steps, tracks, layers, hidden] and the gates [steps, tracks, 3, layers,
    hidden]."""
    tf1 = tf.compat.v1
    vocab_size = model.x.shape[2]
    ids = tf1.placeholder(tf.int32, [None, None], name="inside_ids")
    init_state = tf1.placeholder(tf.float32, state_shape_for_streams(model.init_state, None),
                                 name="inside_init_state")
    by_layer = init_state if init_state.shape.rank == 4 else init_state[tf.newaxis]
    weights = [(layer.variables[0], layer.variables[1], layer._forget_bias)
               for layer in model.layers]

    def step(carried, char_ids):
        c_before, h_before, _ = carried
        inputs, cs, hs, gates = tf.one_hot(char_ids, vocab_size), [], [], []
        for layer, (kernel, bias, forget_bias) in enumerate(weights):
            i, j, f, o = tf.split(tf.matmul(tf.concat([inputs, h_before[layer]], 1), kernel)
                                  + bias, 4, axis=1)
            forget, input_, output = tf.sigmoid(f + forget_bias), tf.sigmoid(i), tf.sigmoid(o)
            cs.append(forget * c_before[layer] + input_ * tf.tanh(j))
            hs.append(output * tf.tanh(cs[-1]))
            gates.append(tf.stack([forget, input_, output]))
            inputs = hs[-1]
        return tf.stack(cs), tf.stack(hs), tf.stack(gates)

    no_gates = tf.zeros_like(tf.stack([by_layer[:, 0]] * 3, axis=1))
    c, h, gates = tf.scan(step, ids, initializer=(by_layer[:, 0], by_layer[:, 1], no_gates))
    logits = output_layer(tf, h[:, -1], model.out_w, model.out_b)
    final = tf.reshape(tf.stack([c[-1], h[-1]], axis=1), tf.shape(init_state))
    return Inside(ids, init_state, tf.transpose(c, [0, 2, 1, 3], name="inside_cells"),
                  tf.transpose(gates, [0, 3, 2, 1, 4], name="inside_gates"),
                  tf.reshape(tf.nn.softmax(logits), [tf.shape(ids)[0], -1, vocab_size],
                             name="inside_probabilities"),
                  tf.identity(final, name="inside_final_state"))


# Steps read per session.run: the gates of 64 tracks of a layer of 500 take 77 MB a window.
INSIDE_WINDOW = 200


def read_inside(session, inside, tracks):
    """Run the look inside over tracks of ids (time-major, one per column), each from a zero
    state, INSIDE_WINDOW steps at a time: yields each window's (cells, gates,
    probabilities)."""
    state = np.zeros(state_shape_for_streams(inside.init_state, tracks.shape[1]), np.float32)
    for start in range(0, len(tracks), INSIDE_WINDOW):
        *seen, state = session.run(
            [inside.cells, inside.gates, inside.probabilities, inside.final_state],
            {inside.ids: tracks[start:start + INSIDE_WINDOW], inside.init_state: state})
        yield seen


def visualize_command(typed):
    """--visualize: what the cells of the latest (or best) checkpoint track, measured on its
    held-out text and shown on a passage, as a page and a picture beside the run's plot."""
    saved = checkpoint_to_read(typed, typed.get("best", False))
    options = resolve_options(typed, saved, (MODEL, SPLIT, CARRIED))
    vocab = saved.info["vocabulary"]
    scored, scored_what, passage, char_to_idx = texts_to_look_at(options, saved)
    aux_funcs.make_writable_dir(options.plots_dir, "--plots-dir")
    tf = import_tensorflow(options)
    model = add_extras(tf, build_graph(tf, len(vocab), replace(options, batch_size=1)),
                       look_inside=True)
    with open_session(tf, model, options) as session:
        restore_checkpoint(session, model.saver, saved.prefix)
        statistics = cell_statistics(session, model.inside, scored,
                                     aux_funcs.text_to_ids(scored, char_to_idx))
        seen = read_passage(session, model.inside, passage,
                            aux_funcs.text_to_ids(passage, char_to_idx))
        network = network_for_page(session, model, vocab)
    found, ordinary = chosen_cells(statistics, options)
    print_cells(saved.prefix, options, found, len(scored), scored_what)
    page, picture = draw_cells(options, saved.prefix, run_name(os.path.dirname(saved.prefix)),
                               seen, network, statistics, found, ordinary,
                               f"{len(scored):,} {scored_what} characters")
    # What the exported model's score signature gives for the same passage.
    print(f"the passage: {len(passage):,} characters, {np.mean(seen.surprise[1:]):.4f} bits "
          f"of surprise per character after the first\npage: {page} "
          f"({aux_funcs.format_bytes(os.path.getsize(page))}; it runs the network, in any "
          f"browser)\npicture: {picture}")
    return 0


# Characters of held-out text, at most, over which the cells are compared with the features.
CELL_STATS_CHARS = 100_000


def texts_to_look_at(options, saved):
    """The text the cells are measured on (at most CELL_STATS_CHARS of the checkpoint's
    held-out text, or of all of it where none was held out), the words that say which, and
    the passage the page shows, and the ids of the characters; each checked before
    TensorFlow loads."""
    text, char_to_idx, _, _ = aux_funcs.load(options.text_file, options.encoding)
    check_trained_on(options.text_file, aux_funcs.sha256_of_file(options.text_file),
                     "".join(sorted(char_to_idx)), saved)
    held_out = aux_funcs.split_train_val(text, options.val_fraction)[1]
    scored_what = "held-out" if held_out else "trained-on (none was held out)"
    shown = (aux_funcs.load(options.passage_file, options.encoding)[0] if options.passage_file
             else held_out or text)
    passage = shown[options.passage_start:options.passage_start + options.passage_length]
    if not passage:
        raise UserError(f"--passage-start {options.passage_start} is past the end of the "
                        f"passage's text ({len(shown):,} characters)")
    aux_funcs.check_known_characters(passage, saved.info["vocabulary"], "the passage")
    return (held_out or text)[:CELL_STATS_CHARS], scored_what, passage, char_to_idx


Passage = namedtuple("Passage", "text activations surprise")


def read_passage(session, inside, text, ids):
    """The passage `text` (as `ids`) as the network reads it, for the picture and the printed
    mean (the page computes its own): each cell's tanh(c) after each character [chars,
    cells], and the surprise at each character, -log2 p, in bits (NaN for the first, which
    nothing came before)."""
    cells, _, probabilities = (np.concatenate(parts)[:, 0] for parts in zip(
        *read_inside(session, inside, ids[:, np.newaxis])))
    surprise = -np.log2(probabilities[np.arange(len(ids) - 1), ids[1:]])
    return Passage(text, np.tanh(cells.reshape(len(ids), -1)),
                   np.concatenate([[np.nan], surprise]))


def network_for_page(session, model, vocab):
    """What the page needs to run the network itself: the vocabulary, and each layer's
    kernel and bias, then out_w and out_b, as the session holds them."""
    layers = model.layers
    weights = session.run([variable for layer in layers for variable in layer.variables[:2]]
                          + [model.out_w, model.out_b])
    return {"vocab": vocab, "hidden": layers[0].output_size, "weights": weights,
            "forget_bias": layers[0]._forget_bias}


def cell_statistics(session, inside, text, ids):
    """CellStatistics of every cell over `text` (as `ids`), read as tracks side by side."""
    features = np.stack([feature(text) for feature in aux_funcs.FEATURES.values()], axis=1)
    tracks = held_out_tracks(ids)
    count = tracks.shape[1]
    feature_tracks = np.stack([aux_funcs.tracks(features[:, k], count)
                               for k in range(features.shape[1])], axis=-1)
    statistics, done = aux_funcs.CellStatistics(), 0
    for cells, gates, _ in read_inside(session, inside, tracks):
        steps = len(cells)
        statistics.add(np.tanh(cells.reshape(steps * count, -1)),
                       gates.reshape(steps * count, 3, -1),
                       feature_tracks[done:done + steps].reshape(steps * count, -1))
        done += steps
    return statistics


RANDOM_CELLS = 3  # shown beside those found by a feature


def chosen_cells(statistics, options):
    """For each feature that occurs, the cell whose activation correlates best with it, as
    (feature, cell, r); and a few other cells picked at random."""
    r = statistics.correlations()
    best = np.argmax(np.abs(r), axis=1)
    found = [(name, int(best[k]), float(r[k, best[k]]))
             for k, (name, varies) in enumerate(zip(aux_funcs.FEATURES,
                                                    statistics.feature_varies())) if varies]
    others = sorted(set(range(r.shape[1])) - {cell for _, cell, _ in found})
    rng = np.random.default_rng(options.seed)
    return found, sorted(rng.choice(others, min(RANDOM_CELLS, len(others)), replace=False))


def print_cells(prefix, options, found, scored, scored_what):
    """The features' cells, as a table."""
    print(f"{aux_funcs.display_path(prefix)}: {layer_count(options)} of {options.hidden_dim} "
          f"cells, compared over {scored:,} {scored_what} characters")
    print(f"  {'feature':<42} {'layer':>5} {'cell':>5} {'r':>7}")
    for name, cell, r in found:
        layer, index = layer_and_index(cell, options.hidden_dim)
        print(f"  {name:<42} {layer:>5} {index:>5} {r:>+7.3f}")
    for name in aux_funcs.FEATURES:
        if name not in {found_name for found_name, _, _ in found}:
            print(f"  {name:<42} (does not occur in the text)")


def layer_count(options):
    """'1 layer', '2 layers', ...: how deep the model is, in words."""
    return "1 layer" if options.num_layers == 1 else f"{options.num_layers} layers"


def layer_and_index(cell, hidden):
    """Where a cell of the look inside's flat numbering sits: its layer, from 1, and its
    index in the layer."""
    return cell // hidden + 1, cell % hidden


# The picture's excerpt of the passage: lines of at most this many characters, this many.
EXCERPT_WIDTH, EXCERPT_LINES = 80, 4


def draw_cells(options, prefix, name, seen, network, statistics, found, ordinary, scored):
    """The page and the picture of what the cells track, <plots-dir>/<run>_cells.html and
    .png: the Passage `seen`, shaded by surprise and by the cells `found` for each feature
    and a few `ordinary` ones, and each layer's gate saturation. The page holds the
    `network` (network_for_page) and computes its rows itself."""
    hidden = options.hidden_dim
    lines = aux_funcs.excerpt_lines(
        seen.text, aux_funcs.telling_excerpt(seen.text, EXCERPT_LINES, EXCERPT_WIDTH),
        EXCERPT_LINES, EXCERPT_WIDTH)
    excerpt = slice(lines[0][0], lines[-1][1])

    def label(cell):
        return "layer {}, cell {}".format(*layer_and_index(cell, hidden))
    strongest = sorted(found, key=lambda feature: -abs(feature[2]))[:3]
    left, right = statistics.saturation()
    picture = aux_funcs.plot_cells(
        os.path.join(options.plots_dir, f"{name}_cells.png"),
        f"What the cells of {name} track ({os.path.basename(prefix)})",
        [seen.text[begin:end] for begin, end in lines], seen.surprise[excerpt],
        [(f"{feature}: {label(cell)}, r = {r:+.2f}", seen.activations[excerpt, cell])
         for feature, cell, r in strongest],
        [(left[:, k * hidden:(k + 1) * hidden], right[:, k * hidden:(k + 1) * hidden])
         for k in range(options.num_layers)], EXCERPT_WIDTH)
    with open(picture, "rb") as handle:
        png = handle.read()
    source = options.passage_file or f"the held-out part of {options.text_file}"
    page = aux_funcs.write_cells_page(
        os.path.join(options.plots_dir, f"{name}_cells.html"),
        f"What the cells of {name} track", [
            f"Checkpoint {prefix}: {options.num_layers} x {hidden} cells, run by this "
            f"page. It opens on {len(seen.text):,} characters of {source}, from character "
            f"{options.passage_start:,}.",
            "Each cell's row shades the passage by tanh(c), the cell's state squashed to -1 "
            "(blue) ... +1 (red), once the network has read each character; point at one for "
            "its value.",
            "Each feature's cell is the one, in any layer, whose tanh(c) correlates best "
            f"(Pearson r, either sign) with the feature over {scored}."],
        seen.text, network,
        [("Cells found by what they track",
          [(f"{feature}: {label(cell)}, r = {r:+.2f}", *layer_and_index(cell, hidden))
           for feature, cell, r in found]),
         ("Cells picked at random: what an ordinary cell looks like",
          [(label(cell), *layer_and_index(cell, hidden)) for cell in ordinary])], png)
    return page, picture


# Beyond the post: the model, exported ----------------------------------------------------

# The most characters one call of the exported model writes a stream: at a few thousand
# characters a second, about half a minute of a server's time.
EXPORT_MAX_LENGTH = 100_000


def export_command(typed):
    """--export DIR: the latest (or best, or named) checkpoint as a SavedModel in DIR's next
    version folder, DIR/1, DIR/2, ..., the layout TensorFlow Serving reads."""
    saved = checkpoint_to_read(typed, typed.get("best", False))
    options = resolve_options(typed, saved, (MODEL,))
    vocab = saved.info["vocabulary"]
    aux_funcs.make_writable_dir(options.export, "--export")
    print(f"exporting {aux_funcs.display_path(saved.prefix)} ({saved.info['iteration']} "
          f"iterations; {layer_count(options)} of {options.hidden_dim}, {len(vocab)} "
          "characters)", flush=True)
    tf = import_tensorflow(options)
    graph, signatures = export_graph(tf, vocab, options)
    # Built aside, then moved into place whole: a server watching DIR never sees a version
    # half-written, and a failed export leaves nothing behind.
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=options.export) as scratch:
            built = os.path.join(scratch, "model")
            write_saved_model(tf, graph, signatures, saved.prefix, built)
            version = aux_funcs.display_path(aux_funcs.publish_version(options.export, built))
    except (OSError, tf.errors.OpError) as exc:
        reason = getattr(exc, "strerror", None) or error_summary(exc)
        raise UserError(f"could not write the SavedModel into {options.export} ({reason}); "
                        "nothing was left there") from None
    print(f"wrote {version} ({aux_funcs.format_bytes(aux_funcs.folder_size(version))}), "
          "signatures serving_default (writes text) and score (scores it)\n"
          f"load it in Python with: tf.saved_model.load({version!r})")
    return 0


def export_graph(tf, vocab, options):
    """The graph of a SavedModel: the post's cell and output layer with their variables named
    as in training, so that a checkpoint restores into them, and nothing for training (no
    optimizer, no dropout); the vocabulary as constants; and what the two signatures run,
    each from strings of UTF-8, any number B at once:

        serving_default  prime [B], length, temperature, seed  ->  text [B]
            Each prime read from a zero state (an empty one: a character at random, as the
            post's sample() starts), then `length` characters written after it by the
            sampler's loop, the B streams side by side; at `temperature` 0, the likeliest
            each time. The same seed writes the same text.
        score            text [B]  ->  bits_per_char [B], chars_scored [B]
            The mean surprise, -log2 p, at each character of a text after its first, read
            from a zero state, as --visualize computes it (NaN with nothing to score).

    Bad input fails the call with an InvalidArgumentError that says what is wrong. Returns
    the graph and {name: SignatureDef}."""
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with building_quietly(graph):
        layers = [tf1.nn.rnn_cell.LSTMCell(options.hidden_dim)
                  for _ in range(options.num_layers)]
        cell = layers[0] if options.num_layers == 1 else tf1.nn.rnn_cell.MultiRNNCell(layers)
        out_w = tf1.get_variable("out_w", shape=[options.hidden_dim, len(vocab)])
        out_b = tf1.get_variable("out_b", shape=[len(vocab)])
        with tf.name_scope("generate"):
            generate = export_generation(tf, cell, out_w, out_b, vocab)
        with tf.name_scope("score"):
            score = export_scoring(tf, cell, out_w, out_b, vocab)
        signature = tf1.saved_model.signature_def_utils.predict_signature_def
        return graph, {"serving_default": signature(*generate), "score": signature(*score)}


def export_generation(tf, cell, out_w, out_b, vocab):
    """serving_default's inputs and outputs (export_graph)."""
    tf1 = tf.compat.v1
    prime = tf1.placeholder(tf.string, [None], name="prime")
    length = tf1.placeholder(tf.int32, [], name="length")
    temperature = tf1.placeholder(tf.float32, [], name="temperature")
    seed = tf1.placeholder(tf.int64, [], name="seed")
    checks = [
        tf.debugging.Assert(
            (length >= 1) & (length <= EXPORT_MAX_LENGTH),
            [f"length must be from 1 to {EXPORT_MAX_LENGTH:,}, got", length]),
        tf.debugging.Assert(
            (temperature >= 0) & tf.math.is_finite(temperature),
            ["temperature must be 0 (the likeliest character each time) or a positive "
             "finite number, got", temperature])]
    ids, lengths = ids_of_strings(tf, prime, vocab, "the prime")
    streams = tf.shape(prime)[0]
    # An empty prime starts, as the post's sample() does, from one character at random.
    at_random = tf.random.stateless_uniform([streams], tf.stack([seed, -1]), 0, len(vocab),
                                            dtype=tf.int32)
    first = tf.where(lengths > 0, ids[:, 0], at_random)
    ids = tf.concat([first[:, tf.newaxis], ids[:, 1:]], 1)
    _, state = tf1.nn.dynamic_rnn(
        cell, tf.one_hot(tf.transpose(ids), len(vocab)), sequence_length=tf.maximum(lengths, 1),
        initial_state=cell.zero_state(streams, tf.float32), time_major=True, scope="rnn")
    greedy = tf.equal(temperature, 0)
    divisor = tf.where(greedy, 1.0, temperature)

    def choose(step, scores):
        # Less the largest score, so that a tiny temperature divides nothing into infinity.
        scaled = (scores - tf.reduce_max(scores, 1, keepdims=True)) / divisor
        drawn = tf.random.stateless_categorical(scaled, 1, tf.stack([seed, tf.cast(step,
                                                                                  tf.int64)]),
                                                dtype=tf.int32)[:, 0]
        return tf.where(greedy, tf.argmax(scores, 1, output_type=tf.int32), drawn)

    with tf.control_dependencies(checks):
        checked_length = tf.identity(length)
    drawn, _ = draw_loop(tf, cell, out_w, out_b, state, checked_length, choose)
    text = tf.identity(tf.strings.unicode_encode(tf.gather(code_points(vocab),
                                                           tf.transpose(drawn)), "UTF-8"),
                       name="text")
    return ({"prime": prime, "length": length, "temperature": temperature, "seed": seed},
            {"text": text})


def export_scoring(tf, cell, out_w, out_b, vocab):
    """score's inputs and outputs (export_graph)."""
    text = tf.compat.v1.placeholder(tf.string, [None], name="text")
    ids, lengths = ids_of_strings(tf, text, vocab, "the text")
    ids = tf.transpose(ids)
    streams = tf.shape(text)[0]

    def read_one(t, state, nats):
        _, state = cell(tf.one_hot(ids[t], len(vocab)), state)
        log_p = tf.nn.log_softmax(output_layer(tf, top_output(state), out_w, out_b))
        surprise = -tf.gather(log_p, ids[t + 1], batch_dims=1)
        scored = tf.cast(surprise, tf.float64) * tf.cast(t + 1 < lengths, tf.float64)
        return t + 1, state, nats + scored

    # Step by step, keeping only the state and the sums: a whole book scores in little memory.
    _, _, nats = tf.while_loop(
        lambda t, *rest: t < tf.shape(ids)[0] - 1, read_one,
        [tf.constant(0), cell.zero_state(streams, tf.float32), tf.zeros([streams], tf.float64)])
    chars_scored = tf.maximum(lengths - 1, 0, name="chars_scored")
    bits = tf.cast(nats / tf.cast(chars_scored, tf.float64) / math.log(2), tf.float32,
                   name="bits_per_char")
    return {"text": text}, {"bits_per_char": bits, "chars_scored": chars_scored}


def code_points(vocab):
    return np.array([ord(ch) for ch in vocab], np.int32)


def ids_of_strings(tf, strings, vocab, what):
    """Strings of UTF-8 as the ids of their characters, padded with 0 to the longest (and to
    one character at least), [B, longest], and their lengths in characters [B]. A character
    not in `vocab` fails the run with an InvalidArgumentError that names it."""
    points = tf.strings.unicode_decode(strings, "UTF-8", errors="strict")
    flat = points.flat_values
    order = np.argsort(code_points(vocab))
    in_order = code_points(vocab)[order]
    position = tf.minimum(tf.searchsorted(in_order, flat), len(vocab) - 1)
    known = tf.equal(tf.gather(in_order, position), flat)
    # Each once, in the order they come; the message shows them between brackets.
    unknown, _ = tf.unique(tf.boolean_mask(flat, ~known))
    check = tf.debugging.Assert(tf.reduce_all(known),
                                [f"{what} has characters the model does not know:",
                                 tf.strings.unicode_encode(unknown, "UTF-8")])
    with tf.control_dependencies([check]):
        ids = points.with_flat_values(tf.gather(order.astype(np.int32), position))
        lengths = tf.cast(points.row_lengths(), tf.int32)
        width = tf.reduce_max(tf.concat([lengths, [1]], 0))
        return ids.to_tensor(shape=tf.stack([tf.shape(strings)[0], width])), lengths


def write_saved_model(tf, graph, signatures, prefix, folder):
    """Restore the checkpoint `prefix` into `graph` (export_graph's) and write it, with its
    signatures, as a SavedModel in `folder` (which must not exist), tagged "serve"."""
    tf1 = tf.compat.v1
    with tf1.Session(graph=graph) as session:
        restore_checkpoint(session, tf1.train.Saver(graph.get_collection("variables")), prefix)
        builder = tf1.saved_model.Builder(folder)
        builder.add_meta_graph_and_variables(session, [tf1.saved_model.tag_constants.SERVING],
                                             signature_def_map=signatures,
                                             strip_default_attrs=True)
        builder.save()


def command(argv=None):
    """main as the command line runs it: what stops it is said in one line on stderr, and the
    result is the exit code."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"tf-lstm-char.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tf-lstm-char.py: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (as `| head` does); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(command())
