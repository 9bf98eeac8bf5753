"""The graph of tf-lstm-char.py: names, shapes, time-major feeding, the carried state, and
that it learns."""
import concurrent.futures
import math
import threading
import types

import numpy as np
import pytest

import aux_funcs
from conftest import HIDDEN, VOCAB, build, one_hot_steps, run_steps, session_of, zero_state


@pytest.fixture(scope="module")
def model(lstm, tf):
    return build(lstm, tf, seed=0)


@pytest.fixture(scope="module")
def session(lstm, tf, model):
    with session_of(lstm, tf, model) as session:
        session.run(model.init)
        yield session


def test_the_original_names_can_be_looked_up(model):
    graph = model.graph
    for name in ("x", "y", "init_state", "final_state", "logits", "temperature",
                 "probabilities", "loss"):
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
    probs, state = run_steps(session, model, [0, 1, 2, 3, 4, 5, 0], zero_state(model))
    assert probs.shape == (7, VOCAB)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(7), rtol=1e-5)
    assert state.shape == (2, 1, HIDDEN)


def test_feeding_the_final_state_back_continues_the_sequence(session, model, lstm):
    ids = [3, 1, 4, 1, 5, 0, 2]
    whole, whole_state = run_steps(session, model, ids, zero_state(model))
    first, state = run_steps(session, model, ids[:3], zero_state(model))
    rest, rest_state = run_steps(session, model, ids[3:], state)
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, atol=1e-6)
    np.testing.assert_allclose(rest_state, whole_state, atol=1e-6)
    fresh, _ = run_steps(session, model, ids[3:], zero_state(model))
    assert not np.allclose(fresh, rest, atol=1e-4), "the carried state made no difference"


def test_the_optimizer_flag_picks_the_update_rule(lstm, tf):
    def slot_names(optimizer):
        model = build(lstm, tf, optimizer=optimizer)
        return [v.op.name for v in model.graph.get_collection("variables")]
    assert any("Adam" in name for name in slot_names("adam"))
    assert not any("Adam" in name for name in slot_names("sgd"))


@pytest.fixture(scope="module")
def trained(lstm, tf, tmp_path_factory):
    """A small network trained by the script's own loop, in this process, on a text it can
    learn by heart."""
    folder = tmp_path_factory.mktemp("trained")
    text = "abcdefg hijk.\n" * 60
    (folder / "abc.txt").write_text(text)
    options = lstm.Options(
        text_file=str(folder / "abc.txt"), val_fraction=0, hidden_dim=32, iterations=200,
        seq_length=20, sample_every=60, sample_length=50, seed=1,
        plots_dir=str(folder / "plots"), save_dir=str(folder / "ckpt"))
    _, char_to_idx, _, vocab_size = aux_funcs.load(options.text_file)
    vocab, ids = "".join(sorted(char_to_idx)), aux_funcs.text_to_ids(text, char_to_idx)
    start = [math.log(vocab_size)]
    progress = lstm.Progress(0, 0, np.zeros((2, 1, 32), np.float32), start, start.copy(),
                             np.random.default_rng(1))
    report = lstm.Report(options, lstm.claim_run_files(options),
                         lstm.checkpoint_info(options, vocab), progress, ids[:0], len(ids) / 20)
    model = build(lstm, tf, vocab_size, hidden_dim=32, seed=1)
    session = session_of(lstm, tf, model)
    with report.running(tf, model):
        session.run(model.init)
        lstm.train(session, model, aux_funcs.BatchGenerator(ids, 20, vocab_size), options,
                   progress, report)
    yield types.SimpleNamespace(model=model, session=session, text=text, vocab=vocab,
                                progress=progress,
                                saved=aux_funcs.read_checkpoint_list(folder / "ckpt"))
    session.close()


