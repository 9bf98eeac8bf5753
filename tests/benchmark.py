"""Speed and memory benchmark of tf-lstm-char, run by hand (not part of the test suite):

    python tests/benchmark.py            # about half an hour on two cores
    python tests/benchmark.py --quick    # one repeat, fewer iterations: about four minutes
    python tests/benchmark.py --profile  # only where a training step's time goes
    python tests/benchmark.py --serving  # only the exported model's rows: about seven minutes
    python tests/benchmark.py --page     # only the --visualize page's rows: about a minute
    python tests/benchmark.py --evaluation  # only held-out evaluation's rows: about five minutes

Every configuration trains hidden 500 (one layer, or two where it says so), 100 steps a window,
on data/shakespeare.txt, in its own process (oneDNN is fixed when TensorFlow is imported). The
configurations take turns, repeat after repeat, so that a slow minute of this shared machine
falls on all of them; the table gives the median of the repeats and its ratios, measured in the
same run, to the post's program, to this program as it was before the backward pass was written
out (commit BEFORE, read from git), and to PyTorch. At batch 1, 32 and two layers there are rows
for the written gradient (the default) and TensorFlow's own, and rows that undo or add one
choice each, to show on this machine whether it pays: W_h^T in four blocks at batch 1, XLA
auto-clustering, oneDNN capped at AVX2, and --bf16 (a choice of precision, left to the user).
When torch is installed (`pip install torch`; it is not a requirement), PyTorch's nn.LSTM trains
the same model, loss, optimizer and batch in the same run; at batch 1 also with oneDNN off, to
show what its fused LSTM is worth; without it, its rows say how to get it. Rows that would
measure nothing new on this processor say why instead: --bf16 without AVX512-BF16 or AMX-BF16
(the program leaves it off), the AVX2 cap without AVX-512. Then held-out evaluation as a run
does it, at each report and at the end, in characters per second against the defaults' training;
what a report's score adds to the 100 training steps after it, waited for and in a second thread
beside them; and the share of a default run and of a 1001-iteration run that they predict. Then
the exported model (--export), loaded by tf.saved_model.load with TensorFlow's defaults: one
prime against --sample's in-graph sampler, 64 primes at once against one, eight threads calling
at once against one, and how long --export takes. Then the --visualize page: its JavaScript's
characters per second under Node, with its products in WebAssembly and without, and, where
Chromium is installed, the page opened there as a reader meets it. Then the profiles: the ops
that take the most of one training step, from TensorFlow's step stats (RunOptions FULL_TRACE).
Last, the scale check: a 100 MB text, from start to the first report line.

Earlier runs, and what was tried and not kept, are in tests/BENCHMARKS.md.
"""
import argparse
import concurrent.futures
import importlib.util
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tf-lstm-char.py")
TEXT = os.path.join(REPO, "data", "shakespeare.txt")
sys.path.insert(0, REPO)

import aux_funcs  # noqa: E402  (found through the path above)

# The program as it was before each layer's backward pass was written out (issue 25): its
# defaults trained through TensorFlow's gradient, with XLA at batch 1 and the kernel transposed
# once a window at batch 32. Its rows run that commit's tf-lstm-char.py and aux_funcs.py.
BEFORE = "8d30fb2"


@dataclass(frozen=True)
class Config:
    """One row: what it is, its batch and layers, what runs it (this tf-lstm-char.py, the one of
    commit BEFORE, or PyTorch with or without oneDNN), TensorFlow's oneDNN kernels, the gradient,
    and what the program does or does not do by itself, measured to show whether it pays: XLA
    auto-clustering, --bf16, W_h^T in one block at batch 1, an environment."""
    what: str
    batch: int = 1
    layers: int = 1
    runs: str = "script"
    onednn: int = 1
    gradient: str = "written"  # the default, or "tensorflow"
    xla: bool = False
    bf16: bool = False
    one_block: bool = False
    samplers: tuple = ()
    evaluates: bool = False
    environment: dict = field(default_factory=dict)


