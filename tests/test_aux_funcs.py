import math
import multiprocessing
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aux_funcs


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("hello, world\nhéllo\n", encoding="utf-8")
    return path


def test_load_builds_a_sorted_vocabulary(text_file):
    text, char_to_idx, idx_to_char, vocab_size = aux_funcs.load(text_file)
    assert text == "hello, world\nhéllo\n"
    assert vocab_size == len(set(text)) == 11
    assert [idx_to_char[i] for i in range(vocab_size)] == sorted(set(text))
    assert all(idx_to_char[char_to_idx[ch]] == ch for ch in text)


def test_load_reads_with_the_given_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    with pytest.raises(aux_funcs.UserError, match="not valid utf-8 at byte 3"):
        aux_funcs.load(path)
    text, _, _, _ = aux_funcs.load(path, encoding="latin-1")
    assert text == "café"


def test_text_to_ids_matches_the_vocabulary(text_file):
    text, char_to_idx, idx_to_char, _ = aux_funcs.load(text_file)
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    assert ids.dtype == np.uint8
    assert ids.tolist() == [char_to_idx[ch] for ch in text]
    assert "".join(idx_to_char[i] for i in ids) == text


def test_text_to_ids_widens_for_a_large_vocabulary():
    text = "".join(chr(0x4E00 + i) for i in range(300)) + "一"
    char_to_idx = {ch: i for i, ch in enumerate(sorted(set(text)))}
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    assert ids.dtype == np.uint16
    assert ids[-1] == 0 and ids[299] == 299


def test_text_to_ids_works_in_chunks():
    text = "abcab" * 7
    char_to_idx = {"a": 0, "b": 1, "c": 2}
    assert aux_funcs.text_to_ids(text, char_to_idx, chunk=4).tolist() == [
        char_to_idx[ch] for ch in text]


@pytest.mark.parametrize("vocabulary", [{"a": 0, "b": 1}, {"a": 0, "z": 1}, {"b": 0, "z": 1}],
                         ids=["past the largest code point", "between two", "before the first"])
def test_text_to_ids_refuses_unknown_characters(vocabulary):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        aux_funcs.text_to_ids("abz", vocabulary)


def test_text_to_ids_follows_any_numbering():
    assert aux_funcs.text_to_ids("zaz€", {"€": 0, "z": 1, "a": 2}).tolist() == [1, 2, 1, 0]


def test_encode_is_one_hot_float32():
    encoded = aux_funcs.encode([2, 0, 2, 1], 4)
    assert encoded.shape == (4, 4)
    assert encoded.dtype == np.float32
    assert encoded.sum(axis=1).tolist() == [1, 1, 1, 1]
    assert encoded.argmax(axis=1).tolist() == [2, 0, 2, 1]


def test_encode_keeps_the_shape_of_its_ids():
    ids = np.array([[0, 3], [2, 2], [1, 0]], dtype=np.uint8)  # 3 steps, 2 streams
    encoded = aux_funcs.encode(ids, 5)
    assert encoded.shape == (3, 2, 5)
    assert encoded.sum() == 6
    np.testing.assert_array_equal(encoded.argmax(axis=-1), ids)


def read(batches, count):
    """(start, input ids, target ids) of the next `count` windows of a BatchGenerator."""
    windows = []
    for _ in range(count):
        inputs, targets = next(batches)
        assert inputs.dtype == targets.dtype == np.float32
        assert np.all(inputs.sum(axis=-1) == 1) and np.all(targets.sum(axis=-1) == 1)
        windows.append((batches.position - batches.seq_length, inputs.argmax(axis=-1),
                        targets.argmax(axis=-1)))
    return windows


def test_batch_generator_gives_consecutive_one_hot_time_major_windows():
    ids = np.arange(23) % 7
    batches = aux_funcs.BatchGenerator(ids, 5, 7)
    inputs, targets = next(batches)
    assert inputs.shape == targets.shape == (5, 1, 7)
    assert batches.restarted
    assert inputs.argmax(axis=-1)[:, 0].tolist() == ids[0:5].tolist()
    assert targets.argmax(axis=-1)[:, 0].tolist() == ids[1:6].tolist()  # one character on
    (start, inputs, _), = read(batches, 1)
    assert start == 5 and not batches.restarted
    assert inputs[:, 0].tolist() == ids[5:10].tolist()