def draw(lstm, trained, length, rng, sampler="graph", **options):
    """A sample from the trained network, by either sampler, as text."""
    if sampler == "feed":
        ids = lstm.sample(trained.session, trained.model, length, rng, **options)
    else:
        ids = lstm.sample_in_graph(trained.session, trained.model, length, rng, **options)
    return "".join(trained.vocab[i] for i in ids)


def test_loss_falls_on_a_learnable_text(trained):
    start = math.log(len(trained.vocab))
    hist = trained.progress.loss_hist
    assert hist[0] == pytest.approx(start)
    assert len(hist) == len(trained.progress.smooth_loss_hist) == 201
    assert np.mean(hist[-20:]) < 0.1 * start
    assert trained.progress.smooth_loss_hist[-1] < trained.progress.smooth_loss_hist[0]


def test_the_loop_checkpoints_at_each_report_and_the_end(trained):
    assert trained.saved == ["ckpt-0", "ckpt-60", "ckpt-120", "ckpt-180", "ckpt-200"]
    assert trained.progress.iteration == 200
    # 200 windows of 20 over 840 characters: 41 windows a pass, so 36 into the fifth.
    assert trained.progress.position == 20 * (200 % 41)


def successor_rate(text, learned):
    successor = {a: b for a, b in zip(learned, learned[1:])}
    return sum(successor[a] == b for a, b in zip(text, text[1:])) / (len(text) - 1)


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_samples_follow_what_was_learned(lstm, trained, sampler):
    text = draw(lstm, trained, 200, np.random.default_rng(2), sampler)
    assert len(text) == 200
    assert successor_rate(text, trained.text) > 0.9, text


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_a_prime_sets_where_the_sample_goes_on(lstm, trained, sampler):
    prime = [trained.vocab.index(ch) for ch in "abcdefg hi"]
    assert draw(lstm, trained, 12, np.random.default_rng(3), sampler, prime_ids=prime,
                argmax=True) == "jk.\nabcdefg "


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_a_temperature_near_zero_gives_the_argmax_text(lstm, trained, sampler):
    prime = [trained.vocab.index(ch) for ch in "abcdefg hi"]

    def text(**options):
        return draw(lstm, trained, 100, np.random.default_rng(4), sampler, prime_ids=prime,
                    **options)
    argmax = text(argmax=True)
    assert text(temperature=1e-3) == argmax
    # Set on the learned cycle by the prime, the argmax sample never leaves it; a hot one
    # strays.
    assert successor_rate("hi" + argmax, trained.text) == 1.0
    assert successor_rate("hi" + text(temperature=5.0), trained.text) < 0.9


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_a_temperature_too_low_to_divide_by_is_refused(lstm, trained, sampler):
    """Scores divided by 1e-40 are not finite: neither sampler can draw from them, and the
    error says why, without claiming that training diverged (it is the same under --sample)."""
    with pytest.raises(lstm.UserError) as refused:
        draw(lstm, trained, 5, np.random.default_rng(7), sampler, temperature=1e-40)
    assert str(refused.value) == ("the network's output is not finite at --temperature 1e-40: "
                                  "its weights have diverged, or the temperature is too low to "
                                  "divide by")


def test_probabilities_are_the_softmax_of_the_logits_over_the_temperature(trained):
    session, model = trained.session, trained.model
    fed = {model.x: aux_funcs.encode([[1], [2], [3]], model.x.shape[2]),
           model.init_state: zero_state(model)}
    logits, default = session.run([model.logits, model.probabilities], fed)
    cold = session.run(model.probabilities, {**fed, model.temperature: 0.5})
    for temperature, probs in ((1.0, default), (0.5, cold)):
        scaled = np.exp(logits / temperature)
        np.testing.assert_allclose(probs, scaled / scaled.sum(axis=1, keepdims=True),
                                   rtol=1e-5)
    assert cold.max() > default.max()


