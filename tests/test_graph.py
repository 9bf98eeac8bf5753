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
    text = "abcdefg hijk.\n" * 60
    char_to_idx = {ch: i for i, ch in enumerate(sorted(set(text)))}
    vocab = sorted(char_to_idx, key=char_to_idx.get)
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    model = lstm.build_graph(tf, len(vocab), 32, seed=1)
    args = types.SimpleNamespace(
        iterations=150, seq_length=20, batch_size=1, sample_every=60, sample_length=50,
        temperature=1.0, prime="", argmax=False, sampler="graph", text_file="abc.txt",
        plots_dir=str(tmp_path_factory.mktemp("plots")))
    saved_at = []
    session = tf.compat.v1.Session(graph=model.graph)
    session.run(model.init)
    progress = lstm.fresh_progress(model)
    lstm.train(session, model, (ids, None), progress, args, vocab, np.random.default_rng(1),
               lambda p: saved_at.append(p.iteration), lstm.StopRequest(),
               lstm.Summaries(tf, None, model.graph))
    yield types.SimpleNamespace(model=model, session=session, text=text, vocab=vocab,
                                progress=progress, saved_at=saved_at)
    session.close()


def test_loss_falls_on_a_learnable_text(trained):
    start = math.log(trained.model.vocab_size)
    hist = trained.progress.loss_hist
    assert hist[0] == pytest.approx(start)
    assert len(hist) == len(trained.progress.smooth_loss_hist) == 151
    assert np.mean(hist[-20:]) < 0.1 * start
    assert trained.progress.smooth_loss_hist[-1] < trained.progress.smooth_loss_hist[0]


def test_the_loop_checkpoints_at_each_sample_point_and_the_end(trained):
    assert trained.saved_at == [1, 61, 121, 150]
    assert trained.progress.iteration == 150
    # 150 windows of 20 over 840 characters: 41 windows a pass, so 27 into the fourth.
    assert trained.progress.position == 20 * (150 % 41)


def successor_rate(text, learned):
    successor = {a: b for a, b in zip(learned, learned[1:])}
    return sum(successor[a] == b for a, b in zip(text, text[1:])) / (len(text) - 1)


def test_samples_follow_what_was_learned(lstm, trained):
    drawn = lstm.sample(trained.session, trained.model, 200, np.random.default_rng(2))
    assert len(drawn) == 200
    text = "".join(trained.vocab[i] for i in drawn)
    assert successor_rate(text, trained.text) > 0.9, text


def test_a_prime_sets_where_the_sample_goes_on(lstm, trained):
    prime = [trained.vocab.index(ch) for ch in "abcdefg hi"]
    drawn = lstm.sample(trained.session, trained.model, 12, np.random.default_rng(3),
                        prime_ids=prime, argmax=True)
    assert "".join(trained.vocab[i] for i in drawn) == "jk.\nabcdefg "


def test_a_temperature_near_zero_gives_the_argmax_text(lstm, trained):
    def draw(**options):
        ids = lstm.sample(trained.session, trained.model, 100, np.random.default_rng(4),
                          **options)
        return "".join(trained.vocab[i] for i in ids)
    argmax = draw(argmax=True)
    assert draw(temperature=1e-3) == argmax
    # A hot sample strays from the learned cycle; the argmax one, once it has found its
    # place after the random first character, never does.
    assert successor_rate(argmax[2:], trained.text) == 1.0
    assert successor_rate(draw(temperature=5.0), trained.text) < 0.9


def test_an_untrained_network_scores_about_log_vocab_size(lstm, session, model):
    ids = np.random.default_rng(5).integers(VOCAB, size=3000)
    val_loss = lstm.evaluate(session, model, lstm.held_out_tracks(ids))
    assert val_loss == pytest.approx(math.log(VOCAB), rel=0.05)


def training_path_loss(session, model, ids):
    """The mean loss over `ids` through the training graph's own tensors, window by window,
    state carried: what evaluation must agree with."""
    state = np.zeros((2, 1, model.hidden_dim), np.float32)
    total = 0.0
    for start in range(0, len(ids) - 1, 50):
        window = ids[start:start + 51]
        encoded = aux_funcs.encode(window, model.vocab_size)[:, np.newaxis, :]
        loss, state = session.run([model.loss, model.final_state],
                                  {model.x: encoded[:-1], model.y: encoded[1:],
                                   model.init_state: state})
        total += loss * (len(window) - 1)
    return total / (len(ids) - 1)


def test_evaluation_matches_the_training_graph_on_the_learned_weights(lstm, trained,
                                                                      monkeypatch):
    session, model = trained.session, trained.model
    ids = aux_funcs.text_to_ids(trained.text[3:700], {ch: i for i, ch in
                                                      enumerate(trained.vocab)})
    expected = training_path_loss(session, model, ids)
    one_track = ids[:, np.newaxis]
    assert lstm.evaluate(session, model, one_track) == pytest.approx(expected, rel=1e-5)
    monkeypatch.setattr(lstm, "VAL_WINDOW", 7)
    assert lstm.evaluate(session, model, one_track) == pytest.approx(expected, rel=1e-5)


def test_evaluating_tracks_side_by_side_averages_them(lstm, trained):
    session, model = trained.session, trained.model
    ids = np.random.default_rng(6).integers(model.vocab_size, size=900)
    tracks = aux_funcs.tracks(ids, 3)
    each = [lstm.evaluate(session, model, tracks[:, [k]]) for k in range(3)]
    assert lstm.evaluate(session, model, tracks) == pytest.approx(np.mean(each), rel=1e-5)


