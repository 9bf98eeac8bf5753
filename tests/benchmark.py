"""Speed and memory benchmark of tf-lstm-char, run by hand (not part of the test suite):

    python tests/benchmark.py            # about a quarter of an hour on two cores
    python tests/benchmark.py --quick    # one repeat, fewer iterations: a smoke test
    python tests/benchmark.py --profile  # only where a training step's time goes

Every configuration trains hidden 500 (one layer, or two where it says so), 100 steps a window,
on data/shakespeare.txt, in its own process (oneDNN and XLA are fixed when TensorFlow is
imported). The configurations take turns, repeat after repeat, so that a slow minute of this
shared machine falls on all of them; the table gives the median of the repeats and the ratio to
the post's program measured in the same run. The "ids fed" row runs the same graph with x and y
computed in the graph from integer ids (imported with an input_map), to show whether feeding ids
instead of the post's one-hot windows would pay. Two rows undo one choice each, to show on this
machine whether it still pays: the kernel transposed once a window for the backward pass, and
oneDNN left free to use every instruction set (the AVX2 row caps it; the closing lines say which
to use here). When torch is installed (`pip install torch`; it is not a requirement), PyTorch's
nn.LSTM trains the same model, loss, optimizer and batch in the same run, and the ratios to it
are printed; at batch 1 also with oneDNN off, to show what its fused LSTM is worth; without
it, its rows say how to get it. The 2-layer rows show what --num-layers 2 costs, beside
PyTorch's 2-layer nn.LSTM. Rows that would measure nothing new on this processor say why
instead: --bf16 without AVX512-BF16 or AMX-BF16 (the program leaves it off), the AVX2 cap
without AVX-512. Then the profiles: the ops that take the most of one training step, one
layer, --bf16 and two layers, from TensorFlow's step stats (RunOptions FULL_TRACE). Last, the
scale check: a 100 MB text, from start to the first report line.

Earlier runs, and what was tried and not kept, are in tests/BENCHMARKS.md.
"""
import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tf-lstm-char.py")
TEXT = os.path.join(REPO, "data", "shakespeare.txt")
sys.path.insert(0, REPO)

import aux_funcs  # noqa: E402  (found through the path above)