def test_an_untrained_network_scores_about_log_vocab_size(lstm, session, model):
    ids = np.random.default_rng(5).integers(VOCAB, size=3000)
    val_loss = lstm.evaluate(session, model.evaluation, lstm.held_out_tracks(ids))
    assert val_loss == pytest.approx(math.log(VOCAB), rel=0.05)


def training_path_loss(session, model, ids):
    """The mean loss over `ids` through the training graph's own tensors, window by window,
    state carried: what evaluation must agree with."""
    state = zero_state(model)
    total = 0.0
    for start in range(0, len(ids) - 1, 50):
        window = ids[start:start + 51]
        encoded = aux_funcs.encode(window, model.x.shape[2])[:, np.newaxis, :]
        loss, state = session.run([model.loss, model.final_state],
                                  {model.x: encoded[:-1], model.y: encoded[1:],
                                   model.init_state: state})
        total += loss * (len(window) - 1)
    return total / (len(ids) - 1)


def test_evaluation_matches_the_training_graph_on_the_learned_weights(lstm, trained,
                                                                      monkeypatch):
    session, model, evaluation = trained.session, trained.model, trained.model.evaluation
    ids = aux_funcs.text_to_ids(trained.text[3:700], {ch: i for i, ch in
                                                      enumerate(trained.vocab)})
    expected = training_path_loss(session, model, ids)
    one_track = ids[:, np.newaxis]
    assert lstm.evaluate(session, evaluation, one_track) == pytest.approx(expected, rel=1e-5)
    monkeypatch.setattr(lstm, "VAL_WINDOW", 7)
    assert lstm.evaluate(session, evaluation, one_track) == pytest.approx(expected, rel=1e-5)


def train_steps(session, model, ids, steps, length=20):
    """`steps` training steps of the post's loop on windows of `ids`, state carried."""
    state = zero_state(model)
    for step in range(steps):
        start = step * length % (len(ids) - length - 1)
        encoded = aux_funcs.encode(ids[start:start + length + 1], model.x.shape[2])
        _, state = session.run([model.training, model.final_state],
                               {model.x: encoded[:-1, np.newaxis], model.y: encoded[1:, np.newaxis],
                                model.init_state: state})


@pytest.mark.parametrize("layers, dropout", [(1, 0.0), (2, 0.3)])
def test_evaluation_is_the_posts_graph_within_1e_5_nats_a_character(lstm, tf, layers, dropout):
    """Evaluation runs a cell of its own on a copy of the weights: on trained weights, one
    layer and two (and no dropout outside training), its mean over side-by-side tracks is the
    training graph's own loss within 1e-5 nats a character."""
    model = build(lstm, tf, num_layers=layers, dropout=dropout, seed=layers)
    ids = np.tile(np.random.default_rng(layers).integers(VOCAB, size=37), 30)
    with session_of(lstm, tf, model) as session:
        session.run(model.init)
        train_steps(session, model, ids, 40)
        tracks = aux_funcs.tracks(ids, 3)
        expected = np.mean([training_path_loss(session, model, tracks[:, k]) for k in range(3)])
        assert expected < math.log(VOCAB) - 0.3, "the weights did not learn"
        assert lstm.evaluate(session, model.evaluation, tracks) == pytest.approx(expected,
                                                                                abs=1e-5)


def test_a_copy_of_the_weights_is_scored_in_a_thread_while_training_goes_on(lstm, tf):
    """What a report scores beside training: the weights as evaluation.copy took them, not
    as the training steps taken meanwhile leave them."""
    model = build(lstm, tf, seed=5)
    ids = np.tile(np.random.default_rng(5).integers(VOCAB, size=29), 40)
    tracks = aux_funcs.tracks(ids, 2)
    with session_of(lstm, tf, model) as session, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        session.run(model.init)
        copied = lstm.evaluate(session, model.evaluation, tracks)
        trained = threading.Event()

        def score_until_trained():
            scores = []
            while not trained.is_set() or not scores:
                scores.append(lstm.evaluate_copy(session, model.evaluation, tracks))
            return scores

        scoring = pool.submit(score_until_trained)
        train_steps(session, model, ids, 30)
        trained.set()
        assert scoring.result() == pytest.approx([copied] * len(scoring.result()), abs=1e-7)
        assert lstm.evaluate(session, model.evaluation, tracks) < copied - 0.1


