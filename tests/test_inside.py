"""--visualize: the features of a text, the cells' statistics, the look inside the graph, and
the page and picture drawn from a checkpoint."""
import html
import os
import re

import matplotlib.image
import numpy as np
import pytest

import aux_funcs
from conftest import (PLAY, PLAY_FLAGS as SMALL, VOCAB, files_of, run_in_process as run,
                      run_script, session_of, zero_state)

def test_line_position_counts_from_each_line_start():
    assert aux_funcs.line_position("ab\ncde\n\nf").tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 0]


def test_inside_marks_nest_brackets_and_alternate_quotes():
    # The opening mark counts as inside, the closing one as outside.
    assert aux_funcs.inside_marks("a[b[c]d]e", "[", "]").tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0]
    # A closing mark with nothing open changes nothing.
    assert aux_funcs.inside_marks("]a[b]", "[", "]").tolist() == [0, 0, 1, 1, 0]
    assert aux_funcs.inside_marks('x"ab"y"c', '"', '"').tolist() == [0, 1, 1, 1, 0, 0, 1, 1]


def test_a_line_of_capitals_is_a_speakers_name():
    text = "KING.\nNow, KING.\nI\nA B\n"
    expected = [1] * 6 + [0] * 11 + [0] * 2 + [1] * 4
    assert aux_funcs.in_capital_line(text).tolist() == expected


def test_word_starts_are_letters_after_other_characters():
    assert aux_funcs.word_start("To be, o'er\nme").tolist() == [
        1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0]


def test_every_feature_gives_one_value_per_character():
    for name, feature in aux_funcs.FEATURES.items():
        assert feature(PLAY).shape == (len(PLAY),), name


def test_the_excerpt_starts_at_the_line_where_the_most_features_change():
    text = "plain words here\nmore plain words\nKING.\n[Exit.] \"Go\"\nplain again\n"
    # From the third line on, two lines see capitals, brackets and quotation marks.
    assert aux_funcs.telling_excerpt(text, 2, 20) == text.index("KING.")
    # One line sees most where brackets and quotation marks open and close.
    assert aux_funcs.telling_excerpt(text, 1, 20) == text.index("[Exit.]")
    assert aux_funcs.telling_excerpt("no lines at all", 4, 5) == 0


def test_the_pictures_excerpt_is_lines_of_the_passage_wrapped_at_the_width():
    text = "ab\ncdefgh\n\nij"
    # A newline ends its line and is shown; a longer line wraps; four lines at most.
    assert aux_funcs.excerpt_lines(text, 0, lines=4, width=4) == [(0, 3), (3, 7), (7, 10),
                                                                 (10, 11)]
    assert aux_funcs.excerpt_lines(text, 11, lines=4, width=4) == [(11, 13)]


def test_the_picture_fills_its_canvas(tmp_path):
    """Four lines shaded by surprise and by three cells on the left, the gate saturation on
    the right: both halves of the picture are drawn on over most of its height (the picture
    before had its excerpt in one strip across the top, and one layer's saturation left the
    right half empty below it but for a note)."""
    rng = np.random.default_rng(0)
    lines = ["KING.\n", "Now is the winter of our discontent [Aside] made glorious.\n", "\n",
             "QUEEN.\n"]
    count = sum(map(len, lines))
    path = aux_funcs.plot_cells(
        tmp_path / "cells.png", "What the cells track", lines, rng.uniform(0, 6, count),
        [(f"feature {k}: layer 1, cell {k}, r = +0.50", rng.uniform(-1, 1, count))
         for k in range(3)], [(rng.uniform(0, 0.5, (3, 50)), rng.uniform(0, 0.5, (3, 50)))])
    drawn = matplotlib.image.imread(path)[..., :3].min(axis=2) < 0.9
    half = drawn.shape[1] // 2
    assert drawn[:, :half].any(axis=1).mean() > 0.6
    assert drawn[:, half:].any(axis=1).mean() > 0.6


