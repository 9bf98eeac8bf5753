"""--num-layers and --dropout: the post's graph kept at one layer, a deeper state fed back by
name, dropout only while training."""
import numpy as np
import pytest

import aux_funcs
from conftest import (HIDDEN, VOCAB, build, load_weights, one_hot_steps, run_in_process, run_steps,
                      session_of, weights_of, zero_state)

IDS = [3, 1, 4, 1, 5, 0, 2, 2, 5, 3]


@pytest.fixture(scope="module")
def deep(lstm, tf):
    """A two-layer network with dropout, at its (seeded) initial weights."""
    model = build(lstm, tf, num_layers=2, dropout=0.5, seed=4)
    with session_of(lstm, tf, model) as session:
        session.run(model.init)
        yield model, session


def test_one_layer_is_the_posts_graph(lstm, tf):
    model = build(lstm, tf)
    variables = {v.op.name: v.shape.as_list()
                 for v in model.graph.get_collection("trainable_variables")}
    assert variables == {"rnn/lstm_cell/kernel": [VOCAB + HIDDEN, 4 * HIDDEN],
                         "rnn/lstm_cell/bias": [4 * HIDDEN], "out_w": [HIDDEN, VOCAB],
                         "out_b": [VOCAB]}
    assert model.init_state.shape.as_list() == [2, 1, HIDDEN]
    assert model.keep_prob is None
    names = [op.name for op in model.graph.get_operations()]
    assert not [name for name in names if "multi_rnn_cell" in name or "keep_prob" in name
                or "dropout" in name.lower()]


def test_layers_stack_their_state_and_keep_the_posts_names(deep):
    model, _ = deep
    assert model.init_state.shape.as_list() == [2, 2, 1, HIDDEN]
    assert model.final_state.shape.as_list() == [2, 2, 1, HIDDEN]
    graph = model.graph
    for name in ("x", "y", "init_state", "final_state", "logits", "probabilities", "loss",
                 "keep_prob"):
        assert graph.get_tensor_by_name(f"{name}:0") is not None
    kernels = {v.op.name: v.shape.as_list()
               for v in graph.get_collection("trainable_variables") if "kernel" in v.op.name}
    assert kernels == {"rnn/multi_rnn_cell/cell_0/lstm_cell/kernel": [VOCAB + HIDDEN,
                                                                      4 * HIDDEN],
                       "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel": [2 * HIDDEN, 4 * HIDDEN]}


def test_two_layers_fed_back_by_name_continue_one_long_run(deep):
    model, session = deep
    whole, whole_state = run_steps(session, model, IDS, zero_state(model))
    first, state = run_steps(session, model, IDS[:4], zero_state(model))
    rest, rest_state = run_steps(session, model, IDS[4:], state)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, atol=1e-6)
    np.testing.assert_allclose(rest_state, whole_state, atol=1e-6)
    # Each layer's part of the state carries something the next window needs.
    for layer in range(2):
        cut = state.copy()
        cut[layer] = 0
        forgot, _ = run_steps(session, model, IDS[4:], cut)
        assert not np.allclose(forgot, rest, atol=1e-5), f"layer {layer}'s state did nothing"


def test_dropout_is_off_outside_the_training_step(lstm, tf, deep):
    model, session = deep
    plain = build(lstm, tf, num_layers=2)
    ids = np.random.default_rng(3).integers(VOCAB, size=600)
    with session_of(lstm, tf, plain) as plain_session:
        load_weights(plain, plain_session, weights_of(model, session))
        expected = run_steps(plain_session, plain, IDS, zero_state(plain))[0]
        expected_val = lstm.evaluate(plain_session, plain.evaluation, lstm.held_out_tracks(ids))
        expected_drawn = list(lstm.sample_in_graph(plain_session, plain, 40,
                                                   np.random.default_rng(1), argmax=True))
    for _ in range(2):
        np.testing.assert_allclose(run_steps(session, model, IDS, zero_state(model))[0],
                                   expected, rtol=1e-6)
        assert lstm.evaluate(session, model.evaluation, lstm.held_out_tracks(ids)) == \
            pytest.approx(expected_val, rel=1e-6)
        assert list(lstm.sample_in_graph(session, model, 40, np.random.default_rng(1),
                                         argmax=True)) == expected_drawn
    fed = run_steps_dropped(session, model, 0.5)
    assert not np.allclose(fed, expected, atol=1e-4), "feeding keep_prob changed nothing"


def run_steps_dropped(session, model, keep_prob):
    return session.run(model.probabilities, {model.x: one_hot_steps(IDS),
                                             model.init_state: zero_state(model),
                                             model.keep_prob: keep_prob})


def test_dropout_is_on_in_training_and_its_masks_follow_the_seed(lstm, tf, deep):
    start = weights_of(*deep)
    window = one_hot_steps(IDS)
    options = lstm.Options(hidden_dim=HIDDEN, num_layers=2, dropout=0.5)

    def two_step_losses(seed, dropout=0.5):
        model = build(lstm, tf, num_layers=2, dropout=dropout, seed=seed)
        with session_of(lstm, tf, model) as session:
            load_weights(model, session, start)
            return [session.run([model.loss, model.training],
                                {model.x: window[:-1], model.y: window[1:],
                                 model.init_state: zero_state(model),
                                 **lstm.dropout_feed(model, options)})[0] for _ in range(2)]

    seeded = two_step_losses(1)
    assert two_step_losses(1) == seeded
    assert two_step_losses(2) != seeded
    without = two_step_losses(1, dropout=0)
    assert without != seeded and two_step_losses(7, dropout=0) == without


def test_the_memory_estimate_counts_every_layers_weights(lstm, deep):
    model = deep[0]
    graph_weights = sum(int(np.prod(variable.shape))
                        for variable in model.graph.get_collection("trainable_variables"))
    options = lstm.Options(hidden_dim=HIDDEN, num_layers=2)
    assert lstm.weight_count(options, VOCAB) == graph_weights
    one_layer = lstm.Options(hidden_dim=HIDDEN)
    assert lstm.training_bytes(options, VOCAB) > lstm.training_bytes(one_layer, VOCAB)


def test_a_seeded_run_with_dropout_repeats_itself(tmp_path):
    (tmp_path / "abc.txt").write_text("abcdefg hijk.\n" * 80)
    runs = []
    for name in ("first", "second"):
        result = run_in_process(["abc.txt", "--num-layers", "2", "--dropout", "0.5",
                                 "--batch-size", "4", "--hidden-dim", "16", "--seq-length",
                                 "20", "--iterations", "12", "--sample-every", "6",
                                 "--sample-length", "20", "--seed", "3", "--save-dir", name],
                                tmp_path)
        assert result.returncode == 0, result.stderr
        runs.append(aux_funcs.load_run_state(str(tmp_path / name / "ckpt-12"))[1])
    np.testing.assert_array_equal(runs[0]["loss_hist"], runs[1]["loss_hist"])
    np.testing.assert_array_equal(runs[0]["state"], runs[1]["state"])