def test_evaluating_tracks_side_by_side_averages_them(lstm, trained):
    session, evaluation = trained.session, trained.model.evaluation
    ids = np.random.default_rng(6).integers(len(trained.vocab), size=900)
    tracks = aux_funcs.tracks(ids, 3)
    each = [lstm.evaluate(session, evaluation, tracks[:, [k]]) for k in range(3)]
    assert lstm.evaluate(session, evaluation, tracks) == pytest.approx(np.mean(each), rel=1e-5)


def test_a_batch_holds_independent_streams(lstm, tf):
    model = build(lstm, tf, batch_size=3, seed=2)
    streams = np.array([[0, 1, 2, 3, 4], [5, 4, 3, 2, 1], [2, 2, 2, 2, 2]]).T  # time-major
    with tf.compat.v1.Session(graph=model.graph) as session:
        session.run(model.init)

        def run(ids):
            return session.run([model.probabilities, model.final_state],
                               {model.x: aux_funcs.encode(ids, VOCAB),
                                model.init_state: zero_state(model)})
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


def test_both_samplers_write_the_same_argmax_text(lstm, trained):
    for prime in ([], [trained.vocab.index(ch) for ch in "cdefg"]):
        texts = [draw(lstm, trained, 80, np.random.default_rng(8), sampler, prime_ids=prime,
                      argmax=True) for sampler in ("graph", "feed")]
        assert len(texts[0]) == 80
        assert texts[0] == texts[1]


def test_a_sample_drawn_in_pieces_is_the_sample_drawn_at_once(lstm, tf, model, monkeypatch):
    def draw_in_pieces(piece):
        monkeypatch.setattr(lstm, "SAMPLE_PIECE", piece)
        # A new session of the seeded graph starts the same weights and the same random
        # draws, so only the pieces differ. Weights four times their initial size make the
        # draws depend on the state carried from piece to piece: a small network fresh from
        # its initializer forgets within a few characters what it was given.
        with session_of(lstm, tf, model) as fresh:
            fresh.run(model.init)
            for variable in model.graph.get_collection("trainable_variables"):
                variable.load(4 * fresh.run(variable), fresh)
            return list(lstm.sample_in_graph(fresh, model, 2500, np.random.default_rng(9),
                                             temperature=2.0))
    assert len(draw_in_pieces(1000)) == 2500
    assert draw_in_pieces(1000) == draw_in_pieces(10 ** 6)


def test_the_in_graph_sampler_steps_as_the_cell_does(session, model):
    # Reading what it drew through the post's dynamic_rnn must end in the same state.
    prime = [2, 5, 1]
    sampler = model.sampler
    drawn, end_state = session.run([sampler.ids, sampler.end_state],
                                   {sampler.prime: prime, sampler.length: 50,
                                    model.temperature: 1.5})
    read = np.array(prime + drawn.tolist())[:, np.newaxis]
    cell_state = session.run(model.final_state, {model.x: aux_funcs.encode(read, VOCAB),
                                                 model.init_state: zero_state(model)})
    assert len(set(drawn.tolist())) > 1
    np.testing.assert_allclose(end_state, cell_state, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["graph", "feed"])
def test_both_samplers_draw_from_the_network_distribution(lstm, session, model, sampler):
    prime = [2, 5, 1]
    expected = session.run(model.probabilities,
                           {model.x: one_hot_steps(prime), model.init_state: zero_state(model),
                            model.temperature: 0.15})[-1]
    rng = np.random.default_rng(10)
    draws = 3000
    if sampler == "feed":
        drawn = [next(lstm.sample(session, model, 1, rng, 0.15, prime)) for _ in range(draws)]
    else:
        drawn = [next(lstm.sample_in_graph(session, model, 1, rng, 0.15, prime))
                 for _ in range(draws)]
    counts = np.bincount(drawn, minlength=VOCAB)
    assert np.abs(counts / draws - expected).sum() / 2 < 0.04, (counts / draws, expected)
    assert expected.max() > 1.5 / VOCAB, "the distribution is too flat to tell anything"