CONFIGS = {
    "baseline": Config("the post's program: TensorFlow's gradient, oneDNN off", onednn=0,
                       gradient="tensorflow", samplers=("feed",)),
    "before": Config(f"main before ({BEFORE}): TF's gradient, XLA", runs="before"),
    "defaults": Config("defaults: the written gradient", samplers=("feed", "graph"),
                       evaluates=True),
    "one-block": Config("the written gradient, W_h^T in one block", one_block=True),
    "xla": Config("the written gradient, XLA auto-clustering on", xla=True),
    "tf-gradient": Config("--gradient tensorflow", gradient="tensorflow"),
    "pytorch": Config("PyTorch nn.LSTM, the same model, loss and Adam", runs="torch"),
    "pytorch-no-onednn": Config("PyTorch nn.LSTM, oneDNN off: one op per step, not fused",
                                runs="torch-no-onednn"),
    "before32": Config(f"main before ({BEFORE}): TF's gradient, kernel^T once", 32,
                       runs="before"),
    "batch32": Config("--batch-size 32: the written gradient", 32),
    "batch32-tf": Config("--batch-size 32 --gradient tensorflow", 32, gradient="tensorflow"),
    "batch32-bf16": Config("--batch-size 32 --bf16", 32, bf16=True),
    "batch32-bf16-tf": Config("--batch-size 32 --bf16 --gradient tensorflow", 32,
                              gradient="tensorflow", bf16=True),
    "batch32-avx2": Config("--batch-size 32, oneDNN capped at AVX2", 32,
                           environment={"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "pytorch32": Config("PyTorch nn.LSTM, the same model, loss and Adam", 32, runs="torch"),
    "before-layers2": Config(f"main before ({BEFORE}), 2 layers", 32, 2, runs="before"),
    "layers2": Config("--batch-size 32 --num-layers 2", 32, 2),
    "layers2-tf": Config("--batch-size 32 --num-layers 2 --gradient tensorflow", 32, 2,
                         gradient="tensorflow"),
    "layers2-bf16": Config("--batch-size 32 --num-layers 2 --bf16", 32, 2, bf16=True),
    "layers2-bf16-tf": Config("--num-layers 2 --bf16 --gradient tensorflow", 32, 2,
                              gradient="tensorflow", bf16=True),
    "pytorch32-layers2": Config("PyTorch nn.LSTM, 2 layers", 32, 2, runs="torch"),
}
# Without torch (not a requirement) its rows say how to get it.
TORCH_MISSING = "pip install torch to compare"


def torch_worker(batch, layers, iterations, onednn):
    """The same training as the defaults, in PyTorch: one-hot windows from the same
    BatchGenerator, time-major, an nn.LSTM of 500 and a linear layer to the scores, the mean
    cross-entropy, Adam at 1e-2, the final state carried into the next window. Without oneDNN
    PyTorch runs the LSTM as separate operations each step instead of oneDNN's fused LSTM
    primitive, as TensorFlow does. Returns the figures, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.backends.mkldnn.enabled = onednn
    torch.manual_seed(1)
    text, char_to_idx, _, vocab_size = aux_funcs.load(TEXT)
    batches = aux_funcs.BatchGenerator(aux_funcs.text_to_ids(text, char_to_idx), 100,
                                       vocab_size, batch)
    lstm = torch.nn.LSTM(vocab_size, 500, num_layers=layers)
    output = torch.nn.Linear(500, vocab_size)
    optimizer = torch.optim.Adam([*lstm.parameters(), *output.parameters()], lr=1e-2)
    state = None
    warm_up = 5
    for step in range(warm_up + iterations):
        if step == warm_up:
            start = time.perf_counter()
        inputs, targets = next(batches)
        hidden, state = lstm(torch.from_numpy(inputs), state)
        loss = torch.nn.functional.cross_entropy(
            output(hidden).reshape(-1, vocab_size),
            torch.from_numpy(targets.argmax(axis=-1).reshape(-1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = tuple(part.detach() for part in state)
    seconds = time.perf_counter() - start
    return {"it/s": iterations / seconds, "chars/s": iterations * 100 * batch / seconds,
            "torch": torch.__version__}


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script(commit=None):
    """tf-lstm-char.py as a module (its name has dashes): this one, or with its aux_funcs as
    they were at `commit`."""
    if commit is None:
        return load_module("tf_lstm_char", SCRIPT)
    # Once executed, the modules no longer need their files.
    with tempfile.TemporaryDirectory() as folder:
        for name in ("tf-lstm-char.py", "aux_funcs.py"):
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(subprocess.run(["git", "-C", REPO, "show", f"{commit}:{name}"],
                                            capture_output=True, check=True).stdout)
        sys.modules["aux_funcs"] = load_module("aux_funcs",
                                               os.path.join(folder, "aux_funcs.py"))
        return load_module("tf_lstm_char", os.path.join(folder, "tf-lstm-char.py"))


def worker(name, iterations):
    """Measure one configuration in this process; print one JSON line."""
    config = CONFIGS[name]
    if config.runs.startswith("torch"):
        result = torch_worker(config.batch, config.layers, iterations,
                              onednn=config.runs == "torch")
        if result is not None:
            result["peak MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = str(config.onednn)
    os.environ.update(config.environment)
    if config.xla:
        # On the CPU, XLA auto-clustering needs this besides the session's global_jit_level.
        os.environ["TF_XLA_FLAGS"] = "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"
    if config.runs == "before":
        lstm = load_script(BEFORE)
        options = lstm.Options(batch_size=config.batch, num_layers=config.layers, seed=1)
    else:
        lstm = load_script()
        options = lstm.Options(batch_size=config.batch, num_layers=config.layers, seed=1,
                               gradient=config.gradient, bf16=config.bf16)
    if config.one_block:
        lstm.backward_blocks = lambda *unused: 1
    import numpy as np

    tf = lstm.import_tensorflow(options)
    text, char_to_idx, _, vocab_size = aux_funcs.load(TEXT)
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    model = lstm.add_extras(tf, lstm.build_graph(tf, vocab_size, options))
    batches = aux_funcs.BatchGenerator(ids, 100, vocab_size, config.batch)
    session_config = lstm.session_config(tf, options)
    if config.xla:
        session_config.graph_options.optimizer_options.global_jit_level = (
            tf.compat.v1.OptimizerOptions.ON_1)
    fetches = [model.loss, model.final_state, model.training]
    result = {}
    with tf.compat.v1.Session(graph=model.graph, config=session_config) as session:
        session.run(model.init)
        state = np.zeros(lstm.state_shape(options), np.float32)
        warm_up = 5
        for step in range(warm_up + iterations):
            if step == warm_up:
                start = time.perf_counter()
            inputs, targets = next(batches)
            fed = {model.x: inputs, model.y: targets, model.init_state: state}
            _, state, _ = session.run(fetches, fed)
        seconds = time.perf_counter() - start
        result["it/s"] = iterations / seconds
        result["chars/s"] = iterations * 100 * config.batch / seconds
        rng = np.random.default_rng(0)
        for sampler in config.samplers:
            sampler_options = lstm.replace(options, sampler=sampler)
            list(lstm.sample_by_options(session, model, sampler_options, "", 20, rng))
            times = []
            for _ in range(3):
                start = time.perf_counter()
                list(lstm.sample_by_options(session, model, sampler_options, "", 600, rng))
                times.append(time.perf_counter() - start)
            result[f"{sampler} sampler chars/s"] = 600 / statistics.median(times)
        if config.evaluates:
            def train(steps):
                nonlocal state
                for _ in range(steps):
                    inputs, targets = next(batches)
                    _, state, _ = session.run(fetches, {model.x: inputs, model.y: targets,
                                                        model.init_state: state})

            result.update(evaluation_rates(lstm, session, model, ids))
            result.update(scores_beside_training(lstm, session, model, ids, train))
    result["peak MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def evaluation_rates(lstm, session, model, ids):
    """Characters per second of held-out evaluation as a run does it: val[:20000] as each
    report scores it (median of three), and all of the held-out text as the end of a run
    scores it."""
    import numpy as np

    held_out = aux_funcs.split_train_val(ids, 0.1)[1]
    report_slice = lstm.held_out_tracks(held_out[:lstm.VAL_SLICE_CHARS])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        lstm.evaluate(session, model.evaluation, report_slice)
        times.append(time.perf_counter() - start)
    every = lstm.held_out_tracks(held_out)
    start = time.perf_counter()
    lstm.evaluate(session, model.evaluation, every)
    return {"report chars/s": report_slice.size / statistics.median(times),
            "report tracks": report_slice.shape[1],
            "end chars/s": every.size / (time.perf_counter() - start),
            "end tracks": every.shape[1], "held out": int(np.size(held_out))}


def scores_beside_training(lstm, session, model, ids, train, rounds=3):
    """What a report's held-out score adds to a report (its 600-character sample, the plot
    and a checkpoint) and the 100 training steps after it: the report and steps alone, with
    the score waited for first, and with the score computed in a second thread beside them,
    as a run does it (its copy of the weights taken first); the three in turn, starting with
    another each round. Medians, in seconds."""
    import numpy as np

    held_out = aux_funcs.split_train_val(ids, 0.1)[1]
    report_slice = lstm.held_out_tracks(held_out[:lstm.VAL_SLICE_CHARS])
    folder = tempfile.mkdtemp()
    losses = np.linspace(4.4, 1.6, 4001).tolist()
    val_points = [(it, 2.0) for it in range(0, 4001, 100)]
    rng = np.random.default_rng(0)
    pool = concurrent.futures.ThreadPoolExecutor(1)

    def report_and_steps():
        list(lstm.sample_in_graph(session, model, 600, rng))
        aux_funcs.plot(losses, losses, 4000, 45_000, "benchmark", folder, val_points)
        model.saver.save(session, os.path.join(folder, "ckpt"), write_state=False)
        train(100)

    def waited():
        lstm.evaluate(session, model.evaluation, report_slice)
        report_and_steps()

    def beside():
        session.run(model.evaluation.copy)
        scoring = pool.submit(lstm.evaluate_copy, session, model.evaluation, report_slice)
        report_and_steps()
        scoring.result()

    ways = {"report alone s": report_and_steps, "score waited s": waited,
            "score beside s": beside}
    times = {key: [] for key in ways}
    with pool:
        for round_ in range(rounds):
            for key in list(ways)[round_ % 3:] + list(ways)[:round_ % 3]:
                start = time.perf_counter()
                ways[key]()
                times[key].append(time.perf_counter() - start)
    shutil.rmtree(folder)
    return {key: statistics.median(values) for key, values in times.items()}


# What the profile's largest ops compute, by the end of their node names.
ROLES = {
    "lstm_cell/BiasAdd": "forward: gates = [x, h] @ kernel + bias, a step",
    "dh_before": "dh_before = da @ W_h^T, a step (a block of it at batch 1)",
    "d_kernel": "d kernel = z^T @ da, the window in one product",
    "d_inputs": "d inputs = da @ W_x^T, the window in one product",
    "MatMul_grad/MatMul": "d kernel, a step (TensorFlow's gradient)",
    "MatMul_grad/MatMul_1": "d [x, h] = d gates @ kernel^T, a step (TensorFlow's gradient)",
    "TensorListSetItem": "the forward's h, c and gates kept, a step",
    "gradients/AddN_3": "d kernel summed over the steps (TensorFlow's gradient)",
    "split_grad/concat": "d gates: the four gates' gradients joined",
    "lstm_cell/split": "the gates split in four",
}


def profile_worker(batch, layers, bf16):
    """Trace a few training steps of the defaults at `batch` and `layers` (and --bf16) with
    TensorFlow's step stats; print one JSON line: the step's wall time, how many ops ran, and
    the ops that took longest."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    lstm = load_script()
    import numpy as np

    options = lstm.Options(batch_size=batch, num_layers=layers, bf16=bf16, seed=1)
    tf = lstm.import_tensorflow(options)
    tf1 = tf.compat.v1
    text, char_to_idx, _, vocab_size = aux_funcs.load(TEXT)
    model = lstm.build_graph(tf, vocab_size, options)
    batches = aux_funcs.BatchGenerator(aux_funcs.text_to_ids(text, char_to_idx), 100,
                                       vocab_size, batch)
    op_micros, runs, walls = {}, 0, []
    traced = 3
    with tf1.Session(graph=model.graph, config=lstm.session_config(tf, options)) as session:
        session.run(model.init)
        state = np.zeros(lstm.state_shape(options), np.float32)
        for step in range(10 + traced):
            inputs, targets = next(batches)
            fed = {model.x: inputs, model.y: targets, model.init_state: state}
            metadata = tf1.RunMetadata()
            trace = step >= 10
            run_options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE if trace else 0)
            start = time.perf_counter()
            _, state, _ = session.run([model.loss, model.final_state, model.training], fed,
                                      options=run_options, run_metadata=metadata)
            if step >= 5 and not trace:
                walls.append(time.perf_counter() - start)
            for node in (node for device in metadata.step_stats.dev_stats
                         for node in device.node_stats):
                op_type = node.timeline_label.split(" = ")[-1].split("(")[0]
                if not op_type or op_type.startswith(("_SOURCE", "RecvTensor")):
                    op_type = node.node_name
                phase = "backward" if "gradients" in node.node_name else "forward"
                layer = re.search(r"/cell_(\d+)/", node.node_name)
                if layer:
                    phase += f", layer {int(layer.group(1)) + 1}"
                key = f"{phase} | {op_type} | {'/'.join(node.node_name.split('/')[-2:])}"
                op_micros[key] = op_micros.get(key, 0) + node.op_end_rel_micros - \
                    node.op_start_rel_micros
                runs += 1
    total = sum(op_micros.values())
    top = sorted(op_micros.items(), key=lambda item: -item[1])[:10]
    products = sum(micros for key, micros in op_micros.items() if "MatMul" in key)
    print(json.dumps({"step ms": statistics.median(walls) * 1000, "ops": runs / traced,
                      "op ms": total / traced / 1000, "products": products / total,
                      "top": [[key, micros / traced / 1000, micros / total]
                              for key, micros in top]}))


