"""The backward pass written out (window_backward) against TensorFlow's own gradient of the
post's graph: the same numbers, at batch 1 and more, two layers with dropout, from a state
that is not zero; the same training; LSTMCell's gate order and forget bias as assumed."""
import math

import numpy as np
import pytest

import aux_funcs
from conftest import HIDDEN, VOCAB, load_weights, run_in_process, weights_of

STEPS = 12


def training_graph(lstm, tf, gradient, **options):
    """The program's training graph, open to additions: its Model and the tensors to
    differentiate (the LSTM's and output layer's weights, and init_state)."""
    model = lstm.build_graph(tf, VOCAB, lstm.Options(hidden_dim=HIDDEN, gradient=gradient,
                                                     seed=5, **options))
    with model.graph.as_default():
        wrt = sorted(model.graph.get_collection("trainable_variables"), key=lambda v: v.name)
        gradients = tf.gradients(model.loss, wrt + [model.init_state])
    return model, [v.op.name for v in wrt] + ["init_state"], gradients


def dropout_draws(graph):
    """The uniform draws behind each dropout mask, by name: fed alike to two graphs, they give
    both the same masks."""
    return {op.name: op.outputs[0] for op in graph.get_operations()
            if op.type == "RandomUniform" and "dropout" in op.name}


def largest_relative_difference(written, expected):
    return float(np.max(np.abs(written - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("batch_size, num_layers, dropout", [
    (1, 1, 0.0), (32, 1, 0.0), (4, 2, 0.0), (4, 2, 0.4), (1, 2, 0.3)])
def test_the_written_gradient_is_tensorflows(lstm, tf, batch_size, num_layers, dropout):
    options = dict(batch_size=batch_size, num_layers=num_layers, dropout=dropout)
    graphs = {gradient: training_graph(lstm, tf, gradient, **options)
              for gradient in ("written", "tensorflow")}
    rng = np.random.default_rng(batch_size + num_layers)
    window = aux_funcs.encode(rng.integers(VOCAB, size=(STEPS + 1, batch_size)), VOCAB)
    expected_model = graphs["tensorflow"][0]
    # Not zero, so that the first step's recomputed gates and the state's own gradient count.
    state = rng.normal(0, 0.5, expected_model.init_state.shape).astype(np.float32)
    draws = {name: rng.uniform(size=(STEPS, batch_size, HIDDEN)).astype(np.float32)
             for name in dropout_draws(expected_model.graph)}
    assert len(draws) == (num_layers if dropout else 0)
    weights, results, forwards = None, {}, {}
    for gradient, (model, names, gradients) in graphs.items():
        with tf.compat.v1.Session(graph=model.graph) as session:
            if weights is None:
                session.run(model.init)
                weights = weights_of(model, session)
            load_weights(model, session, weights)
            fed = {model.x: window[:-1], model.y: window[1:], model.init_state: state,
                   **lstm.dropout_feed(model, lstm.Options(dropout=dropout))}
            fed.update({tensor: draws[name]
                        for name, tensor in dropout_draws(model.graph).items()})
            results[gradient] = dict(zip(names, session.run(gradients, fed)))
            forwards[gradient] = session.run([model.logits, model.final_state], fed)
    # The forward that keeps its gates for the written gradient computes the same numbers.
    for written, expected in zip(forwards["written"], forwards["tensorflow"]):
        np.testing.assert_array_equal(written, expected)
    assert results["written"].keys() == results["tensorflow"].keys()
    assert any("kernel" in name for name in results["written"])
    for name, expected in results["tensorflow"].items():
        assert np.max(np.abs(expected)) > 0, name
        assert largest_relative_difference(results["written"][name], expected) <= 1e-5, name


@pytest.mark.parametrize("gradient, batch_size, num_layers, written", [
    ("written", 1, 1, True), ("written", 2, 2, True), ("auto", 2, 1, True),
    ("tensorflow", 1, 1, False), ("tensorflow", 2, 2, False)])
def test_the_gradient_trained_with_is_the_one_chosen(lstm, tf, gradient, batch_size,
                                                     num_layers, written):
    """The written gradient unless --gradient tensorflow ("auto", which a checkpoint may
    store, is the written one): its ops are in the training graph exactly when it is chosen,
    one window_backward a layer, and the forward keeps its gates for it."""
    model = lstm.build_graph(tf, VOCAB, lstm.Options(hidden_dim=HIDDEN, gradient=gradient,
                                                     batch_size=batch_size,
                                                     num_layers=num_layers))
    names = [op.name for op in model.graph.get_operations()]
    assert sum(name.endswith("_grad/d_kernel") for name in names) == num_layers * written
    assert any("while_grad" in name for name in names) == (not written)


def test_lstmcells_gate_order_and_forget_bias_are_the_ones_written_out(lstm, tf):
    """One step of the cell against the forward equations of window_backward's docstring,
    with random weights: a cell that ordered its gates otherwise, or added another forget
    bias, would differ."""
    rng = np.random.default_rng(8)
    inputs, hidden, streams = 3, 4, 2
    graph = tf.Graph()
    with lstm.building_quietly(graph):
        cell = tf.compat.v1.nn.rnn_cell.LSTMCell(hidden)
        x = tf.constant(rng.normal(size=(streams, inputs)), tf.float32)
        c0, h0 = (tf.constant(rng.normal(size=(streams, hidden)), tf.float32) for _ in "ch")
        h1, state = cell(x, tf.compat.v1.nn.rnn_cell.LSTMStateTuple(c0, h0))
        kernel, bias = cell.variables
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            bias.load(rng.normal(size=4 * hidden), session)
            got_c, got_h, w, b, x_, c_, h_ = session.run([state.c, h1, kernel, bias, x, c0, h0])
    forget_bias = cell.get_config()["forget_bias"]
    assert forget_bias == 1.0
    gates = dict(zip(lstm.GATE_ORDER, np.split(np.concatenate([x_, h_], 1) @ w + b, 4, 1)))

    def sigmoid(value):
        return 1 / (1 + np.exp(-value))
    c = sigmoid(gates["f"] + forget_bias) * c_ + sigmoid(gates["i"]) * np.tanh(gates["j"])
    np.testing.assert_allclose(got_c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h, sigmoid(gates["o"]) * np.tanh(c), rtol=1e-5, atol=1e-6)


def test_both_gradients_train_alike(tmp_path):
    """200 iterations of the script's own loop with either gradient end at the same smoothed
    loss, and it has fallen."""
    (tmp_path / "abc.txt").write_text("abcdefg hijk.\n" * 60 + "the quick brown fox.\n" * 30)
    ends = {}
    for gradient in ("written", "tensorflow"):
        folder = tmp_path / gradient
        result = run_in_process(["abc.txt", "--hidden-dim", "32", "--seq-length", "20",
                                 "--iterations", "200", "--sample-every", "100",
                                 "--sample-length", "10", "--seed", "2", "--gradient", gradient,
                                 "--save-dir", gradient, "--plots-dir", gradient], tmp_path)
        assert result.returncode == 0, result.stderr
        ends[gradient] = aux_funcs.latest_checkpoint(str(folder)).arrays["smooth_loss_hist"]
    assert ends["written"][-1] == pytest.approx(ends["tensorflow"][-1], rel=1e-3)
    assert ends["written"][-1] < ends["written"][0] - 0.1 * math.log(20)