def test_clipping_bounds_the_update(lstm, tf):
    window = one_hot_steps([0, 1, 2, 3, 4, 5, 0])

    def update_norm(clip):
        model = build(lstm, tf, learning_rate=1.0, optimizer="sgd", seed=3, clip=clip)
        variables = model.graph.get_collection("trainable_variables")
        with tf.compat.v1.Session(graph=model.graph) as session:
            session.run(model.init)
            before = session.run(variables)
            session.run(model.training, {model.x: window[:-1], model.y: window[1:],
                                         model.init_state: zero_state(model)})
            after = session.run(variables)
        return math.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    assert update_norm(None) > 0.1
    assert update_norm(0.01) == pytest.approx(0.01, rel=1e-3)


def test_bf16_runs_the_lstm_and_its_state_in_bfloat16_where_the_processor_can(lstm, tf):
    """What --help says --bf16 does: the products, gates and state in bfloat16, so the numbers
    differ slightly; on a processor without bfloat16 instructions nothing changes."""
    model = build(lstm, tf, seed=1)
    ids = [index % VOCAB for index in range(0, 120, 7)]
    feed = {model.x: one_hot_steps(ids), model.init_state: zero_state(model)}
    figures = {}
    for bf16 in (False, True):
        config = lstm.session_config(tf, lstm.Options(bf16=bf16))
        with tf.compat.v1.Session(graph=model.graph, config=config) as session:
            session.run(model.init)
            figures[bf16] = session.run([model.probabilities, model.final_state], feed)
    (float32_probabilities, float32_state), (bf16_probabilities, bf16_state) = (
        figures[False], figures[True])
    if not aux_funcs.bfloat16_instruction_sets():
        np.testing.assert_allclose(bf16_state, float32_state, rtol=1e-6, atol=1e-7)
        return
    low_bits = bf16_state.view(np.uint32) & 0xFFFF
    assert not low_bits.any(), "the state carried through the loop should be bfloat16"
    assert (float32_state.view(np.uint32) & 0xFFFF).any()
    difference = np.abs(bf16_probabilities - float32_probabilities).max()
    assert 1e-5 < difference < 2e-2


@pytest.mark.parametrize("instruction_sets", [[], ["AVX512-BF16"], ["AVX512-BF16", "AMX-BF16"]])
def test_bf16_applies_only_where_the_processor_multiplies_bfloat16(lstm, tf, monkeypatch,
                                                                   instruction_sets):
    """Without AVX512-BF16 or AMX-BF16 TensorFlow emulates bfloat16, slower than float32: there
    --bf16 leaves the session as in float32."""
    monkeypatch.setattr(aux_funcs, "bfloat16_instruction_sets", lambda: instruction_sets)
    applies = bool(instruction_sets)
    rewrite = lstm.session_config(tf, lstm.Options(bf16=True)).graph_options.rewrite_options
    assert (rewrite.auto_mixed_precision_onednn_bfloat16 == type(rewrite).ON) == applies


def test_the_memory_estimate_counts_every_weight_of_the_graph(lstm, model):
    """training_bytes refuses models too big for the machine; it must know the graph's size."""
    graph_weights = sum(int(np.prod(variable.shape))
                        for variable in model.graph.get_collection("trainable_variables"))
    options = lstm.Options(hidden_dim=HIDDEN)
    assert lstm.weight_count(options, VOCAB) == graph_weights
    assert lstm.training_bytes(options, VOCAB) > 7 * 4 * graph_weights
