"""The page --visualize writes runs the network itself, in JavaScript: what it computes is held
to TensorFlow's from the same checkpoint, under Node and, where it is installed, in headless
Chromium."""
import base64
import json
import re
import urllib.parse

import numpy as np
import pytest

import aux_funcs
import chromium
from cells_page import NODE, Page
from conftest import PLAY, PLAY_FLAGS, run_in_process, session_of, trained_run

needs_node = pytest.mark.skipif(NODE is None, reason="Node is not installed")
needs_chromium = pytest.mark.skipif(chromium.BINARY is None, reason=chromium.WHY_NOT)

def tensorflow_reading(lstm, tf, folder, text, num_layers=1):
    """TensorFlow's reading of `text` with the latest checkpoint in folder/ckpt: the surprise
    at each character after the first (bits) and the next character's probabilities after
    each, from the post's graph, and tanh(c) of every cell after each [chars, layers *
    hidden], from the look inside (which test_the_gates_rebuild_what_dynamic_rnn_gives holds
    to dynamic_rnn)."""
    saved = aux_funcs.latest_checkpoint(str(folder / "ckpt"))
    vocab = saved.info["vocabulary"]
    ids = np.array([vocab.index(ch) for ch in text])
    model = lstm.add_extras(tf, lstm.build_graph(tf, len(vocab), lstm.Options(
        hidden_dim=16, num_layers=num_layers)), look_inside=True)
    with session_of(lstm, tf, model) as session:
        lstm.restore_checkpoint(session, model.saver, saved.prefix)
        probabilities = session.run(model.probabilities, {
            model.x: aux_funcs.encode(ids, len(vocab))[:, np.newaxis],
            model.init_state: np.zeros(model.init_state.shape, np.float32)})
        seen = lstm.read_passage(session, model.inside, text, ids)
    return -np.log2(probabilities[np.arange(len(ids) - 1), ids[1:]]), seen.activations, \
        probabilities