def test_a_batch_holds_independent_streams(lstm, tf):
    model = lstm.build_graph(tf, VOCAB, HIDDEN, batch_size=3, seed=2)
    streams = np.array([[0, 1, 2, 3, 4], [5, 4, 3, 2, 1], [2, 2, 2, 2, 2]]).T  # time-major
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)

        def run(ids):
            return session.run([model.probabilities, model.final_state],
                               {model.x_ids: ids, model.init_state: lstm.zero_state(model)})
        probs, state = run(streams)
        changed = streams.copy()
        changed[:, 1] = [1, 1, 1, 1, 1]
        probs_changed, state_changed = run(changed)
        swapped, state_swapped = run(streams[:, [2, 1, 0]])
    rows = probs.reshape(5, 3, VOCAB)  # row t * batch_size + b
    np.testing.assert_allclose(probs_changed.reshape(5, 3, VOCAB)[:, [0, 2]], rows[:, [0, 2]],
                               atol=1e-6)
    assert not np.allclose(probs_changed.reshape(5, 3, VOCAB)[:, 1], rows[:, 1], atol=1e-4)
    np.testing.assert_allclose(swapped.reshape(5, 3, VOCAB), rows[:, [2, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(state_swapped, state[:, [2, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(state_changed[:, 0], state[:, 0], atol=1e-6)


def test_feeding_ids_equals_feeding_the_original_one_hot(session, model, lstm):
    ids = np.array([[3], [1], [4], [1], [5]])
    by_ids = session.run(model.probabilities, {model.x_ids: ids,
                                               model.init_state: lstm.zero_state(model)})
    by_one_hot = session.run(model.probabilities, {model.x: one_hot_steps(ids[:, 0]),
                                                   model.init_state: lstm.zero_state(model)})
    np.testing.assert_allclose(by_ids, by_one_hot, atol=1e-7)


def test_both_samplers_write_the_same_argmax_text(lstm, trained):
    for prime in ([], [trained.vocab.index(ch) for ch in "cdefg"]):
        texts = [lstm.sample(trained.session, trained.model, 80, np.random.default_rng(8),
                             prime_ids=prime, argmax=True, sampler=sampler)
                 for sampler in ("graph", "feed")]
        assert len(texts[0]) == 80
        assert texts[0] == texts[1]


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_a_sample_drawn_in_pieces_is_the_sample_drawn_at_once(lstm, tf, model, monkeypatch,
                                                              sampler):
    def draw(piece):
        monkeypatch.setattr(lstm, "SAMPLE_PIECE", piece)
        # A new session of the seeded graph starts the same weights and the same random
        # draws, so only the pieces differ. Weights four times their initial size make the
        # draws depend on the state carried from piece to piece: a small network fresh from
        # its initializer forgets within a few characters what it was given.
        with tf.compat.v1.Session(graph=model.graph) as fresh:
            fresh.run(model.init)
            for variable in model.graph.get_collection("trainable_variables"):
                variable.load(4 * fresh.run(variable), fresh)
            return [list(ids) for ids in lstm.sample_pieces(
                fresh, model, 2500, np.random.default_rng(9), temperature=2.0,
                sampler=sampler)]
    pieces = draw(1000)
    assert [len(ids) for ids in pieces] == [1000, 1000, 500]
    at_once = draw(10 ** 6)
    assert len(at_once) == 1
    assert sum(pieces, []) == at_once[0]


def test_the_in_graph_sampler_steps_as_the_cell_does(session, model):
    # Its loop writes the LSTM step out by hand; reading what it drew through dynamic_rnn and
    # the cell must end in the same state.
    prime = [2, 5, 1]
    drawn, end_state = session.run([model.sample_ids, model.sample_end_state],
                                   {model.sample_prime: prime, model.sample_length: 50,
                                    model.temperature: 1.5})
    read = np.array(prime + drawn.tolist())[:, np.newaxis]
    cell_state = session.run(model.final_state, {model.x_ids: read,
                                                 model.init_state: np.zeros((2, 1, HIDDEN))})
    assert len(set(drawn.tolist())) > 1
    np.testing.assert_allclose(end_state, cell_state, rtol=0, atol=1e-5)


def test_the_in_graph_sampler_draws_from_the_network_distribution(lstm, session, model):
    prime = [2, 5, 1]
    logits = session.run(model.logits, {model.x_ids: np.array(prime)[:, np.newaxis],
                                        model.init_state: lstm.zero_state(model)})[-1]
    expected = aux_funcs.char_distribution(logits, 0.3)
    draws = 3000
    counts = np.bincount([lstm.sample(session, model, 1, None, 0.3, prime)[0]
                          for _ in range(draws)], minlength=VOCAB)
    assert np.abs(counts / draws - expected).sum() / 2 < 0.04, (counts / draws, expected)
    assert expected.max() > 1.5 / VOCAB, "the distribution is too flat to tell anything"


def test_clipping_bounds_the_update(lstm, tf):
    ids = np.array([[0], [1], [2], [3], [4], [5], [0]])

    def update_norm(clip):
        model = lstm.build_graph(tf, VOCAB, HIDDEN, learning_rate=1.0, optimizer="sgd",
                                 seed=3, clip=clip)
        variables = model.graph.get_collection("trainable_variables")
        with tf.compat.v1.Session(graph=model.graph) as session:
            session.run(model.init)
            before = session.run(variables)
            session.run(model.training, {model.x_ids: ids[:-1], model.y_ids: ids[1:],
                                         model.init_state: lstm.zero_state(model)})
            after = session.run(variables)
        return math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    assert update_norm(None) > 0.1
    assert update_norm(0.01) == pytest.approx(0.01, rel=1e-3)