def print_profile(batch, layers, why, bf16=False):
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, __file__, "--profile-worker", str(batch), "--layers",
                          str(layers)] + ["--bf16"] * bf16, env=env,
                         capture_output=True, text=True, check=True).stdout
    figures = json.loads(out.splitlines()[-1])
    print(f"\nprofile of one training step, batch {batch}{why}: {figures['step ms']:.1f} ms "
          f"untraced; {figures['ops']:,.0f} ops ran, {figures['op ms']:.1f} ms of op time "
          f"summed over both cores' threads, {figures['products']:.0%} of it in MatMul\n")
    print("| pass | op | node | what it computes | ms per step | share of op time |")
    print("|---|---|---|---|--:|--:|")
    for key, milliseconds, share in figures["top"]:
        # By the node's last two names, or by its last, less a number that tells copies apart.
        node = key.split(" | ")[-1]
        role = ROLES.get(node) or ROLES.get(re.sub(r"_\d+$", "", node.split("/")[-1]), "")
        print(f"| {key} | {role} | {milliseconds:.1f} | {share:.1%} |")


def print_profiles():
    print_profile(1, 1, "")
    print_profile(32, 1, "")
    # Where --bf16 pays on one processor and not on another, this shows which ops differ.
    if not not_measured_here("batch32-bf16"):
        print_profile(32, 1, ", --bf16", bf16=True)
    print_profile(32, 2, ", --num-layers 2")


