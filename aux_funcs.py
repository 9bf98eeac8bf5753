"""Data handling, plotting and checkpoint files for tf-lstm-char: numpy and matplotlib only.

The training script reads a text with `load`, turns it into integer ids once with
`text_to_ids`, and cuts it into time-major windows of ids with `batch_generator`;
`plot` draws the loss history to a PNG. Beside each TensorFlow checkpoint the script keeps
what the graph does not hold (vocabulary, options, position, carried state, losses) with
`save_run_state`, and names the latest checkpoint with `write_checkpoint_list`.
"""
import hashlib
import json
import os
import re

import numpy as np
from matplotlib.figure import Figure


def load(path, encoding="utf-8"):
    """Read a text file and build its character vocabulary.

    Returns (text, char_to_idx, idx_to_char, vocab_size). The vocabulary is sorted, so the
    same text always gives the same ids, on any machine and in any run.
    """
    with open(path, encoding=encoding) as handle:
        text = handle.read()
    chars = sorted(set(text))
    char_to_idx = {ch: i for i, ch in enumerate(chars)}
    idx_to_char = {i: ch for i, ch in enumerate(chars)}
    return text, char_to_idx, idx_to_char, len(chars)


def text_to_ids(text, char_to_idx, chunk=1 << 22):
    """Map every character of `text` to its vocabulary id, a few million at a time.

    The ids come back in the smallest unsigned integer type that holds the vocabulary
    (one byte per character for up to 256 distinct characters); working in chunks keeps
    the memory for a large text near the size of the result.
    """
    vocab_codes = np.array([ord(ch) for ch in sorted(char_to_idx, key=char_to_idx.get)],
                           dtype=np.uint32)
    if np.any(np.diff(vocab_codes.astype(np.int64)) <= 0):
        raise ValueError("char_to_idx must number the characters in sorted order")
    ids = np.empty(len(text), dtype=np.min_scalar_type(max(len(vocab_codes) - 1, 0)))
    for start in range(0, len(text), chunk):
        codes = np.frombuffer(text[start:start + chunk].encode("utf-32-le"), dtype=np.uint32)
        found = np.searchsorted(vocab_codes, codes)
        if found.max() >= len(vocab_codes) or np.any(vocab_codes[found] != codes):
            raise ValueError("text has characters that are not in the vocabulary")
        ids[start:start + len(codes)] = found
    return ids


def encode(seq, vocab_size):
    """One-hot encode a sequence of ids: shape (len(seq), vocab_size), float32."""
    seq = np.asarray(seq, dtype=np.int64)
    one_hot = np.zeros((len(seq), vocab_size), dtype=np.float32)
    one_hot[np.arange(len(seq)), seq] = 1.0
    return one_hot


def batch_generator(ids, seq_length, batch_size=1, position=0):
    """Yield (position, window) over `ids`, forever, in reading order.

    The text is cut into `batch_size` contiguous tracks read side by side (see `tracks`);
    `window` holds rows position .. position + seq_length of them: shape
    (seq_length + 1, batch_size), time-major, a view of `ids`. Its first seq_length rows are
    the inputs and its last seq_length rows the targets, so the next window starts on this
    one's last row. When a track has fewer than seq_length + 1 ids left, reading wraps to
    its start (position 0), as the original does; a caller that carries the LSTM state
    resets it there. With batch_size 1 the one track is the whole text.
    """
    side_by_side = tracks(ids, batch_size)
    if len(side_by_side) < seq_length + 1:
        raise ValueError(f"tracks of {len(side_by_side)} characters are too short for "
                         f"windows of {seq_length} + 1")
    while True:
        if position + seq_length + 1 > len(side_by_side):
            position = 0
        yield position, side_by_side[position:position + seq_length + 1]
        position += seq_length


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


def epoch_starts(it, it_per_epoch):
    """Iterations at which an epoch starts, up to and including iteration `it`."""
    return [round(k * it_per_epoch) for k in range(int(it // it_per_epoch) + 1)]


def fitted_ylim(*series):
    """Y-axis limits that show every value of the series with a small margin, floored at 0."""
    low = min(float(np.min(values)) for values in series)
    high = max(float(np.max(values)) for values in series)
    margin = 0.05 * (high - low) or 0.1
    return max(low - margin, 0.0), high + margin


def plot(loss_hist, smooth_loss_hist, it, it_per_epoch, text_name, plots_dir="plots",
         val_points=()):
    """Draw the raw and smoothed loss, the validation loss and the epoch starts to a PNG.

    `loss_hist` and `smooth_loss_hist` hold one value per iteration, index 0 being the
    loss before training; `it` is the last iteration done; `val_points` are
    (iterations done, validation loss) pairs. The file is `<plots_dir>/<text_name>_loss.png`,
    written atomically. Returns its path.
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
                label="validation loss (held-out text)")
        series.append(val_losses)
    epochs = [s for s in epoch_starts(it, it_per_epoch) if s < len(smooth_loss_hist)]
    ax.plot(epochs, [smooth_loss_hist[s] for s in epochs], linestyle="", marker="o",
            color="tab:red", label="start of an epoch")
    ax.set_ylim(*fitted_ylim(*series))
    ax.set_xlim(0, max(len(loss_hist) - 1, 1))
    ax.set_title(f"Loss on {text_name}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", framealpha=0.9)
    os.makedirs(plots_dir, exist_ok=True)
    path = os.path.join(plots_dir, f"{text_name}_loss.png")
    write_atomically(path, lambda handle: fig.savefig(handle, format="png"))
    return path


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


CHECKPOINT_LIST = "checkpoint"


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


def char_distribution(logits, temperature=1.0):
    """Softmax of logits / temperature in float64: probabilities numpy can draw from.

    A temperature below 1 sharpens the distribution towards the most likely character,
    above 1 flattens it towards uniform; 1 is the network's own softmax.
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()
