"""Helpers of tf-lstm-char that need no TensorFlow: numpy, matplotlib and the standard library.

The first part is the post's own `aux_funcs`: `load` a text and its vocabulary, `encode` ids
one-hot, a `BatchGenerator` of one-hot training windows (the role of the post's `tf_gen`), and
`plot` the loss. Beside it, what --visualize draws: features of a text, statistics of the
cells against them, the picture and the page. Then what the program adds around the post: the
text as a compact array of ids and its held-out part, files written atomically, the files that
sit beside a TensorFlow checkpoint, checks of the user's input, and the console.
"""
import base64
import errno
import hashlib
import html
import json
import math
import os
import re
import signal
import time
import zipfile
from collections import namedtuple

import matplotlib
import numpy as np
from matplotlib.figure import Figure


class UserError(Exception):
    """A problem with the user's input, reported as one line, without a traceback."""


# The post ---------------------------------------------------------------------------------

def load(path, encoding="utf-8"):
    """Read a text file and build its character vocabulary.

    Returns (text, char_to_idx, idx_to_char, vocab_size). The vocabulary is sorted, so the
    same text always gives the same ids, on any machine and in any run. The usual ways a file
    can be wrong (missing, a folder, unreadable, undecodable, empty, binary) raise UserError.
    """
    try:
        with open(path, encoding=encoding) as handle:
            text = handle.read()
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
    chars = sorted(set(text))
    char_to_idx = {ch: i for i, ch in enumerate(chars)}
    idx_to_char = {i: ch for i, ch in enumerate(chars)}
    return text, char_to_idx, idx_to_char, len(chars)


def encode(ids, vocab_size):
    """One-hot encode an array of ids of any shape: shape ids.shape + (vocab_size,), float32."""
    ids = np.asarray(ids)
    one_hot = np.zeros(ids.shape + (vocab_size,), dtype=np.float32)
    np.put_along_axis(one_hot, ids[..., np.newaxis].astype(np.intp), 1.0, axis=-1)
    return one_hot


class BatchGenerator:
    """The post's `tf_gen`: an endless iterator of (inputs, targets) training windows.

    Each is one-hot, time-major, of shape (seq_length, batch_size, vocab_size), made with
    `encode` from the compact array of ids one window at a time; targets are the inputs
    shifted by one character. The text is cut into `batch_size` contiguous tracks read side by
    side (see `tracks`); with batch_size 1 the one track is the whole text. When a track has
    fewer than seq_length + 1 ids left, reading wraps to its start, as the post's does.

    `position` is where the next window starts, to resume from; `restarted` says that the
    window just given starts the text again, where a caller that carries the LSTM state
    from window to window resets it.
    """

    def __init__(self, ids, seq_length, vocab_size, batch_size=1, position=0):
        self.tracks = tracks(ids, batch_size)
        if len(self.tracks) < seq_length + 1:
            raise ValueError(f"tracks of {len(self.tracks)} characters are too short for "
                             f"windows of {seq_length} + 1")
        self.seq_length, self.vocab_size = seq_length, vocab_size
        self.position, self.restarted = position, False

    def __iter__(self):
        return self

    def __next__(self):
        if self.position + self.seq_length + 1 > len(self.tracks):
            self.position = 0
        self.restarted = self.position == 0
        window = encode(self.tracks[self.position:self.position + self.seq_length + 1],
                        self.vocab_size)
        self.position += self.seq_length
        return window[:-1], window[1:]


def plot(loss_hist, smooth_loss_hist, it, it_per_epoch, name, plots_dir="plots",
         val_points=(), val_label="validation loss (held-out text)"):
    """Draw the raw and smoothed loss, the validation loss and the epoch starts to a PNG.

    `loss_hist` and `smooth_loss_hist` hold one value per iteration, index 0 being the
    loss before training; `it` is the number of iterations done; `val_points` are
    (iterations done, validation loss) pairs, drawn as `val_label`. The file is
    `<plots_dir>/<name>_loss.png`, written atomically. Returns its path.
    """
    fig = Figure(figsize=(10, 5), dpi=100)
    ax = fig.subplots()
    steps = np.arange(len(loss_hist))
    ax.plot(steps, loss_hist, color="tab:blue", alpha=0.25, linewidth=0.8,
            label="training loss")
    ax.plot(steps, smooth_loss_hist, color="tab:blue", linewidth=1.8,
            label="training loss, smoothed (0.999 moving average)")
    series = [loss_hist, smooth_loss_hist]
    if len(val_points):
        val_steps, val_losses = zip(*val_points)
        ax.plot(val_steps, val_losses, color="tab:orange", marker=".", linewidth=1.2,
                label=val_label)
        series.append(val_losses)
    epochs = [s for s in epoch_starts(it, it_per_epoch) if s < len(smooth_loss_hist)]
    ax.plot(epochs, [smooth_loss_hist[s] for s in epochs], linestyle="", marker="o",
            color="tab:red", label="start of an epoch")
    ax.set_ylim(*fitted_ylim(*series))
    ax.set_xlim(0, max(len(loss_hist) - 1, 1))
    ax.set_title(f"Loss on {name}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", framealpha=0.9)
    os.makedirs(plots_dir, exist_ok=True)
    path = loss_plot_path(plots_dir, name)
    write_atomically(path, lambda handle: fig.savefig(handle, format="png"))
    return path


def loss_plot_path(plots_dir, name):
    return os.path.join(plots_dir, f"{name}_loss.png")


# Beyond the post: a look inside -----------------------------------------------------------
# What a trained network's cells track: features of the text to compare them with, their
# statistics over held-out text, and the picture and the page that show them.

def line_position(text):
    """For each character, how many characters of its line come before it."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    index = np.arange(len(codes))
    # Each newline starts a line at the next character; a character's line starts at the
    # latest such start at or before it.
    starts = np.maximum.accumulate(np.where(codes == ord("\n"), index + 1, 0))
    line_start = np.concatenate([[0], starts[:-1]])
    return (index - line_start).astype(np.float64)


def inside_marks(text, opening, closing):
    """1.0 for each character read after an opening mark and before its closing mark (the
    closing mark itself counts as outside), else 0.0. Marks that open and close alike (as
    quotation marks) alternate; others nest."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if opening == closing:
        return (np.cumsum(codes == ord(opening)) % 2).astype(np.float64)
    depth = np.cumsum(codes == ord(opening)) - np.cumsum(codes == ord(closing))
    # A closing mark with nothing open is passed over: depth counts from the lowest so far.
    depth -= np.minimum(np.minimum.accumulate(depth), 0)
    return (depth > 0).astype(np.float64)


def in_capital_line(text):
    """1.0 for each character of a line whose letters, two or more, are all capitals: in the
    plays, a speaker's name; else 0.0."""
    values = []
    for line in text.split("\n"):
        letters = [ch for ch in line if ch.isalpha()]
        capital = len(letters) >= 2 and all(ch.isupper() for ch in letters)
        values.append(np.full(len(line) + 1, float(capital)))  # its newline too
    return np.concatenate(values)[:len(text)]


def word_start(text):
    """1.0 for each letter that follows a character that is not one (the start of a word),
    else 0.0."""
    letters = np.array([ch.isalpha() for ch in text], dtype=bool)
    after_other = np.concatenate([[True], ~letters[:-1]])
    return (letters & after_other).astype(np.float64)


# The features cells are compared with: a name, and one value per character of a text, for
# the state the network is in once it has read that character.
FEATURES = {
    "position in the line": line_position,
    "inside [stage directions]": lambda text: inside_marks(text, "[", "]"),
    'inside "quotation marks"': lambda text: inside_marks(text, '"', '"'),
    "in a line of capitals (a speaker's name)": in_capital_line,
    "start of a word": word_start,
}