@pytest.fixture(scope="module")
def page(visualized, play):
    return Page(play / "plots" / "ckpt_cells.html")


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A two-layer run with dropout, and its page."""
    folder = trained_run(tmp_path_factory.mktemp("deep"), "play.txt", PLAY, "--num-layers",
                         "2", "--dropout", "0.3", "--iterations", "20", "--seed", "4",
                         *PLAY_FLAGS)
    result = run_in_process(["--visualize", "--save-dir", "ckpt", "--passage-length", "150"],
                            folder)
    assert result.returncode == 0, result.stderr
    return folder, Page(folder / "plots" / "ckpt_cells.html")


def test_the_page_holds_the_checkpoints_network_and_fetches_nothing(tf, page, play):
    # Nothing fetched from anywhere: every source inline, no requests from the scripts.
    assert [source[:22] for source in re.findall(r'(?:src|href)="([^"]*)"', page.text)] == [
        "data:image/png;base64,"]
    assert not re.search(r"<link|@import|url\(|<iframe|<object", page.text, re.I)
    code = page.scripts["lstm"] + page.scripts["page"]
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(|WebSocket|\bsrc\b", code)
    saved = aux_funcs.latest_checkpoint(str(play / "ckpt"))
    assert page.spec == {"vocab": list(saved.info["vocabulary"]), "hidden": 16, "layers": 1,
                         "forget_bias": 1.0}
    # The kernel, bias, out_w and out_b, exactly as the checkpoint holds them.
    reader = tf.train.load_checkpoint(saved.prefix)
    expected = np.concatenate([reader.get_tensor(name).ravel() for name in (
        "rnn/lstm_cell/kernel", "rnn/lstm_cell/bias", "out_w", "out_b")])
    assert np.array_equal(np.frombuffer(base64.b64decode(page.weights), "<f4"), expected)
    assert page.passage == PLAY[len(PLAY) - round(len(PLAY) * 0.1):][:120]
    assert len(page.cells) == len(aux_funcs.FEATURES) + 3


# The page sums z_t W in WebAssembly where it can, in plain JavaScript where it cannot.
PRODUCTS = pytest.mark.parametrize("kind", ["WebAssembly", "JavaScript"])


@needs_node
@PRODUCTS
def test_the_pages_javascript_reads_as_tensorflow_does(lstm, tf, page, play, kind):
    every_cell = [[1, index] for index in range(16)]
    read = page.read_in_node(cells=every_cell, web_assembly=kind == "WebAssembly")
    assert read["kind"] == kind
    bits, activations, probabilities = tensorflow_reading(lstm, tf, play, page.passage)
    assert read["bits"][0] is None and all(read["known"])
    np.testing.assert_allclose(read["bits"][1:], bits, atol=1e-3)
    np.testing.assert_allclose(read["c"], activations, atol=1e-3)
    # The five likeliest next characters after each, as pointing shows them.
    for t, top in enumerate(read["top"]):
        np.testing.assert_allclose([p for _, p in top], np.sort(probabilities[t])[::-1][:5],
                                   atol=1e-5)
        assert all(abs(probabilities[t, index] - p) < 1e-5 for index, p in top)
    # Closer still than asked: the state is kept in double precision.
    assert np.max(np.abs(np.array(read["bits"][1:]) - bits)) < 1e-4


@needs_node
@PRODUCTS
def test_two_layers_read_as_tensorflow_does(lstm, tf, deep, kind):
    folder, deep_page = deep
    assert deep_page.spec["layers"] == 2
    every_cell = [[layer, index] for layer in (1, 2) for index in range(16)]
    read = deep_page.read_in_node(cells=every_cell, web_assembly=kind == "WebAssembly")
    assert read["kind"] == kind
    bits, activations, _ = tensorflow_reading(lstm, tf, folder, deep_page.passage, 2)
    np.testing.assert_allclose(read["bits"][1:], bits, atol=1e-3)
    np.testing.assert_allclose(read["c"], activations, atol=1e-3)


@needs_node
def test_unknown_characters_are_skipped_as_if_absent(lstm, tf, page, play):
    passage = "Zoë: KING.\nNow is the winter ✓of our"
    read = page.read_in_node(passage=passage, cells=[[1, 3]])
    known = [ch in page.spec["vocab"] for ch in passage]
    assert read["known"] == known and known.count(False) == 4
    bits, activations, _ = tensorflow_reading(
        lstm, tf, play, "".join(ch for ch in passage if ch in page.spec["vocab"]))
    kept = [value for value, is_known in zip(read["bits"], known) if is_known]
    assert kept[0] is None
    np.testing.assert_allclose(kept[1:], bits, atol=1e-3)
    np.testing.assert_allclose([c for c in read["c"] if c is not None], activations[:, [3]],
                               atol=1e-3)
    assert all(read["bits"][t] is None and read["c"][t] is None
               for t in range(len(passage)) if not known[t])


@needs_node
@pytest.mark.parametrize("at", [0, 31, 32, 70, 119])
def test_an_edit_reads_on_from_where_it_changed_as_a_fresh_reading_would(page, at):
    edited = page.passage[:at] + "my lord, [Aside]" + page.passage[at + 5:]
    fresh = page.read_in_node(passage=edited)
    after_edit = page.read_in_node(edit={"at": at, "text": edited[at:]})
    # Everything read is the same; only the time it took differs.
    del fresh["seconds"], after_edit["seconds"]
    assert after_edit == fresh


@needs_node
def test_drawn_characters_follow_the_probabilities_at_a_temperature(lstm, tf, page, play):
    temperature = 0.5
    at = (np.arange(2000) + 0.5) / 2000
    read = page.read_in_node(draws={"temperature": temperature, "at": at.tolist()})
    last = tensorflow_reading(lstm, tf, play, page.passage)[2][-1]
    expected = last.astype(np.float64) ** (1 / temperature)
    expected /= expected.sum()
    counts = np.array([read["drawn"].count(ch) for ch in page.spec["vocab"]]) / len(at)
    # Evenly spaced draws land in each character's share to within one draw's width.
    np.testing.assert_allclose(counts, expected, atol=1.5 / len(at) + 1e-4)


def random_network(hidden, layers, vocab, seed=0):
    rng = np.random.default_rng(seed)
    weights = []
    for layer in range(layers):
        inputs = vocab if layer == 0 else hidden
        weights += [rng.normal(0, 0.1, ((inputs + hidden), 4 * hidden)),
                    rng.normal(0, 0.1, 4 * hidden)]
    weights += [rng.normal(0, 0.1, (hidden, vocab)), rng.normal(0, 0.1, vocab)]
    return {"vocab": [chr(32 + k) for k in range(vocab)], "hidden": hidden,
            "forget_bias": 1.0, "weights": weights}


@needs_node
def test_webassembly_pads_what_is_not_sixteen_columns_wide(tmp_path):
    """Ten cells a layer give 40 columns of gates: WebAssembly sums 48, the last 8 zero, and
    must give what plain JavaScript gives (which the tests above hold to TensorFlow)."""
    network = random_network(10, 2, 7, seed=3)
    network["weights"] = [3 * weights for weights in network["weights"]]
    passage = "".join(np.random.default_rng(4).choice(network["vocab"], 60))
    page = Page(aux_funcs.write_cells_page(tmp_path / "p.html", "odd", [], passage, network,
                                           [("found", [("a cell", 2, 9)])], b"PNG"))
    fast, plain = (page.read_in_node(cells=[[1, 0], [2, 9]], web_assembly=kind)
                   for kind in (True, False))
    assert (fast["kind"], plain["kind"]) == ("WebAssembly", "JavaScript")
    np.testing.assert_allclose(fast["bits"][1:], plain["bits"][1:], atol=1e-5)
    np.testing.assert_allclose(fast["c"], plain["c"], atol=1e-5)
    assert np.std(plain["bits"][1:]) > 0.1


@pytest.mark.parametrize("layers, most", [(1, 8 * 2**20), (2, 20 * 2**20)])
def test_a_page_of_500_cells_a_layer_weighs_what_the_issue_allows(tmp_path, layers, most):
    """Shakespeare's 84 characters, a passage of the longest allowed and a picture of 300 KB:
    at most 8 MB with one layer of 500, 20 MB with two."""
    network = random_network(500, layers, 84)
    passage = "".join(np.random.default_rng(1).choice(list("abc de\n"), 20_000))
    path = aux_funcs.write_cells_page(
        tmp_path / "p.html", "big", ["note"], passage, network,
        [("found", [(f"cell {k}", 1, k) for k in range(8)])], b"\x89PNG" * 75_000)
    assert path.stat().st_size <= most


READY = "document.body.dataset.state === 'ready'"


def open_page(browser, page, passage=None):
    url = page.uri + ("" if passage is None else "#text=" + urllib.parse.quote(passage))
    browser.open(url, READY)


SURPRISE_OF_PAGE = ("[...document.querySelectorAll('#surprise span')].map((span) => "
                    "span.className === 'unknown' ? 'unknown' : span.dataset.bits ?? null)")


@needs_chromium
def test_chromium_opens_a_link_with_a_passage_and_reads_as_tensorflow_does(lstm, tf, page,
                                                                          play, tmp_path):
    passage = "QUEEN.\n\"Summer\" by this sun of York, my lord Zeus.\n[Aside]"
    with chromium.Chromium() as browser:
        open_page(browser, page, passage)
        surprise = browser.evaluate(SURPRISE_OF_PAGE)
        assert browser.evaluate("document.getElementById('passage').value") == passage
        skipped = browser.evaluate("document.getElementById('skipped').textContent")
        status = browser.evaluate("document.getElementById('status').textContent")
        browser.screenshot(tmp_path / "page.png")
    assert [value == "unknown" for value in surprise] == [
        ch not in page.spec["vocab"] for ch in passage]
    assert '"Z"' in skipped and "does not know" in skipped
    known = "".join(ch for ch in passage if ch in page.spec["vocab"])
    bits, _, _ = tensorflow_reading(lstm, tf, play, known)
    shown = [value for value in surprise if value != "unknown"]
    assert shown[0] is None
    np.testing.assert_allclose([float(value) for value in shown[1:]], bits, atol=1e-3)
    assert f"{len(passage)} characters, {np.mean(bits):.4f} bits" in status
    assert (tmp_path / "page.png").stat().st_size > 20_000, "the screenshot looks empty"


@needs_chromium
def test_in_chromium_stop_ends_the_writing_where_it_is(page):
    with chromium.Chromium() as browser:
        open_page(browser, page)
        browser.evaluate("document.getElementById('count').value = 100000; "
                         "document.getElementById('write').click()")
        browser.wait_until("document.body.dataset.state === 'writing' && "
                           "document.getElementById('write').textContent === 'Stop'")
        browser.evaluate("document.getElementById('write').click()")
        browser.wait_until(READY)
        status = browser.evaluate("document.getElementById('status').textContent")
        passage = browser.evaluate("document.getElementById('passage').value")
        spans = browser.evaluate("document.querySelectorAll('#surprise span').length")
        label = browser.evaluate("document.getElementById('write').textContent")
    written = int(re.match(r"Wrote ([\d,]+) characters", status).group(1).replace(",", ""))
    assert 0 < written < 100000
    assert len(passage) == len(page.passage) + written == spans
    assert label == "Let it write"


@needs_chromium
@pytest.mark.parametrize("address", ["#text=%E0%A4%A", "#text=", "#text=%F0%9F%8E%AD"])
def test_in_chromium_the_page_never_breaks(page, address):
    """A link that is not percent-encoding, an empty passage, a passage of nothing the model
    knows: the page says so, and writes on from it."""
    with chromium.Chromium() as browser:
        browser.open(page.uri + address, READY)
        passage = browser.evaluate("document.getElementById('passage').value")
        notes = browser.evaluate("['address-note', 'skipped', 'status'].map("
                                 "(id) => document.getElementById(id).textContent)")
        browser.evaluate("document.getElementById('count').value = 30; "
                         "document.getElementById('write').click()")
        browser.wait_until(READY)
        written = browser.evaluate("document.getElementById('passage').value")
    if address == "#text=%E0%A4%A":
        assert passage == page.passage and "not a percent-encoded passage" in notes[0]
    elif address == "#text=":
        assert passage == "" and notes[2].endswith("The passage: 0 characters.")
    else:
        assert passage == "\U0001f3ad" and "does not know" in notes[1]
    assert written.startswith(passage) and len(written) == len(passage) + 30


@needs_chromium
def test_in_chromium_typing_adding_a_cell_and_writing_follow(lstm, tf, page, play):
    typed = "KING.\nNow is the winter of our"
    with chromium.Chromium() as browser:
        open_page(browser, page)
        default_rows = browser.evaluate("document.querySelectorAll('#surprise span').length")
        browser.evaluate(f"""(() => {{
            const box = document.getElementById('passage');
            box.value = {json.dumps(typed)};
            box.dispatchEvent(new Event('input'));
            document.getElementById('layer').value = 1;
            document.getElementById('index').value = 11;
            document.querySelector('#add button').click();
        }})()""")
        browser.wait_until(READY)
        added = browser.evaluate(
            "[...document.querySelectorAll('#added .row span')].map((s) => s.dataset.c)")
        pointed = browser.evaluate("""(() => {
            const span = document.querySelectorAll('#surprise span')[5];
            span.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
            return span.title;
        })()""")
        address = browser.evaluate("decodeURIComponent(location.hash)")
        controls = browser.evaluate("""(() => {
            const t = document.getElementById('temperature');
            return [t.min, t.max, document.getElementById('count').value];
        })()""")
        browser.evaluate("document.getElementById('count').value = 50; "
                         "document.getElementById('write').click()")
        browser.wait_until(READY)
        after = browser.evaluate(SURPRISE_OF_PAGE)
        cells = browser.evaluate("[...document.querySelectorAll('.row[data-layer]')].map("
                                 "(row) => row.children.length)")
        written = browser.evaluate("document.getElementById('passage').value")
        status = browser.evaluate("document.getElementById('status').textContent")
    assert default_rows == 120
    assert address == "#text=" + typed
    assert controls == ["0.2", "2", "200"]
    bits, activations, probabilities = tensorflow_reading(lstm, tf, play, typed)
    np.testing.assert_allclose([float(c) for c in added], activations[:, 11], atol=1e-3)
    likeliest = np.argmax(probabilities[5])
    assert pointed.startswith(
        f"{bits[4]:.2f} bits; next: {aux_funcs.shown_character(page.spec['vocab'][likeliest])} "
        f"{100 * probabilities[5, likeliest]:.1f}%  "), pointed
    assert written.startswith(typed) and len(written) == len(typed) + 50
    assert len(after) == len(written) and all(value is not None for value in after[1:])
    assert set(cells) == {len(written)}
    assert status.startswith("Wrote 50 characters in ")
    bits, _, _ = tensorflow_reading(lstm, tf, play, written)
    np.testing.assert_allclose([float(value) for value in after[1:]], bits, atol=1e-3)