def measure(name, iterations):
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, __file__, "--worker", name, "--iterations",
                          str(iterations)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            match = re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.MULTILINE)
        return int(match.group(1)) / 1024 if match else 0.0
    except OSError:
        return 0.0


def scale_check(megabytes):
    """Time from start to the first report line, and peak memory, on a text of `megabytes`."""
    with tempfile.TemporaryDirectory() as folder:
        big = os.path.join(folder, "big.txt")
        with open(TEXT, "rb") as handle:
            chunk = handle.read()
        with open(big, "wb") as handle:
            for _ in range(megabytes * 2 ** 20 // len(chunk) + 1):
                handle.write(chunk)
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, SCRIPT, big, "--iterations", "1", "--sample-length", "100",
             "--save-dir", os.path.join(folder, "ckpt"), "--plots-dir", folder],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first_report, peak = None, 0.0
        os.set_blocking(process.stdout.fileno(), False)
        output = ""
        while process.poll() is None:
            peak = max(peak, peak_rss_mib(process.pid))
            output += (process.stdout.read() or b"").decode(errors="replace")
            if first_report is None and re.search(r"^iter 0,", output, re.MULTILINE):
                first_report = time.perf_counter() - start
                # Stopped, the run skips scoring all 10 MiB of its held-out text at the end.
                process.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        if process.returncode != 128 + signal.SIGTERM:
            raise RuntimeError(process.stderr.read().decode(errors="replace"))
        return os.path.getsize(big) / 2 ** 20, first_report, peak


