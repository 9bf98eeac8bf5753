"""The graph of tf-lstm-char.py: names, shapes, time-major feeding, the carried state, and
that it learns."""
import math
import types

import numpy as np
import pytest

import aux_funcs

VOCAB = 6
HIDDEN = 16


@pytest.fixture(scope="module")
def model(lstm, tf):
    return lstm.build_graph(tf, VOCAB, HIDDEN, seed=0)


@pytest.fixture(scope="module")
def session(tf, model):
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)
        yield session


def one_hot_steps(ids):
    return aux_funcs.encode(ids, VOCAB)[:, np.newaxis, :]


def run_steps(session, model, ids, state):
    return session.run([model.probabilities, model.final_state],
                       {model.x: one_hot_steps(ids), model.init_state: state})


def test_the_original_names_can_be_looked_up(model):
    graph = model.graph
    for name in ("x", "y", "init_state", "final_state", "logits", "probabilities", "loss"):
        assert graph.get_tensor_by_name(f"{name}:0") is not None
    assert graph.get_operation_by_name("training") is model.training
    variables = {v.op.name: v.shape.as_list() for v in graph.get_collection("variables")}
    assert variables["out_w"] == [HIDDEN, VOCAB]
    assert variables["out_b"] == [VOCAB]


def test_placeholders_are_time_major(model):
    assert model.x.shape.as_list() == [None, 1, VOCAB]
    assert model.y.shape.as_list() == [None, 1, VOCAB]
    assert model.init_state.shape.as_list() == [2, 1, HIDDEN]
    assert model.final_state.shape.as_list() == [2, 1, HIDDEN]


def test_seven_steps_give_seven_rows_of_probabilities(session, model, lstm):
    probs, state = run_steps(session, model, [0, 1, 2, 3, 4, 5, 0], lstm.zero_state(model))
    assert probs.shape == (7, VOCAB)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(7), rtol=1e-5)
    assert state.shape == (2, 1, HIDDEN)


def test_feeding_the_final_state_back_continues_the_sequence(session, model, lstm):
    ids = [3, 1, 4, 1, 5, 0, 2]
    whole, whole_state = run_steps(session, model, ids, lstm.zero_state(model))
    first, state = run_steps(session, model, ids[:3], lstm.zero_state(model))
    rest, rest_state = run_steps(session, model, ids[3:], state)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, atol=1e-6)
    np.testing.assert_allclose(rest_state, whole_state, atol=1e-6)
    fresh, _ = run_steps(session, model, ids[3:], lstm.zero_state(model))
    assert not np.allclose(fresh, rest, atol=1e-4), "the carried state made no difference"


def test_the_optimizer_flag_picks_the_update_rule(lstm, tf):
    def slot_names(optimizer):
        model = lstm.build_graph(tf, VOCAB, HIDDEN, optimizer=optimizer)
        return [v.op.name for v in model.graph.get_collection("variables")]
    assert any("Adam" in name for name in slot_names("adam"))
    assert not any("Adam" in name for name in slot_names("sgd"))


@pytest.fixture(scope="module")
def trained(lstm, tf, tmp_path_factory):
    """A small network trained by the script's own loop on a text it can learn by heart."""
    text = "abcdefg hijk. " * 60
    char_to_idx = {ch: i for i, ch in enumerate(sorted(set(text)))}
    idx_to_char = {i: ch for ch, i in char_to_idx.items()}
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    model = lstm.build_graph(tf, len(char_to_idx), 32, seed=1)
    args = types.SimpleNamespace(iterations=150, seq_length=20, sample_every=1000,
                                 sample_length=50, plots_dir=str(tmp_path_factory.mktemp("p")))
    rng = np.random.default_rng(1)
    session = tf.compat.v1.Session(graph=model.graph)
    session.run(model.init)
    loss_hist, smooth_hist = lstm.train(session, model, ids, idx_to_char, args, "abc", rng)
    yield types.SimpleNamespace(model=model, session=session, text=text,
                                idx_to_char=idx_to_char, loss_hist=loss_hist,
                                smooth_hist=smooth_hist)
    session.close()


def test_loss_falls_on_a_learnable_text(trained):
    start = math.log(trained.model.vocab_size)
    assert trained.loss_hist[0] == pytest.approx(start)
    assert len(trained.loss_hist) == len(trained.smooth_hist) == 151
    assert np.mean(trained.loss_hist[-20:]) < 0.1 * start
    assert trained.smooth_hist[-1] < trained.smooth_hist[0]


def test_samples_follow_what_was_learned(lstm, trained):
    rng = np.random.default_rng(2)
    drawn = lstm.sample(trained.session, trained.model, 200, rng)
    assert len(drawn) == 200
    text = "".join(trained.idx_to_char[i] for i in drawn)
    successor = {a: b for a, b in zip(trained.text, trained.text[1:])}
    right = sum(successor[a] == b for a, b in zip(text, text[1:]))
    assert right / (len(text) - 1) > 0.9, text