def telling_excerpt(text, lines, width):
    """Where in `text` to start the excerpt_lines that show the most: at the start of a
    line, where the most features change value within the excerpt; of those, where the
    excerpt is longest; of those, the earliest."""
    changes = np.stack([np.diff(feature(text), prepend=np.nan) != 0
                        for feature in FEATURES.values()])
    starts = [0] + [i + 1 for i, ch in enumerate(text[:-1]) if ch == "\n"]
    ends = [excerpt_lines(text, start, lines, width)[-1][1] for start in starts]
    shown = [(changes[:, start + 1:end].any(axis=1).sum(), end - start)
             for start, end in zip(starts, ends)]
    return starts[max(range(len(starts)), key=lambda k: (shown[k], -k))]


def excerpt_lines(text, start, lines=4, width=80):
    """The excerpt of `text` from `start` as the picture shows it: up to `lines` lines of at
    most `width` characters, each (begin, end) in `text`. A line ends after its newline (which
    it shows) or, longer than `width`, is wrapped."""
    spans = []
    while len(spans) < lines and start < len(text):
        newline = text.find("\n", start, start + width)
        end = start + width if newline < 0 else newline + 1
        spans.append((start, min(end, len(text))))
        start = end
    return spans


class CellStatistics:
    """What is learned of the cells over a text read window by window: each cell's Pearson r
    with each feature, and how often each of its gates is saturated.

    `add` takes, for the same steps: the cells' activations [steps, cells], the gates
    [steps, gates, cells] and the features [steps, features]. Sums are kept in float64, so
    that a long text costs no more memory than a window.
    """

    LOW, HIGH = 0.1, 0.9  # a gate below LOW is left-saturated, above HIGH right-saturated

    def __init__(self):
        self.count = 0
        self.sums = None

    def add(self, activations, gates, features):
        a = np.asarray(activations, dtype=np.float64)
        f = np.asarray(features, dtype=np.float64)
        window = {"a": a.sum(0), "aa": (a * a).sum(0), "f": f.sum(0), "ff": (f * f).sum(0),
                  "fa": f.T @ a, "low": (gates < self.LOW).sum(0),
                  "high": (gates > self.HIGH).sum(0)}
        self.sums = window if self.sums is None else {
            key: self.sums[key] + value for key, value in window.items()}
        self.count += len(a)

    def spread(self, name):
        """The root of the summed squared deviations from the mean, of the features ("f") or
        of the cells ("a")."""
        n, s = self.count, self.sums
        return np.sqrt(np.maximum(s[name + name] - s[name] ** 2 / n, 0))

    def correlations(self):
        """Pearson r of each feature with each cell: [features, cells]; 0 where either
        does not vary."""
        s = self.sums
        covariance = s["fa"] - np.outer(s["f"], s["a"]) / self.count
        scale = np.outer(self.spread("f"), self.spread("a"))
        return np.divide(covariance, scale, out=np.zeros_like(covariance), where=scale > 1e-9)

    def feature_varies(self):
        """Whether each feature took more than one value."""
        return self.spread("f") ** 2 > 1e-9

    def saturation(self):
        """The fraction of steps each gate of each cell was left- and right-saturated:
        two arrays [gates, cells]."""
        return self.sums["low"] / self.count, self.sums["high"] / self.count


# The gates in the order the saturation arrays hold them, with the colour each is drawn in.
GATES = (("forget gate", "tab:blue"), ("input gate", "tab:green"), ("output gate", "tab:red"))


def shown_character(ch):
    """A character as the page and the picture show it: a newline as a return arrow, other
    characters that print nothing as a middle dot."""
    if ch == "\n":
        return "\u21b5"
    return ch if ch.isprintable() else "\u00b7"