# The exported model's rows: characters a stream writes per call, primes in the batched row,
# and threads calling at once in the load test.
SERVING_LENGTH = 1000
SERVING_STREAMS = 64
LOAD_THREADS = 8


def serving_checkpoint(folder):
    """A checkpoint of one layer of 500 on the works to export and sample from: a few
    iterations (the speed of writing does not depend on how well the model writes)."""
    subprocess.run([sys.executable, SCRIPT, TEXT, "--iterations", "21", "--sample-every", "10",
                    "--sample-length", "10", "--val-fraction", "0", "--save-dir",
                    os.path.join(folder, "ckpt"), "--plots-dir", folder],
                   capture_output=True, check=True)
    return os.path.join(folder, "ckpt")


def export_seconds(save_dir, folder):
    """`--export` from the command to the prompt, as a user waits for it."""
    start = time.perf_counter()
    subprocess.run([sys.executable, SCRIPT, "--export", os.path.join(folder, "models"),
                    "--save-dir", save_dir], capture_output=True, check=True)
    return time.perf_counter() - start


def sample_worker(save_dir):
    """--sample's characters per second: its in-graph sampler, one stream, in pieces as it
    writes them, on the checkpoint in save_dir."""
    lstm = load_script()
    import numpy as np

    saved = aux_funcs.latest_checkpoint(save_dir)
    options = lstm.resolve_options({}, saved, (lstm.MODEL,))
    vocab = saved.info["vocabulary"]
    tf = lstm.import_tensorflow(options)
    model = lstm.add_extras(tf, lstm.build_graph(tf, len(vocab),
                                                 lstm.replace(options, batch_size=1)))
    with lstm.open_session(tf, model, options) as session:
        lstm.restore_checkpoint(session, model.saver, saved.prefix)
        rng = np.random.default_rng(0)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            list(lstm.sample_by_options(session, model, options, vocab, SERVING_LENGTH, rng))
            times.append(time.perf_counter() - start)
    print(json.dumps({"chars/s": SERVING_LENGTH / statistics.median(times[1:])}))