def test_batch_generator_wraps_to_the_start_and_says_so():
    ids = np.arange(16) % 4
    batches = aux_funcs.BatchGenerator(ids, 5, 4)
    starts, restarted = [], []
    for _ in range(5):
        next(batches)
        starts.append(batches.position - 5)
        restarted.append(batches.restarted)
    # 16 ids hold three windows of 5 (each needing one more id for its targets).
    assert starts == [0, 5, 10, 0, 5]
    assert restarted == [True, False, False, True, False]


def test_batch_generator_starts_where_asked():
    ids = np.arange(30) % 3
    (start, inputs, _), = read(aux_funcs.BatchGenerator(ids, 4, 3, position=8), 1)
    assert start == 8
    assert inputs[:, 0].tolist() == ids[8:12].tolist()


def test_a_batch_reads_contiguous_tracks_side_by_side():
    ids = np.arange(40)
    (_, first, first_targets), (_, second, _), (_, third, _), (_, wrapped, _) = read(
        aux_funcs.BatchGenerator(ids, 3, 40, batch_size=4), 4)
    assert first.shape == (3, 4)
    # Track k is ids[10k:10k + 10], and each column reads its own track in order.
    assert first[:, 1].tolist() == [10, 11, 12]
    assert first_targets[:, 1].tolist() == [11, 12, 13]
    assert second[:, 1].tolist() == [13, 14, 15]
    assert first[:, 3].tolist() == [30, 31, 32]
    assert third[:, 0].tolist() == [6, 7, 8]
    assert wrapped[:, 0].tolist() == [0, 1, 2]


def test_batch_generator_refuses_a_text_shorter_than_a_window():
    with pytest.raises(ValueError, match="too short"):
        aux_funcs.BatchGenerator(np.zeros(5, np.uint8), 5, 1)
    with pytest.raises(ValueError, match="too short"):
        aux_funcs.BatchGenerator(np.zeros(50, np.uint8), 5, 1, batch_size=10)


def test_epoch_starts_advance_with_the_iteration():
    assert aux_funcs.epoch_starts(0, 1251.79) == [0]
    assert aux_funcs.epoch_starts(1251, 1251.79) == [0]
    assert aux_funcs.epoch_starts(1252, 1251.79) == [0, 1252]
    assert aux_funcs.epoch_starts(4000, 1251.79) == [0, 1252, 2504, 3755]


def test_fitted_ylim_shows_a_starting_loss_above_five():
    start = math.log(200)
    low, high = aux_funcs.fitted_ylim([start, 3.0, 2.5], [start, 4.9, 4.0])
    assert high > start > 5
    assert 0 <= low < 2.5


def test_plot_writes_a_png_and_no_temporary_file(tmp_path):
    loss = [4.2, 3.9, 3.1, 2.8, 2.6]
    smooth = [4.2, 4.19, 4.18, 4.17, 4.16]
    path = aux_funcs.plot(loss, smooth, 4, 2.5, "tiny", str(tmp_path / "plots"))
    assert path == os.path.join(str(tmp_path / "plots"), "tiny_loss.png")
    with open(path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "plots") == ["tiny_loss.png"]


def test_plot_replaces_an_earlier_plot(tmp_path):
    first = aux_funcs.plot([4.0, 3.0], [4.0, 3.9], 1, 10, "t", str(tmp_path))
    before = open(first, "rb").read()
    second = aux_funcs.plot([4.0, 3.0, 2.0, 1.0], [4.0, 3.9, 3.8, 3.7], 3, 10, "t",
                            str(tmp_path))
    assert second == first
    assert open(second, "rb").read() != before


def test_run_state_round_trip(tmp_path):
    prefix = str(tmp_path / "ckpt-7")
    info = {"vocabulary": "\n abcü世", "iteration": 7, "rng_state": {"state": 2 ** 100}}
    arrays = {"state": np.arange(12, dtype=np.float32).reshape(2, 1, 6),
              "loss_hist": np.array([4.2, 3.1])}
    aux_funcs.save_run_state(prefix, info, arrays)
    loaded_info, loaded_arrays = aux_funcs.load_run_state(prefix)
    assert loaded_info == info
    assert loaded_arrays.keys() == arrays.keys()
    for name in arrays:
        np.testing.assert_array_equal(loaded_arrays[name], arrays[name])
        assert loaded_arrays[name].dtype == arrays[name].dtype
    assert sorted(os.listdir(tmp_path)) == ["ckpt-7.json", "ckpt-7.npz"]