def plot_cells(path, title, excerpt, surprise, rows, saturation, width=80):
    """Draw what the cells track to a PNG, atomically: on the left, the lines of `excerpt`
    (a list of strings) shaded by the network's surprise at each character (bits) and again
    by each of `rows` ([(label, tanh(c) per character of the lines joined)]); on the right,
    each layer's gate saturation as a scatter, above one another. `surprise` runs over the
    lines joined, as the rows' values do. `saturation` is [(left-saturated,
    right-saturated)] a layer, each [gates, cells]. The lines are laid out `width`
    characters wide, however short."""
    width = max(width, *(len(line) for line in excerpt))
    starts = np.cumsum([0] + [len(line) for line in excerpt])
    panel = 0.22 * len(excerpt) + 0.45  # inches: a line of characters each, and a title
    text_height = panel * (len(rows) + 1) + 1.3
    height = max(text_height, 3.9 * len(saturation) + 0.4)
    fig = Figure(figsize=(0.108 * width + 4.6, height), dpi=100)
    grid = fig.add_gridspec(1, 2, width_ratios=[0.108 * width, 3.6], wspace=0.16,
                            left=0.02, right=0.98, top=1 - 0.7 / height, bottom=0.35 / height)
    fig.suptitle(title, fontsize=11, x=0.02, y=1 - 0.1 / height, ha="left", va="top")
    left = grid[0, 0].subgridspec(len(rows) + 2, 1, hspace=0.5, height_ratios=[panel] * (
        len(rows) + 1) + [1.3 + height - text_height])
    surprise = np.nan_to_num(np.asarray(surprise, dtype=float), nan=0.0)
    # Surprise from white to orange; a cell from blue (-1) through white to red (+1); both
    # kept light enough to read the text on.
    shades = [("surprise (bits)", "Oranges", 0.0, 1.6 * max(float(surprise.max()), 1e-9), 1,
               surprise)]
    shades += [(label, "bwr", -1.0, 1.0, 0.6, values) for label, values in rows]
    for row, (label, colormap, low, high, alpha, values) in enumerate(shades):
        axes = fig.add_subplot(left[row, 0])
        values = np.asarray(values, dtype=float)
        laid_out = np.full((len(excerpt), width), np.nan)
        for line, text in enumerate(excerpt):
            laid_out[line, :len(text)] = values[starts[line]:starts[line + 1]]
            for column, ch in enumerate(text):
                axes.text(column, line, shown_character(ch), ha="center", va="center",
                          family="monospace", fontsize=8.5)
        axes.imshow(laid_out, cmap=matplotlib.colormaps[colormap].with_extremes(bad="white"),
                    vmin=low, vmax=high, alpha=alpha, aspect="auto", interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(label, fontsize=8.5, loc="left", pad=3)
    notes = fig.add_subplot(left[-1, 0])
    notes.axis("off")
    notes.text(0, 1, "Above: orange is the network's surprise at a character; red is a "
               "cell's tanh(c) above 0, blue below 0.\nRight: each point is one cell's gate: "
               "to the right, the share of steps it is nearly shut (below 0.1);\nup, nearly "
               "open (above 0.9). A gate near neither axis works in between; the grey line\n"
               "bounds what the two shares can add up to.", fontsize=8.5, va="top",
               linespacing=1.5)
    right = grid[0, 1].subgridspec(len(saturation), 1, hspace=0.35)
    for layer, (low_share, high_share) in enumerate(saturation):
        axes = fig.add_subplot(right[layer, 0])
        axes.plot([0, 1], [1, 0], color="0.8", linewidth=0.8)
        for (name, colour), low, high in zip(GATES, low_share, high_share):
            axes.scatter(low, high, s=6, alpha=0.5, color=colour, label=name)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_aspect("equal")
        axes.set_xlabel("fraction of steps left-saturated (< 0.1)", fontsize=8)
        axes.set_ylabel("fraction right-saturated (> 0.9)", fontsize=8)
        axes.set_title(f"gate saturation, layer {layer + 1}", fontsize=10)
        axes.legend(fontsize=7, loc="upper right", markerscale=2)
    write_atomically(path, lambda handle: fig.savefig(handle, format="png",
                                                      bbox_inches="tight"))
    return path


def cell_shade(level):
    """The page's class for a cell's value in tenths, -10 to 10: blue below 0, red above."""
    return f"c{'p' if level >= 0 else 'm'}{abs(level)}"


# The page's JavaScript. The first part is the post's LSTM, forward only, and needs nothing
# of a browser (tests run it under Node); the second is the page around it.
PAGE_LSTM_SCRIPT = r""""use strict";
// The post's LSTM, forward only, in plain JavaScript: what TensorFlow's LSTMCell computes,
// from the checkpoint's own weights. In the post's notation, with z_t = [x_t, h_{t-1}], W a
// layer's kernel and b its bias (x_t one-hot in the first layer, the h_t of the layer below
// in the others):
//
//     i, j, f, o = split(z_t W + b)
//     c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(j)
//     h_t = sigmoid(o) * tanh(c_t)
//
// and the next character's probabilities are softmax(h_t out_w + out_b) of the top layer.
// The state is kept in double precision; TensorFlow's in single, which differs by about 1e-6.

// The weights, from the base64 of float32s one after another: each layer's kernel and bias,
// then out_w and out_b. With webAssembly false, z_t W is left to plain JavaScript.
function loadModel(spec, base64, {webAssembly = true} = {}) {
  const floats = new Float32Array(bytesOf(base64).buffer);
  let taken = 0;
  const take = (size) => floats.subarray(taken, (taken += size));
  const V = spec.vocab.length, H = spec.hidden;
  const layers = [];
  for (let l = 0; l < spec.layers; l++) {
    const inputs = l === 0 ? V : H;
    // The first layer's x_t is one-hot: its part of z_t W is a row of W, looked up. The
    // rest of z_t, from row `dense` of W on, is multiplied.
    const dense = l === 0 ? V : 0;
    layers.push({kernel: take((inputs + H) * 4 * H), bias: take(4 * H), dense,
                 rows: inputs + H - dense});
  }
  const model = {vocab: spec.vocab, hidden: H, forgetBias: spec.forget_bias, layers,
                 outW: take(H * V), outB: take(V)};
  if (taken !== floats.length) throw new Error("the weights are not the model's size");
  model.ids = new Map(spec.vocab.map((ch, id) => [ch, id]));
  model.product = (webAssembly && simdProduct(model)) || javaScriptProduct(model);
  return model;
}

function bytesOf(base64) {
  const raw = atob(base64.replace(/\s+/g, ""));
  const bytes = new Uint8Array(raw.length);
  for (let k = 0; k < raw.length; k++) bytes[k] = raw.charCodeAt(k);
  return bytes;
}

// W's rows from `first` on, with the columns that sit together in a vector times W put side by
// side, `width` at a time, row after row: [columns / width][rows][width], zeros beyond
// `columns` up to `padded`.
function packColumns(kernel, first, rows, columns, width, padded = columns) {
  const packed = new Float32Array(rows * padded);
  let p = 0;
  for (let j = 0; j < padded; j += width)
    for (let r = 0; r < rows; r++)
      for (let q = 0; q < width; q++, p++)
        if (j + q < columns) packed[p] = kernel[(first + r) * columns + j + q];
  return packed;
}

// z_t W, of the rows of W that multiply a dense z_t, is nearly all the work: a million
// multiply-adds a character for a layer of 500. JavaScript does it four columns at a time:
// out += v W, for W packed four wide (out as long as W is wide, padded).
function addProduct(out, v, packed, rows) {
  let p = 0;
  for (let j = 0; j < out.length; j += 4) {
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let r = 0; r < rows; r++, p += 4) {
      const x = v[r];
      s0 += packed[p] * x; s1 += packed[p + 1] * x;
      s2 += packed[p + 2] * x; s3 += packed[p + 3] * x;
    }
    out[j] += s0; out[j + 1] += s1; out[j + 2] += s2; out[j + 3] += s3;
  }
}

// The matrices a character's vectors are multiplied by, each packed `width` wide: each
// layer's W, from its row `dense` on, then out_w.
function packedMatrices(model, width) {
  return [...model.layers.map((layer) => ({weights: layer.kernel, first: layer.dense,
                                           rows: layer.rows, columns: 4 * model.hidden})),
          {weights: model.outW, first: 0, rows: model.hidden, columns: model.vocab.length}]
    .map((m) => {
      const padded = Math.ceil(m.columns / width) * width;
      return {...m, padded,
              values: packColumns(m.weights, m.first, m.rows, m.columns, width, padded)};
    });
}

// product(k, v, out): out += v times matrix k of packedMatrices(model).
function javaScriptProduct(model) {
  const packed = packedMatrices(model, 4);
  const sums = new Float64Array(Math.max(...packed.map((m) => m.padded)));
  const product = (k, v, out) => {
    const m = packed[k], some = sums.subarray(0, m.padded);
    some.fill(0);
    addProduct(some, v, m.values, m.rows);
    for (let j = 0; j < m.columns; j++) out[j] += some[j];
  };
  product.kind = "JavaScript";
  return product;
}

// The same sums, where the browser runs WebAssembly with SIMD: some ten times as fast, in
// single precision as TensorFlow sums. The module (352 bytes) is this, in WebAssembly's text:
//   (func (export "addProduct") (param $out $v $w $rows $groups i32)
//     (loop $group                    ;; 16 columns of out at a time, W packed 16 wide
//       (local.set $a0..$a3 (v128.const f32x4 0 0 0 0))
//       (local.set $vp (local.get $v)) (local.set $r (local.get $rows))
//       (loop $row
//         (local.set $x (f32x4.splat (f32.load (local.get $vp))))
//         (local.set $a0 (f32x4.add (local.get $a0)
//                                   (f32x4.mul (v128.load offset=0 (local.get $w)) $x)))
//         ... $a1, $a2, $a3 from offsets 16, 32, 48 ...
//         $w += 64, $vp += 4, (br_if $row (local.tee $r (i32.sub $r 1))))
//       out[0..16] += $a0..$a3, $out += 64, (br_if $group (local.tee $groups (i32.sub ...)))))
// with its memory imported as env.memory.
const PRODUCT_MODULE =
  "AGFzbQEAAAABCQFgBX9/f39/AAIPAQNlbnYGbWVtb3J5AgABAwIBAAcOAQphZGRQcm9kdWN0AAAKpQIBogIC" +
  "An8FewNA/QwAAAAAAAAAAAAAAAAAAAAAIQf9DAAAAAAAAAAAAAAAAAAAAAAhCP0MAAAAAAAAAAAAAAAAAAAA" +
  "ACEJ/QwAAAAAAAAAAAAAAAAAAAAAIQogASEGIAMhBQNAIAYqAgD9EyELIAcgAv0ABAAgC/3mAf3kASEHIAgg" +
  "Av0ABBAgC/3mAf3kASEIIAkgAv0ABCAgC/3mAf3kASEJIAogAv0ABDAgC/3mAf3kASEKIAJBwABqIQIgBkEE" +
  "aiEGIAVBAWsiBQ0ACyAAIAD9AAQAIAf95AH9CwQAIAAgAP0ABBAgCP3kAf0LBBAgACAA/QAEICAJ/eQB/QsE" +
  "ICAAIAD9AAQwIAr95AH9CwQwIABBwABqIQAgBEEBayIEDQALCw==";

function simdProduct(model) {
  if (typeof WebAssembly !== "object") return null;
  const module = bytesOf(PRODUCT_MODULE);
  if (!WebAssembly.validate(module)) return null;
  // In the module's memory: each matrix packed 16 wide, then v, then the sums.
  const packed = packedMatrices(model, 16);
  let floats = 0;
  for (const m of packed) {
    m.start = floats;
    floats += m.values.length;
  }
  const most = (key) => Math.ceil(Math.max(...packed.map((m) => m[key])) / 16) * 16;
  const memory = new WebAssembly.Memory(
    {initial: Math.ceil(4 * (floats + most("rows") + most("padded")) / 65536)});
  const {addProduct} = new WebAssembly.Instance(new WebAssembly.Module(module),
                                                {env: {memory}}).exports;
  const all = new Float32Array(memory.buffer);
  // The weights stay in the module's memory only.
  for (const m of packed) {
    all.set(m.values, m.start);
    delete m.values;
  }
  const v = all.subarray(floats, floats + most("rows")), sums = all.subarray(v.length + floats);
  const product = (k, vector, out) => {
    const m = packed[k];
    v.set(vector);
    sums.fill(0, 0, m.padded);
    addProduct(sums.byteOffset, v.byteOffset, 4 * m.start, m.rows, m.padded / 16);
    for (let j = 0; j < m.columns; j++) out[j] += sums[j];
  };
  product.kind = "WebAssembly";
  return product;
}

const sigmoid = (x) => 1 / (1 + Math.exp(-x));

// c and h of every layer, all zero: the state the post starts each sample from.
function zeroState(model) {
  const zeros = () => model.layers.map(() => new Float64Array(model.hidden));
  return {c: zeros(), h: zeros()};
}

function copyState(state) {
  return {c: state.c.map((c) => c.slice()), h: state.h.map((h) => h.slice())};
}

// One character, by its id, through every layer: the state moves to step t.
function step(model, state, id) {
  const H = model.hidden;
  let below = null;
  model.layers.forEach((layer, l) => {
    const c = state.c[l], h = state.h[l];
    // b, plus x_t's row of W in the first layer; then the rest of z_t times W.
    const zW = new Float64Array(4 * H);
    for (let k = 0; k < 4 * H; k++)
      zW[k] = layer.bias[k] + (l === 0 ? layer.kernel[id * 4 * H + k] : 0);
    let z = h;
    if (l > 0) {
      z = new Float64Array(2 * H);
      z.set(below);
      z.set(h, H);
    }
    model.product(l, z, zW);
    for (let k = 0; k < H; k++) {
      const i = zW[k], j = zW[H + k], f = zW[2 * H + k], o = zW[3 * H + k];
      c[k] = sigmoid(f + model.forgetBias) * c[k] + sigmoid(i) * Math.tanh(j);
      h[k] = sigmoid(o) * Math.tanh(c[k]);
    }
    below = h;
  });
}

// The scores of each next character, h_t out_w + out_b, from the top layer.
function logits(model, state) {
  const scores = Float64Array.from(model.outB);
  model.product(model.layers.length, state.h[state.h.length - 1], scores);
  return scores;
}

// softmax(scores / temperature), less the largest score first so that nothing overflows.
function softmax(scores, temperature = 1) {
  const top = Math.max(...scores);
  const p = scores.map((s) => Math.exp((s - top) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / sum);
}

// A passage as the network reads it, one character at a time: the surprise at each
// character in bits, -log2 p, given those before it; the five likeliest next characters
// after it; and tanh(c) of the cells in `cells` ([layer from 1, index]). A character the
// model does not know is skipped: the state passes over it unchanged.
class Reading {
  constructor(model, cells) {
    this.model = model;
    this.cells = cells;
    this.text = [];      // the characters read, one string each
    this.known = [];     // whether the model knows each
    this.bits = [];      // NaN for the first known character and for those skipped
    this.top = [];       // [[id, p] x 5] after each known character
    this.c = [];         // tanh(c) of each of `cells` after each known character
    this.state = zeroState(model);
    this.p = null;       // the next character's probabilities; null before the first
    this.saved = new Map([[0, copyState(this.state)]]);
  }

  // Every this many characters the state is kept, so that an edit is read from there.
  static get EVERY() { return 32; }

  read(ch) {
    const n = this.text.length, id = this.model.ids.get(ch);
    this.text.push(ch);
    this.known.push(id !== undefined);
    if (id === undefined) {
      this.bits.push(NaN); this.top.push(null); this.c.push(null);
    } else {
      this.bits.push(this.p ? -Math.log2(this.p[id]) : NaN);
      step(this.model, this.state, id);
      this.p = softmax(logits(this.model, this.state));
      this.top.push(likeliest(this.p, 5));
      this.c.push(this.cells.map(([layer, index]) =>
        Math.tanh(this.state.c[layer - 1][index])));
    }
    if ((n + 1) % Reading.EVERY === 0) this.saved.set(n + 1, copyState(this.state));
  }

  // Forget every character from `length` on, as if they had never been read.
  truncate(length) {
    if (length >= this.text.length) return;
    const kept = Math.floor(length / Reading.EVERY) * Reading.EVERY;
    for (const at of this.saved.keys()) if (at > kept) this.saved.delete(at);
    const replay = this.text.slice(kept, length);
    for (const list of [this.text, this.known, this.bits, this.top, this.c]) list.length = kept;
    this.state = copyState(this.saved.get(kept));
    const last = this.known.lastIndexOf(true);
    this.p = last < 0 ? null : softmax(logits(this.model, this.state));
    replay.forEach((ch) => this.read(ch));
  }

  // A next character drawn from softmax(scores / temperature), with `random` in [0, 1).
  draw(temperature, random) {
    const p = this.p ? softmax(logits(this.model, this.state), temperature)
                     : this.model.vocab.map(() => 1 / this.model.vocab.length);
    let left = random;
    for (let id = 0; id < p.length; id++) if ((left -= p[id]) < 0) return this.model.vocab[id];
    return this.model.vocab[p.length - 1];
  }
}

// The `count` likeliest ids in p, as [id, p], likeliest first.
function likeliest(p, count) {
  const best = [];
  p.forEach((x, id) => {
    if (best.length < count || x > best[best.length - 1][1]) {
      best.push([id, x]);
      best.sort((a, b) => b[1] - a[1]);
      best.length = Math.min(best.length, count);
    }
  });
  return best;
}
"""

PAGE_SCRIPT = r""""use strict";
// The page: the passage in a box, read by the network in this page whenever it changes and
// drawn as rows of characters, one shaded by surprise and one per cell by its tanh(c).
const $ = (id) => document.getElementById(id);
const spec = JSON.parse($("spec").textContent);
const model = loadModel(spec, $("weights").textContent);
const box = $("passage"), status = $("status"), skipped = $("skipped");
const SURPRISE_FULL = 8;  // bits: the darkest orange, and beyond
let reading = null;
let drawn = 0;  // characters whose spans in every row are up to date
let job = 0;    // counts up with each reading or writing begun, so that an older one stops
let stop = false;  // set by the Stop button, for the writing under way

const rows = () => [...document.querySelectorAll(".row")];
const cellsOf = (elements) => elements.filter((row) => row.dataset.layer)
  .map((row) => [Number(row.dataset.layer), Number(row.dataset.index)]);
const pause = () => new Promise((resume) => setTimeout(resume));
const escapeHtml = (ch) => ch.replace(/[&<>"]/g, (x) => `&#${x.charCodeAt(0)};`);
// As the Python side shows characters: a newline as a return arrow (still breaking the line
// here), other characters that print nothing as a middle dot.
const showChar = (ch) => ch === "\n" ? "\u21b5" : ch !== " " && /^[\p{C}\p{Z}]$/u.test(ch)
  ? "\u00b7" : ch;

function span(kind, t) {
  const ch = reading.text[t];
  const text = escapeHtml(showChar(ch)) + (ch === "\n" ? "\n" : "");
  if (!reading.known[t]) return `<span class="unknown">${text}</span>`;
  if (kind === null) {
    const bits = reading.bits[t];
    if (Number.isNaN(bits)) return `<span class="s">${text}</span>`;
    const level = Math.round(10 * Math.min(bits, SURPRISE_FULL) / SURPRISE_FULL);
    return `<span class="s${level}" data-bits="${bits.toFixed(5)}">${text}</span>`;
  }
  const value = reading.c[t][kind], level = Math.round(10 * value);
  return `<span class="c${level >= 0 ? "p" : "m"}${Math.abs(level)}" ` +
    `data-c="${value.toFixed(5)}">${text}</span>`;
}

// Every row brought up to the characters read, redrawing only from the first out of date.
function draw() {
  let kind = 0;
  for (const row of rows()) {
    const which = row.dataset.layer ? kind++ : null;
    while (row.children.length > drawn) row.lastChild.remove();
    const spans = [];
    for (let t = drawn; t < reading.text.length; t++) spans.push(span(which, t));
    row.insertAdjacentHTML("beforeend", spans.join(""));
  }
  drawn = reading.text.length;
}

function describe(done) {
  const scored = reading.bits.filter((bits) => !Number.isNaN(bits));
  const mean = scored.reduce((a, b) => a + b, 0) / scored.length;
  status.textContent = `${done} The passage: ${reading.text.length.toLocaleString("en")} ` +
    "characters" + (scored.length ? `, ${mean.toFixed(4)} bits of surprise per character ` +
    "after the first." : ".");
  const unknown = [...new Set(reading.text.filter((_, t) => !reading.known[t]))];
  skipped.textContent = unknown.length ? "Skipped, as characters the model does not know " +
    `(dotted): ${unknown.map((ch) => JSON.stringify(ch)).join(" ")}.` : "";
}

// The passage in the page's address, so that the address shares it.
function keepInAddress() {
  try {
    history.replaceState(null, "", "#text=" + encodeURIComponent(box.value));
  } catch (error) {
    // A browser may refuse to change a file's address; the page works on without it.
  }
}

// Read the box's text from its first character that changed, in slices of about 50 ms, so
// that the page answers while a long passage is read.
async function readBox() {
  const mine = ++job, text = [...box.value], started = performance.now();
  let t = 0;
  while (t < text.length && t < reading.text.length && text[t] === reading.text[t]) t++;
  reading.truncate(t);
  drawn = Math.min(drawn, t);
  document.body.dataset.state = "reading";
  while (t < text.length) {
    const until = performance.now() + 50;
    while (t < text.length && performance.now() < until) reading.read(text[t++]);
    if (t < text.length) {
      status.textContent = `Reading: ${t.toLocaleString("en")} of ` +
        `${text.length.toLocaleString("en")} characters.`;
      await pause();
      if (mine !== job) return;
    }
  }
  draw();
  const seconds = (performance.now() - started) / 1000;
  describe(`Read in ${seconds.toFixed(2)} s (${model.product.kind}).`);
  document.body.dataset.seconds = seconds.toFixed(4);
  document.body.dataset.state = "ready";
}

// Continue the passage by `count` characters drawn at `temperature`, each drawn as it comes,
// after the box as it stands is read to its end.
async function write(count, temperature) {
  await readBox();
  if (reading.text.join("") !== box.value) return;  // typed into meanwhile: that reading goes on
  const mine = ++job, started = performance.now();
  let written = 0;
  stop = false;
  document.body.dataset.state = "writing";
  box.readOnly = true;
  $("write").textContent = "Stop";
  while (written < count && mine === job && !stop) {
    const until = performance.now() + 30;
    while (written < count && performance.now() < until) {
      reading.read(reading.draw(temperature, Math.random()));
      written++;
    }
    draw();
    box.value = reading.text.join("");
    box.scrollTop = box.scrollHeight;
    await pause();
  }
  const seconds = (performance.now() - started) / 1000;
  box.readOnly = false;
  $("write").textContent = "Let it write";
  if (mine !== job) return;  // a cell added meanwhile: the page is read afresh
  describe(`Wrote ${written.toLocaleString("en")} characters in ${seconds.toFixed(2)} s ` +
    `(${Math.round(written / seconds).toLocaleString("en")} a second, ` +
    `${model.product.kind}).`);
  document.body.dataset.seconds = seconds.toFixed(4);
  document.body.dataset.state = "ready";
  keepInAddress();
}

// A new reading from the first character: for the cells of every row now on the page.
function readAfresh() {
  reading = new Reading(model, cellsOf(rows()));
  drawn = 0;
  return readBox();
}

function addCell(event) {
  event.preventDefault();
  const layer = Number($("layer").value), index = Number($("index").value);
  if (!(Number.isInteger(layer) && layer >= 1 && layer <= spec.layers &&
        Number.isInteger(index) && index >= 0 && index < spec.hidden)) {
    $("added-note").textContent = `A layer from 1 to ${spec.layers} and a cell from 0 to ` +
      `${spec.hidden - 1}, please.`;
    return;
  }
  $("added-note").textContent = "";
  const heading = document.createElement("h3"), row = document.createElement("div");
  heading.textContent = `layer ${layer}, cell ${index}`;
  row.className = "row";
  row.dataset.layer = layer;
  row.dataset.index = index;
  $("added").append(heading, row);
  readAfresh();
}

// The five likeliest next characters, or a cell's value, put on a character when pointed at.
function explain(event) {
  const target = event.target;
  if (target.tagName !== "SPAN" || target.title) return;
  const row = target.parentElement, t = Array.prototype.indexOf.call(row.children, target);
  if (!reading.known[t]) {
    target.title = "a character the model does not know: skipped";
  } else if (row.id === "surprise") {
    const bits = reading.bits[t];
    target.title = (Number.isNaN(bits) ? "" : `${bits.toFixed(2)} bits; `) + "next: " +
      reading.top[t].map(([id, p]) => `${showChar(model.vocab[id])} ${(100 * p).toFixed(1)}%`)
        .join("  ");
  } else {
    target.title = Number(target.dataset.c).toFixed(2);
  }
}

box.addEventListener("input", () => { readBox(); keepInAddress(); });
$("rows").addEventListener("mouseover", explain);
$("add").addEventListener("submit", addCell);
$("temperature").addEventListener("input",
  () => { $("temperature-shown").textContent = Number($("temperature").value).toFixed(2); });
$("write").addEventListener("click", (event) => {
  event.preventDefault();
  if (document.body.dataset.state === "writing") {
    stop = true;
    return;
  }
  const count = Math.round(Number($("count").value));
  write(Number.isFinite(count) ? Math.max(1, Math.min(count, 100000)) : 200,
        Number($("temperature").value));
});
if (location.hash.startsWith("#text=")) {
  try {
    box.value = decodeURIComponent(location.hash.slice("#text=".length));
  } catch (error) {
    $("address-note").textContent = "The address's #text= is not a percent-encoded " +
      "passage; here is the page's own.";
  }
}
readAfresh();
"""


def write_cells_page(path, title, notes, passage, model, sections, picture):
    """Write a page that needs nothing outside itself (no scripts, fonts or styles from
    elsewhere; the picture inline), atomically. It holds the network: `model` is a dict of
    "vocab" (a list of characters), "hidden", "forget_bias" and "weights" (each layer's kernel
    and bias, then out_w and out_b, numpy arrays as the checkpoint has them), embedded as
    float32 and read by the page's own JavaScript (PAGE_LSTM_SCRIPT). The page shows
    `passage` in a box that can be edited, then reads it as the network does, in the browser,
    whenever it changes: a row shaded by the surprise at each character (bits), with the
    five likeliest next characters shown on pointing; then `sections`, each (heading,
    [(label, layer from 1, index)]), a row per cell shaded by its tanh(c); then a form to add
    any cell's row, and the PNG bytes of `picture`. It can continue the passage, drawing
    characters from the network. `notes` are paragraphs of plain text under the title.
    Opened with #text= and a percent-encoded passage, it shows that passage instead."""
    weights = [np.asarray(array, dtype="<f4") for array in model["weights"]]
    hidden, layers = int(model["hidden"]), (len(weights) - 2) // 2
    spec = {"vocab": list(model["vocab"]), "hidden": hidden, "layers": layers,
            "forget_bias": float(model["forget_bias"])}
    # In a script element a "</" could end it early: "<" is spelled as an escape instead.
    spec_json = json.dumps(spec, ensure_ascii=False).replace("<", "\\u003c")
    encoded_weights = base64.b64encode(b"".join(array.tobytes() for array in weights))

    def rows(cells):
        return "".join(f'<h3>{html.escape(label)}</h3>\n<div class="row" data-layer="{layer}" '
                       f'data-index="{index}"></div>\n' for label, layer, index in cells)

    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p>{html.escape(note)}</p>" for note in notes]
    body += [
        "<noscript><p>The network runs in this page, in JavaScript, which is off: turn it on "
        "to see the rows.</p></noscript>",
        "<h2>The passage</h2>",
        "<p>Type or paste: the network, in this page, reads the passage again from the first "
        "character that changed, and the rows below follow. Its address then holds the "
        "passage (<code>#text=</code>), to share it.</p>",
        # A textarea drops a newline straight after its tag: one is given, to keep the
        # passage's own.
        f'<textarea id="passage" rows="8" spellcheck="false">\n{html.escape(passage)}'
        "</textarea>",
        '<form class="controls" id="writing"><label>Continue it by <input id="count" '
        'type="number" min="1" max="100000" value="200"> characters</label> <label>at '
        'temperature <input id="temperature" type="range" min="0.2" max="2" step="0.05" '
        'value="1"></label> <output id="temperature-shown" for="temperature">1.00</output> '
        '<button id="write">Let it write</button> (below 1, likelier characters; above, more '
        "adventurous)</form>",
        '<p id="status">Reading the passage...</p>', '<p id="skipped"></p>',
        '<p id="address-note"></p>',
        '<div id="rows">',
        "<h2>Surprise: -log2 p of each character, given those before it</h2>",
        "<p>Point at a character for its surprise and the five characters the network "
        "thought likeliest to come next.</p>", '<div class="row" id="surprise"></div>']
    for heading, cells in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", rows(cells)]
    body += [
        "<h2>Any cell you choose</h2>",
        f'<form class="controls" id="add"><label>Layer <input id="layer" type="number" '
        f'min="1" max="{layers}" value="1"></label> <label>cell <input id="index" '
        f'type="number" min="0" max="{hidden - 1}" value="0"></label> <button>Add its row'
        "</button></form>",
        '<p id="added-note"></p>', '<div id="added"></div>', "</div>"]
    encoded = base64.b64encode(picture).decode("ascii")
    body += ["<h2>The picture: an excerpt, and the gates' saturation</h2>",
             f'<img alt="an excerpt shaded by surprise and cells; gate saturation per layer" '
             f'src="data:image/png;base64,{encoded}">',
             f'<script type="application/json" id="spec">{spec_json}</script>',
             '<script type="application/octet-stream" id="weights">',
             encoded_weights.decode("ascii"), "</script>",
             f'<script id="lstm">\n{PAGE_LSTM_SCRIPT}</script>',
             f'<script id="page">\n{PAGE_SCRIPT}</script>']
    styles = ["body { font-family: sans-serif; max-width: 70em; margin: 1em auto; "
              "padding: 0 1em; }",
              ".row, textarea { font-family: monospace; font-size: 0.95em; "
              "white-space: pre-wrap; line-height: 1.5; border: 1px solid #ddd; "
              "padding: 0.4em; }",
              "textarea { width: 100%; box-sizing: border-box; }",
              ".controls { margin: 0.6em 0; }",
              "#count, #layer, #index { width: 5em; }",
              "#skipped, #added-note, #address-note { color: #a33; }",
              ".unknown { outline: 1px dotted #a33; color: #a33; }",
              "img { max-width: 100%; }"]
    # The strongest shades stay light enough to read the characters on.
    styles += [f".s{level} {{ background: rgba(255, 140, 0, {0.08 * level:.2f}); }}"
               for level in range(11)]
    styles += [f".{cell_shade(level)} {{ background: rgba("
               f"{'220, 40, 40' if level >= 0 else '40, 80, 220'}, {0.07 * abs(level):.2f}); }}"
               for level in range(-10, 11)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n" + "\n".join(styles)
            + "\n</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
    write_text_atomically(path, page)
    return path


# Beyond the post: the text as ids ---------------------------------------------------------

def text_to_ids(text, char_to_idx, chunk=1 << 22):
    """Map every character of `text` to its vocabulary id, a few million at a time.

    Each chunk becomes code points in one numpy step, then ids through a table indexed by
    code point (at most 1.1 million entries, for the largest code point Unicode has): on a
    100 MB text four times as fast as a binary search of the vocabulary. The ids come back in
    the smallest unsigned integer type that holds the vocabulary (one byte per character for
    up to 256 distinct characters); working in chunks keeps the memory for a large text near
    the size of the result.
    """
    unknown = len(char_to_idx)
    codes = np.array([ord(ch) for ch in char_to_idx], dtype=np.uint32)
    table = np.full(int(codes.max(initial=0)) + 2, unknown, dtype=np.min_scalar_type(unknown))
    table[codes] = list(char_to_idx.values())
    ids = np.empty(len(text), dtype=np.min_scalar_type(max(unknown - 1, 0)))
    for start in range(0, len(text), chunk):
        text_codes = np.frombuffer(text[start:start + chunk].encode("utf-32-le"),
                                   dtype=np.uint32)
        found = table[np.minimum(text_codes, len(table) - 1)]
        if np.any(found == unknown):
            raise ValueError("text has characters that are not in the vocabulary")
        ids[start:start + len(found)] = found
    return ids


def split_train_val(ids, val_fraction):
    """Split the text's ids into (train, held_out): the last `val_fraction` of the text is held
    out, so the network never trains on it; 0 keeps the whole text for training."""
    held_out = int(round(len(ids) * val_fraction))
    return ids[:len(ids) - held_out], ids[len(ids) - held_out:]


def tracks(ids, count):
    """Cut `ids` into `count` contiguous tracks of equal length, side by side: a view of
    shape (track length, count), time-major. The few ids that do not fill a track are left
    out."""
    length = len(ids) // count
    return np.reshape(ids[:length * count], (count, length)).T


def check_text_fits(path, train_ids, held_out, seq_length, batch_size, val_fraction):
    """Refuse, in one line, a text too short to cut into the windows asked for."""
    count = len(train_ids)
    if count < seq_length + 1:
        raise UserError(f"{path}: {count} characters to train on"
                        + (f" (after holding out {held_out})" if held_out else "")
                        + f" is too short for --seq-length {seq_length}; it needs at "
                        f"least {seq_length + 1}")
    track = count // batch_size
    if track < seq_length + 1:
        raise UserError(f"--batch-size {batch_size} cuts the {count} characters to train on "
                        f"into tracks of {track}, shorter than one window of --seq-length "
                        f"{seq_length} + 1; use a smaller batch")
    if val_fraction and held_out < 2:
        raise UserError(f"{path}: --val-fraction {val_fraction} holds out {held_out} "
                        "characters, too few to evaluate; give a larger one, or 0")


def available_memory(meminfo="/proc/meminfo", cgroup="/sys/fs/cgroup"):
    """Bytes of memory a new allocation can still get: the kernel's MemAvailable, or what is
    left under this process's cgroup limit where that is smaller; None where neither can be
    read (not Linux)."""
    figures = []
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    figures.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(os.path.join(cgroup, "memory.max")) as limit, \
                open(os.path.join(cgroup, "memory.current")) as used:
            ceiling = limit.read().strip()
            if ceiling != "max":
                figures.append(max(0, int(ceiling) - int(used.read().strip())))
    except (OSError, ValueError):
        pass
    return min(figures) if figures else None


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The processor's instruction-set flags as /proc/cpuinfo lists them (avx2, avx512f, ...);
    none where the file cannot be read (not Linux)."""
    try:
        with open(cpuinfo) as handle:
            flags = re.search(r"^flags\s*:(.*)$", handle.read(), re.MULTILINE)
    except OSError:
        return set()
    return set(flags.group(1).split()) if flags else set()


def bfloat16_instruction_sets(cpuinfo="/proc/cpuinfo"):
    """Which of the instruction sets that multiply bfloat16 numbers natively this processor
    has: AVX512-BF16, AMX-BF16. Without them TensorFlow emulates bfloat16 and is slower than
    in float32."""
    flags = cpu_flags(cpuinfo)
    return [label for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"))
            if flag in flags]


def check_known_characters(text, vocab, what):
    """Refuse, in one line, a text (`what` names it) with characters outside the vocabulary."""
    unknown = sorted(set(text) - set(vocab))
    if unknown:
        raise UserError(f"{what} has characters the model does not know: "
                        + " ".join(repr(ch) for ch in unknown))


def epoch_starts(it, it_per_epoch):
    """Iterations at which an epoch starts, up to and including iteration `it`."""
    return [round(k * it_per_epoch) for k in range(int(it // it_per_epoch) + 1)]


def fitted_ylim(*series):
    """Y-axis limits that show every value of the series with a small margin, floored at 0."""
    low = min(float(np.min(values)) for values in series)
    high = max(float(np.max(values)) for values in series)
    margin = 0.05 * (high - low) or 0.1
    return max(low - margin, 0.0), high + margin


# Beyond the post: files -------------------------------------------------------------------

def write_history(path, loss_hist, smooth_loss_hist, val_points=()):
    """Write the loss history as CSV, one row per iteration done: iteration, loss,
    smoothed_loss, val_loss (empty where the held-out text was not evaluated). Atomic."""
    val_at = dict(val_points)
    rows = ["iteration,loss,smoothed_loss,val_loss"]
    for done in range(1, len(loss_hist)):
        val = val_at.get(done)
        rows.append(f"{done},{loss_hist[done]:.6f},{smooth_loss_hist[done]:.6f},"
                    + ("" if val is None else f"{val:.6f}"))
    write_text_atomically(path, "\n".join(rows) + "\n")


def write_text_atomically(path, text):
    """Write `text` as UTF-8 to `path` through `write_atomically`."""
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def write_atomically(path, write):
    """Call write(binary file handle) on a temporary file beside `path`, then rename it.

    A reader, or a crash half-way, sees either the old file or the complete new one; a
    failed write leaves no temporary file behind.
    """
    folder, name = os.path.split(path)
    tmp_path = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp_path, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def sha256_of_file(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


# Beyond the post: run folders ------------------------------------------------------------

def run_folder_name(name, number):
    return name if number == 1 else f"{name}-{number}"


def claim_run_folder(parent, name):
    """Create the first free folder of <parent>/<name>, <name>-2, <name>-3, ... and return it.

    Each is claimed by os.mkdir, which only one process can win, so runs started at the same
    moment get folders of their own; folders that exist are never touched.
    """
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{parent}: {exc.strerror}; give a --save-dir") from None
    number = 1
    while True:
        path = os.path.join(parent, run_folder_name(name, number))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            number += 1
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror}; give a --save-dir") from None


def latest_run_folder(parent, name):
    """Of the run folders <parent>/<name>, <name>-2, ..., the one whose checkpoint list was
    written last, or None when none holds a checkpoint."""
    pattern = re.compile(re.escape(name) + r"(-[0-9]+)?")
    try:
        entries = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return None
    written = {}
    for entry in entries:
        listing = os.path.join(parent, entry, CHECKPOINT_LIST)
        if pattern.fullmatch(entry) and os.path.isfile(listing):
            written[os.path.join(parent, entry)] = os.stat(listing).st_mtime_ns
    return max(written, key=written.get) if written else None


# Beyond the post: version folders of an exported model ------------------------------------

def publish_version(parent, folder):
    """Move the complete model in `folder` into `parent` as its next version, <parent>/<N>, N
    one above the highest number there (1 at first), and return that path: the layout
    TensorFlow Serving watches, loading the highest version by itself.

    The rename makes the version appear whole. Nothing there is overwritten: where another
    export took N first, or a file has that name, this one takes the next number.
    """
    number = 1 + max((int(entry) for entry in os.listdir(parent) if entry.isdigit()),
                     default=0)
    while True:
        path = os.path.join(parent, str(number))
        try:
            if not os.path.lexists(path):
                os.rename(folder, path)
                return path
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
        number += 1


def folder_size(path):
    """The bytes of every file below `path`."""
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def format_bytes(count):
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


# Beyond the post: the files beside a TensorFlow checkpoint -------------------------------

# Written into every checkpoint's .json; a checkpoint of another format is refused.
CHECKPOINT_FORMAT = 1
# What every checkpoint's .json and .npz must hold.
RUN_INFO = ("format", "vocabulary", "options", "text_sha256", "iteration", "position",
            "rng_state", "best")
RUN_ARRAYS = ("state", "loss_hist", "smooth_loss_hist", "val_points")
CHECKPOINT_LIST = "checkpoint"
# A checkpoint on disk: its path prefix, its .json contents and its .npz arrays; and the newer
# ones passed over on the way to it, each "name (why)", as damaged.
Checkpoint = namedtuple("Checkpoint", "prefix info arrays passed_over", defaults=((),))
# TensorFlow's files of a checkpoint, beside which this program keeps its .json and .npz.
INDEX_FILE, DATA_FILE = ".index", ".data-00000-of-00001"


class DamagedCheckpoint(UserError):
    """A checkpoint whose files are missing, cut short or unreadable; `why` says which."""

    def __init__(self, prefix, why):
        super().__init__(f"checkpoint {prefix} is damaged or incomplete ({why})")
        self.why = why

    @classmethod
    def unreadable(cls, prefix, exc):
        """For an OSError reading one of the checkpoint's files: which file, and why."""
        return cls(prefix, f"{os.path.basename(exc.filename or prefix)}: "
                           f"{(exc.strerror or 'unreadable').lower()}")


def checkpoint_name(iteration):
    return f"ckpt-{iteration}"


def checkpoint_prefix(save_dir, iteration):
    return os.path.join(save_dir, checkpoint_name(iteration))


def save_run_state(prefix, info, arrays):
    """Write `<prefix>.json` (info: plain JSON values) and `<prefix>.npz` (named arrays)."""
    write_atomically(prefix + ".npz", lambda handle: np.savez(handle, **arrays))
    write_text_atomically(prefix + ".json", json.dumps(info, indent=1, ensure_ascii=False)
                          + "\n")


def load_run_state(prefix):
    """Read back what `save_run_state` wrote: (info, {name: array})."""
    with open(prefix + ".json", encoding="utf-8") as handle:
        info = json.load(handle)
    with np.load(prefix + ".npz", allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    return info, arrays


def write_checkpoint_list(save_dir, names):
    """Name the kept checkpoints in `<save_dir>/checkpoint`, the newest last.

    The file has the text format TensorFlow's own `tf.train.latest_checkpoint` reads, so the
    folder can be opened with TensorFlow's tools too. It is written last, atomically: a
    checkpoint counts only once it is listed here.
    """
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{name}"' for name in names]
    write_text_atomically(os.path.join(save_dir, CHECKPOINT_LIST), "\n".join(lines) + "\n")


def read_checkpoint_list(save_dir):
    """The checkpoint names listed in `<save_dir>/checkpoint`, the newest last; [] if none."""
    try:
        with open(os.path.join(save_dir, CHECKPOINT_LIST), encoding="utf-8") as handle:
            text = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = re.findall(r'^all_model_checkpoint_paths: "([^"]+)"$', text, re.MULTILINE)
    latest = re.findall(r'^model_checkpoint_path: "([^"]+)"$', text, re.MULTILINE)
    if latest and latest[0] not in names:
        names.append(latest[0])
    return names


def listed_checkpoints(save_dir):
    """The checkpoint names listed in save_dir, or one line of error about the folder."""
    refuse_a_file(save_dir, "--save-dir")
    try:
        return read_checkpoint_list(save_dir)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a checkpoint list"
        raise UserError(f"--save-dir {save_dir}: cannot read its checkpoint list "
                        f"({reason})") from None


def read_checkpoint(prefix):
    """The checkpoint at `prefix`, its side files read and checked and TensorFlow's files
    checked against each other, as a Checkpoint; DamagedCheckpoint where they fall short."""
    check_tensorflow_files(prefix)
    try:
        info, arrays = load_run_state(prefix)
    except json.JSONDecodeError as exc:
        raise DamagedCheckpoint(prefix, f"its .json does not parse: {exc.msg}") from None
    except OSError as exc:
        raise DamagedCheckpoint.unreadable(prefix, exc) from None
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DamagedCheckpoint(prefix, f"its .npz cannot be read: {exc}") from None
    missing = [key for key in RUN_INFO if not isinstance(info, dict) or key not in info]
    missing += [key for key in RUN_ARRAYS if key not in arrays]
    if missing:
        raise DamagedCheckpoint(prefix, f"no {', '.join(missing)}")
    if info["format"] != CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {prefix} has format {info['format']!r}, which this "
                        f"version does not read (it reads format {CHECKPOINT_FORMAT})")
    return Checkpoint(prefix, info, arrays)


def latest_checkpoint(save_dir, best=False):
    """The newest intact checkpoint in save_dir, or with `best` the one with the lowest
    validation loss (the newest intact one where that is damaged), as a Checkpoint whose
    passed_over names the damaged ones passed over, and why. Damaged files stay as they are."""
    names = listed_checkpoints(save_dir)
    if not names:
        raise UserError(f"no checkpoint in {save_dir}; train first, or give the --save-dir "
                        "of a run")
    passed_over = []
    for name in reversed(names):
        try:
            latest = read_checkpoint(os.path.join(save_dir, name))
            break
        except DamagedCheckpoint as exc:
            passed_over.append(f"{name} ({exc.why})")
    else:
        raise UserError(f"no intact checkpoint in {save_dir}: {'; '.join(passed_over)}")
    if best and latest.info["best"] is None:
        raise UserError(f"{save_dir} has no best checkpoint: its run held no text out "
                        "(--val-fraction 0)")
    if best and latest.info["best"][0] != latest.info["iteration"]:
        prefix = checkpoint_prefix(save_dir, latest.info["best"][0])
        try:
            return read_checkpoint(prefix)._replace(passed_over=tuple(passed_over))
        except DamagedCheckpoint as exc:
            passed_over.append(f"{os.path.basename(prefix)}, the best ({exc.why})")
    return latest._replace(passed_over=tuple(passed_over))


def without_checkpoint_suffix(path):
    """A checkpoint's prefix from the prefix itself or the path of one of its files."""
    for suffix in (INDEX_FILE, DATA_FILE, ".json", ".npz", ".meta"):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def check_tensorflow_files(prefix):
    """Refuse a checkpoint whose TensorFlow files are missing or unreadable, whose index does
    not parse, or whose data file is shorter than the index says (cut short)."""
    try:
        with open(prefix + INDEX_FILE, "rb") as handle:
            index = handle.read()
        data_size = os.path.getsize(prefix + DATA_FILE)
    except OSError as exc:
        raise DamagedCheckpoint.unreadable(prefix, exc) from None
    try:
        needed = max((offset + size for offset, size in tensor_extents(index)), default=0)
    except (ValueError, IndexError):
        raise DamagedCheckpoint(prefix, "its .index is not a checkpoint index") from None
    if data_size < needed:
        raise DamagedCheckpoint(prefix, f"its data file has {data_size:,} of the {needed:,} "
                                        "bytes its index lists")


# TensorFlow writes a checkpoint's .index as a table in LevelDB's format (an SSTable): blocks
# of key/value entries, an index block that points at them, and a 48-byte footer ending in
# this number. Each key is a tensor's name; each value a BundleEntryProto, which says where
# in the data file the tensor lies.
TABLE_MAGIC = 0xDB4775248B80FB57


def tensor_extents(index):
    """(offset, size) in the data file of each tensor a checkpoint's .index lists; ValueError
    or IndexError where the bytes are not such an index."""
    footer = index[-48:]
    if len(index) < 48 or int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise ValueError("no table footer")
    position = varint(footer, varint(footer, 0)[1])[1]  # past the metaindex block's handle
    index_offset, position = varint(footer, position)
    index_size, _ = varint(footer, position)
    for _, handle in block_entries(index[index_offset:index_offset + index_size]):
        offset, position = varint(handle, 0)
        size, _ = varint(handle, position)
        if index[offset + size] != 0:
            raise ValueError("a compressed block")  # TensorFlow writes them uncompressed
        for key, value in block_entries(index[offset:offset + size]):
            if key:  # the empty key holds the header, not a tensor
                fields = protobuf_varints(value)
                yield fields.get(4, 0), fields.get(5, 0)


def varint(data, position):
    """The unsigned varint (LevelDB's and protobuf's) at `position`, and the position after."""
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def block_entries(block):
    """The (key, value) pairs of one table block: keys share a prefix with the one before;
    the block ends in its restart points and their count, 4 bytes each."""
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 * (restarts + 1)
    if restarts == 0 or end < 0:
        raise ValueError("not a table block")
    position, key = 0, b""
    while position < end:
        shared, position = varint(block, position)
        unshared, position = varint(block, position)
        length, position = varint(block, position)
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        yield key, block[position:position + length]
        position += length


def protobuf_varints(message):
    """A protobuf message's varint fields by number (others skipped): enough of a
    BundleEntryProto to read its offset (4) and size (5)."""
    fields, position = {}, 0
    while position < len(message):
        tag, position = varint(message, position)
        wire = tag & 7
        if wire == 0:
            fields[tag >> 3], position = varint(message, position)
        elif wire == 2:
            length, position = varint(message, position)
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    if position != len(message):
        raise ValueError("a field runs past the message")
    return fields


# Beyond the post: the console and signals -------------------------------------------------

# The width of the post's `iter N, loss: X`, so that the fields after it line up.
REPORT_LEAD = 28


def report_line(it, smooth_loss, epoch, rate=None, chars_per_second=None, elapsed=None,
                left=None):
    """The line printed at each report: it starts exactly as the post's `iter N, loss: X`;
    the fields after it line up from report to report."""
    fields = [f"{'iter %d, loss: %f' % (it, smooth_loss):<{REPORT_LEAD}}",
              f"epoch {epoch:5.2f}"]
    if rate is not None:
        fields.append(f"{rate:5.1f} it/s {chars_per_second:>7,.0f} chars/s")
        fields.append(f"{format_clock(elapsed)} elapsed, {format_clock(left)} left")
    return " | ".join(fields)


def held_out_line(it, label, val_loss, best=None):
    """The line that says a report's held-out score, in nats and bits per character, its
    fields under the report line's; `best` is [iteration, loss] of a better earlier one."""
    fields = [f"{'iter %d, held out' % it:<{REPORT_LEAD}}",
              f"{label} {val_loss:.4f} ({val_loss / math.log(2):.3f} bits/char)",
              "the best so far" if best is None else f"best {best[1]:.4f} at iter {best[0]}"]
    return " | ".join(fields)


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


def display_path(path):
    """The path relative to the working folder when it lies below it, else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def text_name_of(path):
    return os.path.splitext(os.path.basename(path))[0]


class ProgressBar:
    """A bar for the iterations to the next report, redrawn in place on a terminal; nothing
    at all when the output goes to a file or a pipe."""

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


class StopRequest:
    """Turn the first SIGINT or SIGTERM into a request to stop at the next good place.

    The training loop asks `signum` after each step, saves and stops; sampling asks after
    each character. A second signal interrupts at once (the last complete checkpoint is
    still there: a save cut short removes what it wrote).
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