def test_cell_statistics_match_numpy_over_windows():
    rng = np.random.default_rng(1)
    activations = rng.normal(size=(900, 7))
    features = np.stack([activations[:, 2] * 3 + rng.normal(size=900) * 0.1,
                         rng.integers(0, 2, 900), np.zeros(900)], axis=1)
    gates = rng.uniform(size=(900, 3, 7))
    statistics = aux_funcs.CellStatistics()
    for start in range(0, 900, 250):
        statistics.add(activations[start:start + 250], gates[start:start + 250],
                       features[start:start + 250])
    r = statistics.correlations()
    for k in range(2):
        for cell in range(7):
            expected = np.corrcoef(features[:, k], activations[:, cell])[0, 1]
            assert r[k, cell] == pytest.approx(expected, abs=1e-9)
    assert r[0, 2] > 0.99
    assert statistics.feature_varies().tolist() == [True, True, False]
    assert np.all(r[2] == 0), "a feature that never varies correlates with nothing"
    left, right = statistics.saturation()
    np.testing.assert_allclose(left, (gates < 0.1).mean(axis=0))
    np.testing.assert_allclose(right, (gates > 0.9).mean(axis=0))


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "dropout": 0.3}])
def test_the_gates_rebuild_what_dynamic_rnn_gives(lstm, tf, options):
    """The look inside computes each layer's gates from its kernel and bias; the c and h it
    gets from them must be dynamic_rnn's, step by step and track by track."""
    model = lstm.add_extras(tf, lstm.build_graph(tf, VOCAB, lstm.Options(hidden_dim=16, seed=5,
                                                                        **options)),
                            look_inside=True)
    inside = model.inside
    rng = np.random.default_rng(3)
    tracks = rng.integers(0, VOCAB, (23, 2))
    with session_of(lstm, tf, model) as session:
        session.run(model.init)
        # Weights larger than they start, so that the gates move away from one half.
        for variable in model.graph.get_collection("trainable_variables"):
            variable.load(3 * session.run(variable), session)
        state = np.zeros(lstm.state_shape_for_streams(inside.init_state, 2), np.float32)
        cells, gates, probabilities, final = session.run(
            [inside.cells, inside.gates, inside.probabilities, inside.final_state],
            {inside.ids: tracks, inside.init_state: state})
        for track in range(2):
            expected, expected_state = session.run(
                [model.probabilities, model.final_state],
                {model.x: aux_funcs.encode(tracks[:, track], VOCAB)[:, np.newaxis],
                 model.init_state: zero_state(model)})
            np.testing.assert_allclose(probabilities[:, track], expected, atol=1e-5)
            np.testing.assert_allclose(final[..., track, :], expected_state[..., 0, :],
                                       atol=1e-5)
            # The top layer's c at the last step is in dynamic_rnn's final state too.
            np.testing.assert_allclose(cells[-1, track, -1],
                                       expected_state.reshape(-1, 2, 1, 16)[-1, 0, 0],
                                       atol=1e-5)
    layers = options.get("num_layers", 1)
    assert cells.shape == (23, 2, layers, 16) and gates.shape == (23, 2, 3, layers, 16)
    assert 0 <= gates.min() and gates.max() <= 1 and gates.std() > 0.05
    # c = forget * c_before + input * tanh(j), and |tanh(j)| <= 1.
    c_before = np.concatenate([np.zeros_like(cells[:1]), cells[:-1]])
    forget, input_ = gates[:, :, 0], gates[:, :, 1]
    assert np.all(np.abs(cells - forget * c_before) <= input_ + 1e-5)


def test_visualize_names_the_cells_and_writes_the_page_and_picture(play, visualized):
    lines = visualized.stdout.splitlines()
    held_out = round(len(PLAY) * 0.1)
    assert lines[0] == (f"ckpt/ckpt-30: 1 layer of 16 cells, compared over {held_out:,} "
                        "held-out characters")
    found = {match[0].strip(): (int(match[1]), int(match[2]), float(match[3])) for match in
             re.findall(r"^  (.{42}) +(\d+) +(\d+) +([+-]\d\.\d{3})$", visualized.stdout,
                        re.MULTILINE)}
    assert set(found) == set(aux_funcs.FEATURES)
    assert all(layer == 1 and 0 <= cell < 16 and 0 < abs(r) <= 1
               for layer, cell, r in found.values())
    assert re.fullmatch(r"the passage: 120 characters, \d\.\d{4} bits of surprise per "
                        "character after the first", lines[-3])
    page_size = aux_funcs.format_bytes((play / "plots" / "ckpt_cells.html").stat().st_size)
    assert lines[-2:] == [f"page: plots/ckpt_cells.html ({page_size}; it runs the network, in "
                          "any browser)", "picture: plots/ckpt_cells.png"]
    assert (play / "plots" / "ckpt_cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (play / "plots" / "ckpt_cells.html").read_text(encoding="utf-8")
    # The page's rows: a cell per feature, as printed, then three at random.
    shown = [(html.unescape(label), int(layer), int(index)) for label, layer, index in
             re.findall(r'<h3>([^<]*)</h3>\n<div class="row" data-layer="(\d+)" '
                        r'data-index="(\d+)"></div>', page)]
    assert len(shown) == len(aux_funcs.FEATURES) + 3
    for name, (layer, cell, r) in found.items():
        label = f"{name}: layer {layer}, cell {cell}, r = "
        assert any(shown_label.startswith(label) and abs(float(shown_label[len(label):]) - r)
                   <= 0.0051 and (at_layer, at_cell) == (layer, cell)
                   for shown_label, at_layer, at_cell in shown), name
    random_cells = {cell for _, _, cell in shown[-3:]}
    assert len(random_cells) == 3 and not random_cells & {cell for _, cell, _ in found.values()}


@pytest.mark.parametrize("args, words", [
    (["--save-dir", "nothing"], "no checkpoint in nothing"),
    (["--save-dir", "ckpt", "--passage-file", "zoe.txt"],
     "the passage has characters the model does not know: 'Z' 'ë'"),
    (["--save-dir", "ckpt", "--passage-start", "100000"], "--passage-start 100000 is past"),
    (["other.txt", "--save-dir", "ckpt"], "other.txt is not the text checkpoint ckpt/ckpt-30"),
])
def test_mistakes_are_one_line_before_tensorflow(play, no_tensorflow, args, words):
    (play / "zoe.txt").write_text("Now Zoë", encoding="utf-8")
    (play / "other.txt").write_text(PLAY.upper(), encoding="utf-8")
    before = files_of(play)
    result = run_script(["--visualize", *args], play, no_tensorflow)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr
    assert files_of(play) == before


def test_a_deep_run_with_dropout_is_drawn_layer_by_layer(tmp_path):
    (tmp_path / "play.txt").write_text(PLAY, encoding="utf-8")
    trained = run(["play.txt", "--num-layers", "2", "--dropout", "0.3", "--batch-size", "2",
                   "--iterations", "10", "--save-dir", "deep", *SMALL], tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = run(["--visualize", "--save-dir", "deep", "--passage-length", "50"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deep/ckpt-10: 2 layers of 16 cells")
    layers = {int(layer) for layer in re.findall(r"^  .{42} +(\d) ", result.stdout,
                                                 re.MULTILINE)}
    assert layers <= {1, 2}
    assert os.path.exists(tmp_path / "plots" / "deep_cells.html")