def test_checkpoint_list_round_trip(tmp_path):
    assert aux_funcs.read_checkpoint_list(tmp_path) == []
    aux_funcs.write_checkpoint_list(tmp_path, ["ckpt-1", "ckpt-101"])
    assert aux_funcs.read_checkpoint_list(tmp_path) == ["ckpt-1", "ckpt-101"]
    text = (tmp_path / "checkpoint").read_text()
    assert text.startswith('model_checkpoint_path: "ckpt-101"\n')


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "kept.bin"
    path.write_bytes(b"old")

    def fail_half_way(handle):
        handle.write(b"new, but not al")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        aux_funcs.write_atomically(str(path), fail_half_way)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["kept.bin"]


def test_sha256_of_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"abc")
    assert aux_funcs.sha256_of_file(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


@pytest.mark.parametrize("fraction", [0, 0.05, 0.1, 0.5])
def test_the_held_out_text_never_overlaps_the_training_text(fraction):
    ids = np.arange(1003)
    train, held_out = aux_funcs.split_train_val(ids, fraction)
    assert len(held_out) == round(1003 * fraction)
    assert np.array_equal(np.concatenate([train, held_out]), ids)
    seen = set()
    for _, inputs, targets in read(aux_funcs.BatchGenerator(train, 10, 1003, batch_size=3),
                                   300):
        seen.update(inputs.ravel().tolist() + targets.ravel().tolist())
    assert seen <= set(train.tolist()) and not seen & set(held_out.tolist())


def test_tracks_are_contiguous_and_side_by_side():
    ids = np.arange(23)
    side_by_side = aux_funcs.tracks(ids, 3)
    assert side_by_side.shape == (7, 3)
    assert side_by_side[:, 0].tolist() == list(range(0, 7))
    assert side_by_side[:, 2].tolist() == list(range(14, 21))
    assert aux_funcs.tracks(ids, 1)[:, 0].tolist() == list(range(23))


def test_a_held_out_line_lines_up_under_its_report_line():
    report = aux_funcs.report_line(1200, 1.7312456, 0.0264, 28.96, 2896.0, 41.2, 118.0)
    assert report == ("iter 1200, loss: 1.731246    | epoch  0.03 |  29.0 it/s   2,896 chars/s"
                      " | 0:41 elapsed, 1:58 left")
    best = aux_funcs.held_out_line(1200, "val[:20000]", 1.9808)
    worse = aux_funcs.held_out_line(1300, "val[:20000]", 2.0, [1200, 1.9808])
    assert best == ("iter 1200, held out          | val[:20000] 1.9808 (2.858 bits/char) | "
                    "the best so far")
    assert worse.endswith("| val[:20000] 2.0000 (2.885 bits/char) | best 1.9808 at iter 1200")
    assert report.index("|") == best.index("|") == worse.index("|") == aux_funcs.REPORT_LEAD + 1


def test_write_history_has_a_row_per_iteration_and_validation_where_measured(tmp_path):
    path = tmp_path / "h.csv"
    aux_funcs.write_history(str(path), [4.2, 3.0, 2.5, 2.0], [4.2, 4.19, 4.18, 4.17],
                            [(1, 3.5), (3, 2.75)])
    assert path.read_text().splitlines() == [
        "iteration,loss,smoothed_loss,val_loss",
        "1,3.000000,4.190000,3.500000",
        "2,2.500000,4.180000,",
        "3,2.000000,4.170000,2.750000"]


def test_plot_with_validation_points(tmp_path):
    path = aux_funcs.plot([4.2, 3.0, 2.5], [4.2, 4.1, 4.0], 2, 10, "v", str(tmp_path),
                          [(1, 3.3), (2, 3.1)])
    with open(path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=2, max_size=400),
       seq_length=st.integers(1, 40), batch_size=st.integers(1, 4),
       val_fraction=st.sampled_from([0, 0.1, 0.5]))