def serving_worker(model_dir, seconds):
    """The exported model as another program uses it: loaded by tf.saved_model.load in a
    process that imports none of the program's TensorFlow code, with TensorFlow's default
    settings; characters per second of serving_default for one prime, for SERVING_STREAMS at
    once, and for calls of one prime made for `seconds` by one thread, then by LOAD_THREADS
    at once."""
    import threading

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    write = tf.saved_model.load(model_dir).signatures["serving_default"]

    def rate(streams, calls=4):
        times = []
        for call in range(calls):
            start = time.perf_counter()
            write(prime=["ROMEO"] * streams, length=SERVING_LENGTH, temperature=1.0, seed=call)
            times.append(time.perf_counter() - start)
        return streams * SERVING_LENGTH / statistics.median(times[1:])

    def under_load(threads):
        written, stop = [0] * threads, time.perf_counter() + seconds

        def keep_calling(k):
            while time.perf_counter() < stop:
                text = write(prime=["ROMEO"], length=200, temperature=1.0, seed=k)["text"]
                written[k] += len(text[0].numpy().decode())
        pool = [threading.Thread(target=keep_calling, args=(k,)) for k in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return sum(written) / (time.perf_counter() - start)

    print(json.dumps({"1 prime": rate(1), f"{SERVING_STREAMS} primes": rate(SERVING_STREAMS),
                      "1 thread": under_load(1), f"{LOAD_THREADS} threads":
                      under_load(LOAD_THREADS)}))


def page_of(save_dir, folder, length):
    """--visualize's page for the checkpoint in save_dir, with a passage of `length`
    characters, taken apart."""
    from cells_page import Page

    subprocess.run([sys.executable, SCRIPT, "--visualize", "--save-dir", save_dir,
                    "--passage-length", str(length), "--plots-dir", folder],
                   capture_output=True, check=True)
    return Page(pathlib.Path(folder, "ckpt_cells.html"))


def node_rates(page, repeats, web_assembly):
    """Characters per second of the page's JavaScript under Node, reading its passage, its
    products in WebAssembly or not: the first reading of a fresh process (as a page opening
    reads), and the fifth (the code compiled by then); medians over `repeats` processes."""
    first, fifth = [], []
    for _ in range(repeats):
        seconds = page.read_in_node(web_assembly=web_assembly, readings=5)["seconds"]
        first.append(len(page.passage) / seconds[0])
        fifth.append(len(page.passage) / seconds[-1])
    return statistics.median(first), statistics.median(fifth)


def chromium_figures(page, repeats):
    """The page in headless Chromium, as a reader meets it: seconds from opening the file to
    every row drawn; seconds to read and draw it all again when all of the passage changes;
    characters per second of "Let it write", 500 characters at temperature 1, as the page
    reports them. Medians over `repeats` browsers."""
    import chromium

    changed = page.passage[::-1]
    opened, reread, written = [], [], []
    for _ in range(repeats):
        with chromium.Chromium() as browser:
            start = time.perf_counter()
            browser.open(page.uri, "document.body.dataset.state === 'ready'")
            opened.append(time.perf_counter() - start)
            reread.append(browser.evaluate(f"""new Promise((done) => {{
                const box = document.getElementById('passage'), started = performance.now();
                box.value = {json.dumps(changed)};
                box.dispatchEvent(new Event('input'));
                const check = () => document.body.dataset.state === 'ready'
                    ? requestAnimationFrame(() => done((performance.now() - started) / 1000))
                    : setTimeout(check, 1);
                check();
            }})"""))
            browser.evaluate("document.getElementById('count').value = 500; "
                             "document.getElementById('write').click()")
            browser.wait_until("document.body.dataset.state === 'ready'")
            written.append(500 / float(browser.evaluate("document.body.dataset.seconds")))
    return statistics.median(opened), statistics.median(reread), statistics.median(written)


def page_rows(repeats):
    """The page's figures: its size, its JavaScript under Node, and in Chromium where it is
    installed; one layer of 500 on the works, a passage of 1,000 characters."""
    import chromium

    with tempfile.TemporaryDirectory() as folder:
        save_dir = serving_checkpoint(folder)
        page = page_of(save_dir, folder, 1000)
        size = page.path.stat().st_size
        print(f"\n| the --visualize page, one layer of 500, {len(page.passage):,} characters "
              f"({aux_funcs.format_bytes(size)}) | figure |")
        print("|---|------:|")
        for web_assembly, how in [(True, "products in WebAssembly (the page's choice)"),
                                  (False, "all in JavaScript (without WebAssembly)")]:
            first, compiled = node_rates(page, repeats, web_assembly)
            print(f"| Node {node_version()}, {how}: chars/s, first reading of a process | "
                  f"{first:,.0f} |")
            print(f"| the same, fifth reading (compiled by then) | {compiled:,.0f} |")
        if chromium.BINARY is None:
            print(f"| Chromium | not measured: {chromium.WHY_NOT} |")
            return
        opened, reread, written = chromium_figures(page, repeats)
        print(f"| Chromium {chromium_version()}: opened, read and drawn, s | {opened:.2f} |")
        print(f"| Chromium: all {len(page.passage):,} characters changed, read and drawn, s | "
              f"{reread:.2f} |")
        print(f"| Chromium: \"Let it write\", chars/s | {written:,.0f} |")


def node_version():
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def chromium_version():
    import chromium

    return subprocess.run([chromium.BINARY, "--version"], capture_output=True,
                          text=True).stdout.split()[1]


def worker_json(*args):
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def serving_rows(repeats, seconds):
    """The exported model against --sample, repeat after repeat, each in processes of its
    own; print the table and the export's time."""
    runs = {"sample": [], "serving": [], "export s": []}
    with tempfile.TemporaryDirectory() as folder:
        save_dir = serving_checkpoint(folder)
        for repeat in range(repeats):
            runs["export s"].append(export_seconds(save_dir, folder))
            model_dir = os.path.join(folder, "models", str(repeat + 1))
            runs["sample"].append(worker_json("--sample-worker", save_dir)["chars/s"])
            runs["serving"].append(worker_json("--serving-worker", model_dir, "--seconds",
                                               str(seconds)))
            print(f"  repeat {repeat + 1}/{repeats}: the exported model done", file=sys.stderr)
        size = aux_funcs.folder_size(model_dir)

    def median(key):
        return statistics.median(run[key] for run in runs["serving"])
    sample = statistics.median(runs["sample"])
    one = median("1 prime")
    print(f"\n| the exported model, one layer of 500 ({aux_funcs.format_bytes(size)}), "
          "loaded by tf.saved_model.load alone | chars/s | ratio |")
    print("|---|--------:|------:|")
    print(f"| `--sample`: the in-graph sampler, one stream | {sample:7,.0f} | |")
    print(f"| serving_default, 1 prime, {SERVING_LENGTH} characters | {one:7,.0f} | "
          f"{one / sample:.2f} x --sample |")
    many = median(f"{SERVING_STREAMS} primes")
    print(f"| serving_default, {SERVING_STREAMS} primes at once | {many:7,.0f} | "
          f"{many / one:.1f} x 1 prime |")
    alone, loaded = median("1 thread"), median(f"{LOAD_THREADS} threads")
    print(f"| serving_default, 1 prime a call: 1 thread for {seconds:g} s | {alone:7,.0f} | |")
    print(f"| the same, {LOAD_THREADS} threads at once, total | {loaded:7,.0f} | "
          f"{loaded / alone:.2f} x 1 thread |")
    print(f"\n`--export` of one layer of 500: {statistics.median(runs['export s']):.1f} s from "
          f"the command to the prompt (median of {repeats})")


def lstm_defaults():
    """The defaults of this tf-lstm-char.py: iterations, report interval, window and batch."""
    options = load_script().Options()
    return options.iterations, options.sample_every, options.seq_length * options.batch_size


def print_evaluation(median, defaults):
    """Held-out evaluation's rows beside training's, and the share of the default run, and of
    a run of 1001 iterations, that they predict."""
    iterations, every, chars_per_iteration = defaults
    training = median("defaults", "chars/s")
    report, end = median("defaults", "report chars/s"), median("defaults", "end chars/s")
    held_out = median("defaults", "held out")
    print("\n| held-out evaluation, one layer of 500, batch 1 | chars/s | x training |")
    print("|---|--------:|-----------:|")
    print(f"| training, the defaults | {training:7,.0f} | 1.00 |")
    print(f"| each report: val[:20000], {median('defaults', 'report tracks'):.0f} tracks | "
          f"{report:7,.0f} | {report / training:10.1f} |")
    print(f"| the end: all held out, {median('defaults', 'end tracks'):.0f} tracks | "
          f"{end:7,.0f} | {end / training:10.1f} |")
    alone = median("defaults", "report alone s")
    waited, beside = (median("defaults", f"score {how} s") - alone for how in ("waited", "beside"))
    print("\n| a report (sample, plot, checkpoint) and the 100 steps after it | s | added |")
    print("|---|--:|--:|")
    print(f"| without a held-out score | {alone:.2f} | - |")
    print(f"| val[:20000] scored first, waited for | {alone + waited:.2f} | {waited:+.2f} |")
    print(f"| val[:20000] scored in a second thread beside them (what a run does) | "
          f"{alone + beside:.2f} | {beside:+.2f} |")
    print()
    for run in (iterations, 1001):
        reports = run // every + 1
        training_seconds = run * chars_per_iteration / training
        for how, added in (("waited for", waited), ("beside training", beside)):
            evaluating = reports * max(added, 0.0) + held_out / end
            share = evaluating / (evaluating + training_seconds)
            print(f"a run of {run} iterations ({reports} reports scored {how}, then all "
                  f"{held_out:,.0f} characters): {evaluating:.1f} s of evaluation, "
                  f"{100 * share:.1f}% of it")


def cpuinfo():
    """/proc/cpuinfo's text, or "" where there is none."""
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def not_measured_here(name):
    """Why configuration `name` would measure nothing new on this processor, or None: --bf16
    where the program leaves it off (tf-lstm-char.py's bfloat16_applies), the AVX2 cap where
    oneDNN has nothing above AVX2 to use."""
    config = CONFIGS[name]
    if config.bf16 and not aux_funcs.bfloat16_instruction_sets():
        return "--bf16 left off: no AVX512-BF16 or AMX-BF16 here"
    flags = aux_funcs.cpu_flags()
    if "ONEDNN_MAX_CPU_ISA" in config.environment and flags and "avx512f" not in flags:
        return "no AVX-512 here: oneDNN runs AVX2 already"
    return None


def processor():
    """The processor's name, and which of the bfloat16 instruction sets it has."""
    name = re.search(r"^model name\s*:\s*(.*)$", cpuinfo(), re.MULTILINE)
    has = aux_funcs.bfloat16_instruction_sets()
    return f"{name.group(1) if name else platform.processor() or platform.machine()}, " + (
        ", ".join(has) if has else "no bfloat16 instructions")


def advice(ratio, faster, slower):
    """What to do about a choice that runs at `ratio` times the other: within 5% either way
    is the noise of this shared machine."""
    if ratio > 1.05:
        return faster
    return slower if ratio < 0.95 else f"no clear difference ({slower})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, fewer iterations: a smoke test")
    parser.add_argument("--profile", action="store_true",
                        help="only the profiles of a training step: batch 1, batch 32 with one "
                        "layer, with --bf16 (where it applies) and with two layers")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--serving", action="store_true",
                        help="only the exported model's rows (--quick: one repeat, shorter)")
    parser.add_argument("--page", action="store_true",
                        help="only the --visualize page's rows: Node, and Chromium where it is "
                        "installed")
    parser.add_argument("--evaluation", action="store_true",
                        help="only held-out evaluation's rows, beside the defaults' training")
    parser.add_argument("--profile-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sample-worker", help=argparse.SUPPRESS)
    parser.add_argument("--serving-worker", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.iterations)
    if args.profile_worker:
        return profile_worker(args.profile_worker, args.layers, args.bf16)
    if args.profile:
        return print_profiles()
    if args.sample_worker:
        return sample_worker(args.sample_worker)
    if args.serving_worker:
        return serving_worker(args.serving_worker, args.seconds)
    serving_repeats, serving_seconds = (1, 5) if args.quick else (5, 30)
    if args.serving:
        return serving_rows(serving_repeats, serving_seconds)
    page_repeats = 1 if args.quick else 5
    if args.page:
        return page_rows(page_repeats)

    repeats = 1 if args.quick else 5
    results = {name: [] for name in CONFIGS}
    measured = [name for name in CONFIGS if not not_measured_here(name)]
    if args.evaluation:
        measured = ["defaults"]
    started = time.perf_counter()
    for repeat in range(repeats):
        for name in measured:
            batch = CONFIGS[name].batch
            iterations = (10 if batch > 1 else 30) if args.quick else (30 if batch > 1 else 60)
            results[name].append(measure(name, iterations))
            print(f"  repeat {repeat + 1}/{repeats}: {name} done", file=sys.stderr)

    def median(name, key):
        return statistics.median(run[key] for run in results[name])

    if args.evaluation:
        print(f"tf-lstm-char benchmark, {time.strftime('%Y-%m-%d')}: {processor()}, median of "
              f"{repeats} repeats")
        return print_evaluation(median, lstm_defaults())

    from importlib.metadata import version
    print(f"tf-lstm-char benchmark, {time.strftime('%Y-%m-%d')}: {processor()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow "
          f"{version('tensorflow')}; hidden 500, 100 steps; median of {repeats} "
          "interleaved repeats\n")
    base = median("baseline", "chars/s")
    width = max(len(config.what) for config in CONFIGS.values())
    print(f"| {'training':<{width}} | batch | it/s | chars/s | x baseline | x before | "
          "x PyTorch | peak MiB |")
    print(f"|{'-' * (width + 2)}|------:|-----:|--------:|-----------:|---------:|"
          "----------:|---------:|")
    # Each row beside the program before this change and PyTorch, at its batch and layers.
    before = {(c.batch, c.layers): n for n, c in CONFIGS.items() if c.runs == "before"}
    torch = {(c.batch, c.layers): n for n, c in CONFIGS.items() if c.runs == "torch"}

    def against(name, other):
        return median(name, "chars/s") / median(other, "chars/s")

    def ratio(name, to):
        if to is None or not results[to] or None in results[to]:
            return "-"
        return f"{against(name, to):.2f}"

    for name, config in CONFIGS.items():
        if None in results[name] or not results[name]:
            missing = not_measured_here(name) or TORCH_MISSING
            print(f"| {config.what:<{width}} | {config.batch:>5} | {missing} |")
            continue
        chars = median(name, "chars/s")
        shape = (config.batch, config.layers)
        print(f"| {config.what:<{width}} | {config.batch:>5} | {median(name, 'it/s'):4.1f} | "
              f"{chars:7,.0f} | {chars / base:10.2f} | {ratio(name, before.get(shape)):>8} | "
              f"{ratio(name, torch.get(shape)):>9} | {median(name, 'peak MiB'):8.0f} |")
    if None in results["pytorch"]:
        print(f"\nPyTorch: {TORCH_MISSING} (it is not a requirement)")
    else:
        print(f"\nPyTorch {results['pytorch'][0]['torch']}, float32, on the same cores")

    print(f"\nwhat the program does by itself, measured on this processor ({processor()}):")
    for name, other, what in [
            ("defaults", "tf-gradient", "the written gradient at batch 1"),
            ("batch32", "batch32-tf", "the written gradient at batch 32"),
            ("layers2", "layers2-tf", "the written gradient for 2 layers"),
            ("batch32-bf16", "batch32-bf16-tf", "the written gradient with --bf16")]:
        if name in measured and other in measured:
            print(f"{what}: {against(name, other):.2f}x TensorFlow's gradient; " + advice(
                against(name, other), "the program should use it here",
                "the program should use TensorFlow's here"))
    print(f"W_h^T in four blocks at batch 1: {against('defaults', 'one-block'):.2f}x one "
          "block; " + advice(against("defaults", "one-block"), "keep it",
                             "it no longer pays here: drop it"))
    xla = against("xla", "defaults")
    print(f"XLA auto-clustering at batch 1: {xla:.2f}x the defaults; " + advice(
        xla, "it pays here: turn it on again", "the program leaves it off"))
    if "batch32-bf16" in measured:
        bf16 = against("batch32-bf16", "batch32")
        bf16_layers2 = against("layers2-bf16", "layers2")
        print(f"--bf16 (a choice of precision, so the user's): batch 32 at {bf16:.2f}x float32, "
              f"2 layers at {bf16_layers2:.2f}x")
    else:
        print("--bf16: nothing to set; without AVX512-BF16 or AMX-BF16 the program leaves it "
              "off, as emulated bfloat16 trains slower than float32")
    if "batch32-avx2" in measured:
        avx2 = against("batch32-avx2", "batch32")
        print(f"oneDNN capped at AVX2 trains batch 32 at {avx2:.2f}x the default here: "
              + advice(avx2, "set ONEDNN_MAX_CPU_ISA=AVX2", "leave oneDNN's choice as it is"))
    else:
        print("ONEDNN_MAX_CPU_ISA: nothing to set; this processor has no AVX-512")
    print_evaluation(median, lstm_defaults())
    base_feed = median("baseline", "feed sampler chars/s")
    feed = median("defaults", "feed sampler chars/s")
    print("\n| sampler, 600 characters, batch 1 | chars/s | x baseline | x feed |")
    print("|---|--------:|-----------:|-------:|")
    for what, name, sampler in [
            ("feed: the post's sample(), oneDNN off (baseline)", "baseline", "feed"),
            ("feed: the post's sample(), as `--sampler feed` runs it", "defaults", "feed"),
            ("graph: the cell in a tf.while_loop (the default, as --sample runs it)",
             "defaults", "graph")]:
        chars = median(name, f"{sampler} sampler chars/s")
        print(f"| {what} | {chars:7,.0f} | {chars / base_feed:10.2f} | {chars / feed:6.2f} |")
    serving_rows(serving_repeats, serving_seconds)
    page_rows(page_repeats)
    print_profiles()
    size, first, peak = scale_check(100)
    print(f"\nscale: a {size:.0f} MiB text reached its first report line in {first:.1f} s "
          f"(training starts before that line), peak memory {peak:,.0f} MiB")
    print(f"\nbenchmark took {(time.perf_counter() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
