#!/usr/bin/python3
"""Peer for the VSS engine benchmark: times PyTorch (CPU) on the cases given as JSON and prints JSON.

    /usr/bin/python3 torch_bench.py --threads T < cases.jsonl

It first prints a header line {"peer", "version", "threads"}, then reads one JSON case per input line and
answers each with one JSON line {"id", "reps", "median_s", "min_s", "max_s", "p10_s", "p90_s",
"max_rss_mib"} (or "error"),
so a driver can keep it running and interleave its cases with its own. A CASE has an "id", optional
"reps" R (default 5), "min_time" S seconds (0.5) and "warmup" W (1), and a "kind":
  conv        N C H W O kh kw pad, "pass": "fwd" | "bwd_input" | "bwd_weight"   (stride 1, dilation 1)
  attention   B H Lq Lk D Dv, "pass": "fwd" | "bwd"   softmax(scale·QKᵀ)·V via matmul (1.13 has no SDPA);
              bwd times autograd of the whole expression given gout (the forward is not timed)
  groupnorm_silu  N C HW G     silu(group_norm(x)) with per-channel affine
  layernorm   rows cols        layer_norm over the last dim with affine
  softmax     rows cols        softmax over the last dim
  add         n                torch.add of two n-element tensors (per-op overhead)
Optional "inner" I: each sample times I back-to-back calls and records their mean.
Each case: W warm-up calls, then at least R timed calls and at least S seconds of them; median/min/max.
Matmuls in Debian's PyTorch go to OpenBLAS: set OPENBLAS_NUM_THREADS (and OPENBLAS_CORETYPE on CPUs it
misdetects) in the environment along with --threads.
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def summarize(samples):
    """Median, min, max and the 10th/90th percentiles (min/max for 10 samples or fewer)."""
    samples.sort()
    n = len(samples)
    med = samples[n // 2] if n % 2 else 0.5 * (samples[n // 2 - 1] + samples[n // 2])
    cut = (n - 1) // 10 if n > 10 else 0
    lo, hi = samples[cut], samples[n - 1 - cut]
    return {"reps": n, "median_s": med, "min_s": samples[0], "max_s": samples[-1], "p10_s": lo, "p90_s": hi}


def timed(fn, reps, min_time, warmup, inner=1):
    """Each sample is the mean time of `inner` back-to-back calls (inner > 1 for µs-scale ops)."""
    for _ in range(warmup * inner):
        fn()
    samples = []
    total = 0.0
    while len(samples) < reps or total < min_time:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        samples.append(dt / inner)
        total += dt
        if len(samples) >= 100000:
            break
    return summarize(samples)


def make_case(c, g):
    kind = c["kind"]
    rnd = lambda *s: torch.randn(*s, generator=g)
    if kind == "conv":
        N, C, H, W, O, kh, kw, pad = (c[k] for k in ("N", "C", "H", "W", "O", "kh", "kw", "pad"))
        x, w, b = rnd(N, C, H, W), rnd(O, C, kh, kw) * 0.05, rnd(O)
        OH, OW = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
        gy = rnd(N, O, OH, OW)
        p = c["pass"]
        if p == "fwd":
            return lambda: F.conv2d(x, w, b, padding=pad)
        mask = [True, False, False] if p == "bwd_input" else [False, True, False]
        conv_bwd = torch.ops.aten.convolution_backward
        return lambda: conv_bwd(gy, x, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)
    if kind == "attention":
        B, H, Lq, Lk, D, Dv = (c[k] for k in ("B", "H", "Lq", "Lk", "D", "Dv"))
        scale = D ** -0.5
        if c["pass"] == "fwd":
            q, k, v = rnd(B, H, Lq, D), rnd(B, H, Lk, D), rnd(B, H, Lk, Dv)
            return lambda: torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, -1), v)
        q = rnd(B, H, Lq, D).requires_grad_()
        k = rnd(B, H, Lk, D).requires_grad_()
        v = rnd(B, H, Lk, Dv).requires_grad_()
        gout = rnd(B, H, Lq, Dv)
        state = {}

        def setup():
            state["out"] = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, -1), v)

        # Time the backward only: build the graph before each timed call.
        return ("split", setup, lambda: torch.autograd.grad(state.pop("out"), (q, k, v), gout))
    if kind == "groupnorm_silu":
        N, C, HW, G = (c[k] for k in ("N", "C", "HW", "G"))
        x, w, b = rnd(N, C, HW), rnd(C), rnd(C)
        return lambda: F.silu(F.group_norm(x, G, w, b, 1e-5), inplace=True)
    if kind == "layernorm":
        rows, cols = c["rows"], c["cols"]
        x, w, b = rnd(rows, cols), rnd(cols), rnd(cols)
        return lambda: F.layer_norm(x, (cols,), w, b, 1e-5)
    if kind == "softmax":
        x = rnd(c["rows"], c["cols"])
        return lambda: torch.softmax(x, -1)
    if kind == "add":
        a, b = rnd(c["n"]), rnd(c["n"])
        return lambda: torch.add(a, b)
    raise ValueError(f"unknown kind {kind}")


def timed_split(setup, fn, reps, min_time, warmup):
    """Like timed(), but runs setup() untimed before every call of fn()."""
    for _ in range(warmup):
        setup()
        fn()
    samples = []
    total = 0.0
    while len(samples) < reps or total < min_time:
        setup()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
    return summarize(samples)


def main():
    threads = 1
    args = sys.argv[1:]
    if "--threads" in args:
        threads = int(args[args.index("--threads") + 1])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    print(json.dumps({"peer": "PyTorch", "version": torch.__version__, "threads": torch.get_num_threads()}),
          flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        c = json.loads(line)
        r = {"id": c.get("id")}
        try:
            reps, min_time, warmup = c.get("reps", 5), c.get("min_time", 0.5), c.get("warmup", 1)
            f = make_case(c, g)
            if isinstance(f, tuple):
                r.update(timed_split(f[1], f[2], reps, min_time, warmup))
            else:
                with torch.no_grad():
                    r.update(timed(f, reps, min_time, warmup, c.get("inner", 1)))
            f = None
        except Exception as e:  # report and go on with the other cases
            r["error"] = f"{type(e).__name__}: {e}"
        r["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