def test_any_text_round_trips_and_windows_cover_it_in_order(text, seq_length, batch_size,
                                                            val_fraction):
    chars = sorted(set(text))
    char_to_idx = {ch: i for i, ch in enumerate(chars)}
    ids = aux_funcs.text_to_ids(text, char_to_idx, chunk=7)
    assert "".join(chars[i] for i in ids) == text
    train, held_out = aux_funcs.split_train_val(ids, val_fraction)
    assert len(train) + len(held_out) == len(ids)
    track_length = len(train) // batch_size
    if track_length < seq_length + 1:
        with pytest.raises(ValueError):
            aux_funcs.BatchGenerator(train, seq_length, len(chars), batch_size)
        return
    side_by_side = aux_funcs.tracks(train, batch_size)
    batches = aux_funcs.BatchGenerator(train, seq_length, len(chars), batch_size)
    expected = 0
    for position, inputs, targets in read(batches, 8):
        if expected + seq_length + 1 > track_length:
            expected = 0
        assert position == expected
        assert inputs.shape == (seq_length, batch_size)
        np.testing.assert_array_equal(inputs, side_by_side[position:position + seq_length])
        np.testing.assert_array_equal(targets,
                                      side_by_side[position + 1:position + seq_length + 1])
        expected += seq_length
    one_hot = aux_funcs.encode(ids, len(chars))
    assert one_hot.shape == (len(text), len(chars)) and one_hot.sum() == len(text)


def claim_after(barrier, parent, name, results):
    barrier.wait()
    results.put(aux_funcs.claim_run_folder(parent, name))


def test_processes_claiming_at_once_get_folders_of_their_own(tmp_path):
    (tmp_path / "runs" / "story").mkdir(parents=True)  # an earlier run's, left alone
    (tmp_path / "runs" / "story" / "keep").write_text("earlier")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=claim_after,
                               args=(barrier, str(tmp_path / "runs"), "story", results))
               for _ in range(6)]
    for worker in workers:
        worker.start()
    claimed = sorted(os.path.basename(results.get(timeout=30)) for _ in workers)
    for worker in workers:
        worker.join()
    assert claimed == sorted(["story-2", "story-3", "story-4", "story-5", "story-6", "story-7"])
    assert (tmp_path / "runs" / "story" / "keep").read_text() == "earlier"


def test_the_latest_run_is_the_one_whose_checkpoints_were_written_last(tmp_path):
    runs = tmp_path / "runs"
    assert aux_funcs.latest_run_folder(str(runs), "story") is None
    for name, written in [("story", 300), ("story-2", 100), ("story-10", 200),
                          ("story-x", 900), ("storyteller", 900), ("story-3", None)]:
        (runs / name).mkdir(parents=True)
        if written is not None:
            aux_funcs.write_checkpoint_list(str(runs / name), ["ckpt-1"])
            os.utime(runs / name / "checkpoint", (written, written))
    assert aux_funcs.latest_run_folder(str(runs), "story") == str(runs / "story")
    os.utime(runs / "story-10" / "checkpoint", (400, 400))
    assert aux_funcs.latest_run_folder(str(runs), "story") == str(runs / "story-10")


def test_available_memory_takes_the_smaller_of_the_machine_and_the_cgroup(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert aux_funcs.available_memory(str(meminfo), str(cgroup)) == 1000 * 1024
    (cgroup / "memory.max").write_text("500000\n")
    (cgroup / "memory.current").write_text("100000\n")
    assert aux_funcs.available_memory(str(meminfo), str(cgroup)) == 400000
    (cgroup / "memory.max").write_text("max\n")
    assert aux_funcs.available_memory(str(meminfo), str(cgroup)) == 1000 * 1024
    assert aux_funcs.available_memory(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_bfloat16_instruction_sets_reads_the_processors_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    flags = "fpu sse2 avx2 avx512f avx512bw"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nflags\t\t: {flags}\n")
    assert aux_funcs.cpu_flags(str(cpuinfo)) == set(flags.split())
    assert aux_funcs.bfloat16_instruction_sets(str(cpuinfo)) == []
    cpuinfo.write_text(f"flags\t\t: {flags} avx512_bf16 amx_tile amx_bf16 amx_int8\n")
    assert aux_funcs.bfloat16_instruction_sets(str(cpuinfo)) == ["AVX512-BF16", "AMX-BF16"]
    cpuinfo.write_text(f"flags\t\t: {flags} avx512_bf16\n")
    assert aux_funcs.bfloat16_instruction_sets(str(cpuinfo)) == ["AVX512-BF16"]
    assert aux_funcs.bfloat16_instruction_sets(str(tmp_path / "none")) == []
    assert aux_funcs.cpu_flags(str(tmp_path / "none")) == set()