# name: (what it is, batch, layers, feed, oneDNN, XLA, bf16, samplers, other environment)
CONFIGS = {
    "baseline": ("the post's program: one-hot fed, oneDNN off, no XLA", 1, 1, "one-hot", 0,
                 "off", 0, ["feed"], {}),
    "defaults": ("defaults: one-hot fed, oneDNN, XLA at batch 1", 1, 1, "one-hot", 1, "auto",
                 0, [], {}),
    "ids": ("defaults, ids fed", 1, 1, "ids", 1, "auto", 0, [], {}),
    "no-xla": ("defaults --xla off", 1, 1, "one-hot", 1, "off", 0, ["feed", "graph"], {}),
    "pytorch": ("PyTorch nn.LSTM, the same model, loss and Adam", 1, 1, "torch", 0, "off", 0,
                [], {}),
    "pytorch-no-onednn": ("PyTorch nn.LSTM, oneDNN off: one op per step, not its fused LSTM",
                          1, 1, "torch-no-onednn", 0, "off", 0, [], {}),
    "batch32": ("defaults --batch-size 32 (no XLA)", 32, 1, "one-hot", 1, "auto", 0, [], {}),
    "batch32-tf-gradient": ("--batch-size 32, TensorFlow's gradient (kernel transposed at "
                            "each step)", 32, 1, "tf-gradient", 1, "auto", 0, [], {}),
    "batch32-avx2": ("--batch-size 32, oneDNN capped at AVX2", 32, 1, "one-hot", 1, "auto",
                     0, [], {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "batch32-xla": ("--batch-size 32 --xla on", 32, 1, "one-hot", 1, "on", 0, [], {}),
    "batch32-bf16": ("--batch-size 32 --bf16 (bfloat16 products)", 32, 1, "one-hot", 1,
                     "auto", 1, [], {}),
    "pytorch32": ("PyTorch nn.LSTM, the same model, loss and Adam", 32, 1, "torch", 0, "off",
                  0, [], {}),
    "layers2": ("--batch-size 32 --num-layers 2", 32, 2, "one-hot", 1, "auto", 0, [], {}),
    "layers2-bf16": ("--batch-size 32 --num-layers 2 --bf16", 32, 2, "one-hot", 1, "auto", 1,
                     [], {}),
    "pytorch32-layers2": ("PyTorch nn.LSTM, 2 layers", 32, 2, "torch", 0, "off", 0, [], {}),
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


def fed_with_ids(tf, model, vocab_size, batch):
    """The training graph again, x and y made in the graph from integer ids: (the graph, its
    ids placeholders, and the names to run)."""
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x_ids = tf1.placeholder(tf.int32, [None, batch])
        y_ids = tf1.placeholder(tf.int32, [None, batch])
        tf1.import_graph_def(model.graph.as_graph_def(), name="m",
                             input_map={"x:0": tf.one_hot(x_ids, vocab_size),
                                        "y:0": tf.one_hot(y_ids, vocab_size)})
    return graph, x_ids, y_ids


def load_script():
    """tf-lstm-char.py as a module (its name has dashes)."""
    spec = importlib.util.spec_from_file_location("tf_lstm_char", SCRIPT)
    lstm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lstm)
    return lstm


def worker(name, iterations):
    """Measure one configuration in this process; print one JSON line."""
    _, batch, layers, feed, onednn, xla, bf16, samplers, environment = CONFIGS[name]
    if feed.startswith("torch"):
        result = torch_worker(batch, layers, iterations, onednn=feed == "torch")
        if result is not None:
            result["peak MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = str(onednn)
    os.environ.update(environment)
    lstm = load_script()
    if feed == "tf-gradient":
        lstm.transpose_kernel_once = lambda *unused: None
    import numpy as np

    options = lstm.Options(batch_size=batch, num_layers=layers, xla=xla, bf16=bool(bf16),
                           seed=1)
    tf = lstm.import_tensorflow(options)
    text, char_to_idx, _, vocab_size = aux_funcs.load(TEXT)
    ids = aux_funcs.text_to_ids(text, char_to_idx)
    model = lstm.build_graph(tf, vocab_size, options)
    batches = aux_funcs.BatchGenerator(ids, 100, vocab_size, batch)
    if feed == "ids":
        graph, x_ids, y_ids = fed_with_ids(tf, model, vocab_size, batch)
        fetches = ["m/loss:0", "m/final_state:0", "m/training"]
        init, init_state = "m/init", "m/init_state:0"
        windows = aux_funcs.tracks(ids, batch)
    else:
        model = lstm.add_extras(tf, model)
        graph, init, init_state = model.graph, model.init, model.init_state
        fetches = [model.loss, model.final_state, model.training]
    result = {}
    with tf.compat.v1.Session(graph=graph, config=lstm.session_config(tf, options)) as session:
        session.run(init)
        state = np.zeros(lstm.state_shape(options), np.float32)
        warm_up = 5
        for step in range(warm_up + iterations):
            if step == warm_up:
                start = time.perf_counter()
            if feed == "ids":
                at = step * 100
                window = windows[at:at + 101]
                fed = {x_ids: window[:-1], y_ids: window[1:]}
            else:
                inputs, targets = next(batches)
                fed = {model.x: inputs, model.y: targets}
            fed[init_state] = state
            _, state, _ = session.run(fetches, fed)
        seconds = time.perf_counter() - start
        result["it/s"] = iterations / seconds
        result["chars/s"] = iterations * 100 * batch / seconds
        rng = np.random.default_rng(0)
        for sampler in samplers:
            sampler_options = lstm.replace(options, sampler=sampler)
            list(lstm.sample_by_options(session, model, sampler_options, "", 20, rng))
            times = []
            for _ in range(3):
                start = time.perf_counter()
                list(lstm.sample_by_options(session, model, sampler_options, "", 600, rng))
                times.append(time.perf_counter() - start)
            result[f"{sampler} sampler chars/s"] = 600 / statistics.median(times)
    result["peak MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# What the profile's largest ops compute, by the end of their node names.
ROLES = {
    "lstm_cell/BiasAdd": "gates = concat([x, h]) @ kernel + bias",
    "MatMul_grad/MatMul": "d concat([x, h]) = d gates @ kernel^T",
    "MatMul_grad/MatMul_1": "d kernel = concat([x, h])^T @ d gates",
    "gradients/AddN_3": "d kernel summed over the steps",
    "split_grad/concat": "d gates: the four gates' gradients joined",
    "lstm_cell/split": "the gates split in four",
    "kernel_transposed": "kernel^T, once a window",
    "lstm_cell/Sigmoid": "a gate's sigmoid",
    "lstm_cell/Sigmoid_1": "a gate's sigmoid",
    "lstm_cell/Sigmoid_2": "a gate's sigmoid",
}


def profile_worker(batch, layers, xla, bf16):
    """Trace a few training steps of the defaults at `batch` and `layers` (and --bf16) with
    TensorFlow's step stats; print one JSON line: the step's wall time, how many ops ran, and
    the ops that took longest."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    lstm = load_script()
    import numpy as np

    options = lstm.Options(batch_size=batch, num_layers=layers, xla=xla, bf16=bf16, seed=1)
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


def print_profile(batch, layers, xla, why, bf16=False):
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, __file__, "--profile-worker", str(batch), "--layers",
                          str(layers), "--xla", xla] + ["--bf16"] * bf16, env=env,
                         capture_output=True, text=True, check=True).stdout
    figures = json.loads(out.splitlines()[-1])
    print(f"\nprofile of one training step, batch {batch}{why}: {figures['step ms']:.1f} ms "
          f"untraced; {figures['ops']:,.0f} ops ran, {figures['op ms']:.1f} ms of op time "
          f"summed over both cores' threads, {figures['products']:.0%} of it in MatMul\n")
    print("| pass | op | node | what it computes | ms per step | share of op time |")
    print("|---|---|---|---|--:|--:|")
    for key, milliseconds, share in figures["top"]:
        role = ROLES.get(key.split(" | ")[-1], "")
        print(f"| {key} | {role} | {milliseconds:.1f} | {share:.1%} |")


def print_profiles():
    print_profile(32, 1, "auto", "")
    # Where --bf16 pays on one processor and not on another, this shows which ops differ.
    if not not_measured_here("batch32-bf16"):
        print_profile(32, 1, "auto", ", --bf16", bf16=True)
    print_profile(32, 2, "auto", ", --num-layers 2")
    # XLA would fuse the batch-1 step into a few compiled clusters; without it each op shows.
    print_profile(1, 1, "off", ", --xla off")


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
    if config[6] and not aux_funcs.bfloat16_instruction_sets():
        return "--bf16 left off: no AVX512-BF16 or AMX-BF16 here"
    flags = aux_funcs.cpu_flags()
    if "ONEDNN_MAX_CPU_ISA" in config[8] and flags and "avx512f" not in flags:
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
                        help="only the profiles of a training step: batch 32 with one layer, "
                        "with --bf16 (where it applies) and with two layers, and batch 1")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--profile-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--xla", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.iterations)
    if args.profile_worker:
        return profile_worker(args.profile_worker, args.layers, args.xla, args.bf16)
    if args.profile:
        return print_profiles()

    repeats = 1 if args.quick else 5
    results = {name: [] for name in CONFIGS}
    measured = [name for name in CONFIGS if not not_measured_here(name)]
    started = time.perf_counter()
    for repeat in range(repeats):
        for name in measured:
            batch = CONFIGS[name][1]
            iterations = (10 if batch > 1 else 30) if args.quick else (30 if batch > 1 else 60)
            results[name].append(measure(name, iterations))
            print(f"  repeat {repeat + 1}/{repeats}: {name} done", file=sys.stderr)

    def median(name, key):
        return statistics.median(run[key] for run in results[name])

    from importlib.metadata import version
    print(f"tf-lstm-char benchmark, {time.strftime('%Y-%m-%d')}: {processor()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow "
          f"{version('tensorflow')}; hidden 500, 100 steps; median of {repeats} "
          "interleaved repeats\n")
    base = median("baseline", "chars/s")
    width = max(len(config[0]) for config in CONFIGS.values())
    print(f"| {'training':<{width}} | batch | it/s | chars/s | x baseline | peak MiB |")
    print(f"|{'-' * (width + 2)}|------:|-----:|--------:|-----------:|---------:|")
    for name, config in CONFIGS.items():
        if None in results[name] or not results[name]:
            missing = not_measured_here(name) or TORCH_MISSING
            print(f"| {config[0]:<{width}} | {config[1]:>5} | {missing} |")
            continue
        chars = median(name, "chars/s")
        print(f"| {config[0]:<{width}} | {config[1]:>5} | {median(name, 'it/s'):4.1f} | "
              f"{chars:7,.0f} | {chars / base:10.2f} | {median(name, 'peak MiB'):8.0f} |")
    if None in results["pytorch"] + results["pytorch32"] + results["pytorch32-layers2"]:
        print(f"\nPyTorch: {TORCH_MISSING} (it is not a requirement)")
    else:
        torch_1, torch_32 = median("pytorch", "chars/s"), median("pytorch32", "chars/s")
        torch_layers2 = median("pytorch32-layers2", "chars/s")
        with_bf16 = {name: name + "-bf16" for name in ("batch32", "layers2")
                     if name + "-bf16" in measured}

        def against(name, torch):
            ratio = f"{median(name, 'chars/s') / torch:.2f}x"
            if name in with_bf16:
                ratio += f" (with --bf16 {median(with_bf16[name], 'chars/s') / torch:.2f}x)"
            return ratio

        print(f"\nagainst PyTorch {results['pytorch'][0]['torch']} (float32, the same cores): "
              f"defaults at batch 1 {against('defaults', torch_1)} (PyTorch with oneDNN off "
              f"{against('pytorch-no-onednn', torch_1)}), --batch-size 32 "
              f"{against('batch32', torch_32)}, 2 layers at batch 32 "
              f"{against('layers2', torch_layers2)}")
    batch32 = median("batch32", "chars/s")
    print(f"\nwhat to set on this processor ({processor()}):")
    if "batch32-bf16" in measured:
        bf16 = median("batch32-bf16", "chars/s") / batch32
        bf16_layers2 = median("layers2-bf16", "chars/s") / median("layers2", "chars/s")
        print(f"--bf16 trains batch 32 at {bf16:.2f}x float32 here, 2 layers at "
              f"{bf16_layers2:.2f}x: one layer, {advice(bf16, 'add --bf16', 'leave it off')}; "
              "two layers, " + advice(bf16_layers2, "add --bf16", "leave it off"))
    else:
        print("--bf16: nothing to set; without AVX512-BF16 or AMX-BF16 the program leaves it "
              "off, as emulated bfloat16 trains slower than float32")
    transposed = batch32 / median("batch32-tf-gradient", "chars/s")
    print(f"the kernel transposed once a window trains batch 32 at {transposed:.2f}x "
          "TensorFlow's own gradient: " + advice(
              transposed, "it pays here, and the program does it (transpose_kernel_once)",
              "it does not pay here: transpose_kernel_once should not apply on this processor"))
    if "batch32-avx2" in measured:
        avx2 = median("batch32-avx2", "chars/s") / batch32
        print(f"oneDNN capped at AVX2 trains batch 32 at {avx2:.2f}x the default here: "
              + advice(avx2, "set ONEDNN_MAX_CPU_ISA=AVX2", "leave oneDNN's choice as it is"))
    else:
        print("ONEDNN_MAX_CPU_ISA: nothing to set; this processor has no AVX-512")
    base_feed = median("baseline", "feed sampler chars/s")
    feed = median("no-xla", "feed sampler chars/s")
    print("\n| sampler, 600 characters, batch 1 | chars/s | x baseline | x feed |")
    print("|---|--------:|-----------:|-------:|")
    for what, name, sampler in [
            ("feed: the post's sample(), oneDNN off (baseline)", "baseline", "feed"),
            ("feed: the post's sample(), as `--sampler feed` runs it", "no-xla", "feed"),
            ("graph: the cell in a tf.while_loop (the default, as --sample runs it)", "no-xla",
             "graph")]:
        chars = median(name, f"{sampler} sampler chars/s")
        print(f"| {what} | {chars:7,.0f} | {chars / base_feed:10.2f} | {chars / feed:6.2f} |")
    print_profiles()
    size, first, peak = scale_check(100)
    print(f"\nscale: a {size:.0f} MiB text reached its first report line in {first:.1f} s "
          f"(training starts before that line), peak memory {peak:,.0f} MiB")
    print(f"\nbenchmark took {(time.perf_counter() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
