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
  train_unet  batch size channels layers_per_block attention_levels head_dim groups
              one AdamW step of a DDPM U-Net (the layout of diffusers' UNet2DModel) on the ε-MSE loss
  train_vit   batch size patch dim depth heads mlp classes
              one AdamW step of a ViT classifier (transformers' ViTForImageClassification) on cross-entropy
  infer_vit   the same ViT, forward only (eval mode, no autograd)
The model cases also answer "params", their parameter count: the models are written here by hand
(diffusers and transformers are not installed) and must match the VSS ones.
Optional "inner" I: each sample times I back-to-back calls and records their mean.
Each case: W warm-up calls, then at least R timed calls and at least S seconds of them; median/min/max.
Matmuls in Debian's PyTorch go to OpenBLAS: set OPENBLAS_NUM_THREADS (and OPENBLAS_CORETYPE on CPUs it
misdetects) in the environment along with --threads.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
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


# ------------------------------------------------------------------------------------------- models
# Written to have exactly the parameters (names aside) and the computation of the VSS models, which
# follow diffusers' UNet2DModel and transformers' ViTForImageClassification.


def attention(q, k, v):
    """softmax(q·kᵀ/√d)·v over [B, heads, L, d]; 1.13 has no fused attention."""
    return torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v


class ResnetBlock(nn.Module):
    """diffusers' ResnetBlock2D, additive time conditioning: x + conv(silu(gn(conv(silu(gn(x))) + temb)))."""

    def __init__(self, cin, cout, temb_dim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class SpatialSelfAttention(nn.Module):
    """diffusers' Attention over the pixels of a feature map: GroupNorm, q/k/v, heads of head_dim, residual."""

    def __init__(self, channels, head_dim, groups):
        super().__init__()
        self.heads = channels // head_dim
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-5)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x):
        B, C, H, W = x.shape
        tokens = self.group_norm(x).reshape(B, C, H * W).transpose(1, 2)  # [B, L, C]
        split = lambda t: t.reshape(B, H * W, self.heads, C // self.heads).transpose(1, 2)
        out = attention(split(self.to_q(tokens)), split(self.to_k(tokens)), split(self.to_v(tokens)))
        out = self.to_out(out.transpose(1, 2).reshape(B, H * W, C))
        return x + out.transpose(1, 2).reshape(B, C, H, W)


class DownLevel(nn.Module):
    """DownBlock2D / AttnDownBlock2D: resnets (each followed by attention if any), then a stride-2 conv."""

    def __init__(self, cin, cout, layers, temb_dim, groups, head_dim, attend, downsample):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, temb_dim, groups) for i in range(layers))
        self.attentions = nn.ModuleList(SpatialSelfAttention(cout, head_dim, groups) for _ in range(layers)) if attend else None
        self.downsample = nn.Conv2d(cout, cout, 3, stride=2, padding=1) if downsample else None

    def forward(self, h, temb):
        skips = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h, skips


class UpLevel(nn.Module):
    """UpBlock2D / AttnUpBlock2D: layers + 1 resnets, each on [h, a skip], then nearest ×2 and a conv."""

    def __init__(self, prev_out, cout, skip_last, layers, temb_dim, groups, head_dim, attend, upsample):
        super().__init__()
        # The first resnet takes the level below's output; the last one's skip is this level's input.
        self.resnets = nn.ModuleList(
            ResnetBlock((prev_out if i == 0 else cout) + (skip_last if i == layers - 1 else cout), cout, temb_dim, groups)
            for i in range(layers))
        self.attentions = nn.ModuleList(SpatialSelfAttention(cout, head_dim, groups) for _ in range(layers)) if attend else None
        self.upsample = nn.Conv2d(cout, cout, 3, padding=1) if upsample else None

    def forward(self, h, skips, temb):
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], 1), temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
        if self.upsample is not None:
            h = self.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h


class UNet(nn.Module):
    """diffusers' UNet2DModel (unconditional, mid block resnet-attention-resnet), sinusoids flipped to cos-sin."""

    def __init__(self, in_ch, channels, layers, attention_levels, head_dim, groups):
        super().__init__()
        n, c0 = len(channels), channels[0]
        self.freq_dim, temb_dim = c0, 4 * c0
        self.conv_in = nn.Conv2d(in_ch, c0, 3, padding=1)
        self.time_embedding = nn.Sequential(nn.Linear(c0, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.down = nn.ModuleList(
            DownLevel(channels[max(i - 1, 0)], channels[i], layers, temb_dim, groups, head_dim, i in attention_levels, i < n - 1)
            for i in range(n))
        top = channels[-1]
        self.mid_resnets = nn.ModuleList(ResnetBlock(top, top, temb_dim, groups) for _ in range(2))
        self.mid_attention = SpatialSelfAttention(top, head_dim, groups)
        rev = channels[::-1]
        self.up = nn.ModuleList(
            UpLevel(rev[max(i - 1, 0)], rev[i], rev[min(i + 1, n - 1)], layers + 1, temb_dim, groups, head_dim,
                    n - 1 - i in attention_levels, i < n - 1)
            for i in range(n))
        self.norm_out = nn.GroupNorm(groups, c0, eps=1e-5)
        self.conv_out = nn.Conv2d(c0, in_ch, 3, padding=1)

    def timestep_features(self, t):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], 1)

    def forward(self, x, t):
        temb = self.time_embedding(self.timestep_features(t))
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            h, level_skips = level(h, temb)
            skips += level_skips
        h = self.mid_attention(self.mid_resnets[0](h, temb))
        h = self.mid_resnets[1](h, temb)
        for level in self.up:
            h = level(h, skips, temb)
        return self.conv_out(F.silu(self.norm_out(h)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block: x + proj(attn(ln(x))), then x + mlp(ln(x)) with exact GELU."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.heads = heads
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-6)
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-6)
        self.intermediate = nn.Linear(dim, mlp)
        self.output = nn.Linear(mlp, dim)

    def forward(self, x):
        B, T, D = x.shape
        split = lambda t: t.reshape(B, T, self.heads, D // self.heads).transpose(1, 2)
        h = self.layernorm_before(x)
        ctx = attention(split(self.query(h)), split(self.key(h)), split(self.value(h)))
        x = x + self.attn_out(ctx.transpose(1, 2).reshape(B, T, D))
        return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))


class ViT(nn.Module):
    """Patch conv, CLS token, learned positions, blocks, final LayerNorm, linear head on the CLS row."""

    def __init__(self, size, patch, dim, depth, heads, mlp, classes):
        super().__init__()
        tokens = (size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position_embeddings = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, mlp) for _ in range(depth))
        self.layernorm = nn.LayerNorm(dim, eps=1e-6)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, x):
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], 1) + self.position_embeddings
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.layernorm(x)[:, 0])


def vit_decay_groups(model, weight_decay):
    """As `vss train vit`: no weight decay on biases, norms, the CLS token and the positions."""
    decay, exempt = [], []
    for name, p in model.named_parameters():
        (exempt if p.ndim <= 1 or name in ("cls_token", "position_embeddings") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def optimizer_step(optimizer, loss_of):
    """One training step: zero the gradients, loss (read, as the VSS loop does), backward, update."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.item()
    loss.backward()
    optimizer.step()


def linear_alpha_bars(steps=1000, beta_start=1e-4, beta_end=0.02):
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, steps, dtype=torch.float32), 0)


def make_model_case(c, g):
    """A model case → (the timed call, whether it needs autograd, its parameter count)."""
    torch.manual_seed(0)  # the weights (their values do not matter, only their shapes)
    kind, batch, size = c["kind"], c["batch"], c["size"]
    if kind == "train_unet":
        model = UNet(1, c["channels"], c["layers_per_block"], c["attention_levels"], c["head_dim"], c["groups"]).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        x0 = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
        alpha_bars = linear_alpha_bars()

        def ddpm_loss():
            # Fresh timesteps and noise every step; x_t = √ᾱ x0 + √(1−ᾱ) ε; MSE against ε.
            t = torch.randint(0, len(alpha_bars), (batch,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            a = alpha_bars[t][:, None, None, None]
            return F.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)

        run, grad = (lambda: optimizer_step(optimizer, ddpm_loss)), True
    elif kind in ("train_vit", "infer_vit"):
        model = ViT(size, c["patch"], c["dim"], c["depth"], c["heads"], c["mlp"], c["classes"])
        images = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
        labels = torch.arange(batch) * 7 % c["classes"]
        if kind == "infer_vit":
            model.eval()
            run, grad = (lambda: model(images)), False
        else:
            model.train()
            optimizer = torch.optim.AdamW(vit_decay_groups(model, 0.05), lr=1e-3)

            def classification_loss():
                logits = model(images)
                (logits.detach().argmax(1) == labels).sum().item()  # the batch accuracy VSS's vitStep reports
                return F.cross_entropy(logits, labels)

            run, grad = (lambda: optimizer_step(optimizer, classification_loss)), True
    else:
        raise ValueError(f"unknown kind {kind}")
    return run, grad, sum(p.numel() for p in model.parameters())


MODEL_KINDS = ("train_unet", "train_vit", "infer_vit")


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
            if c["kind"] in MODEL_KINDS:
                run, grad, params = make_model_case(c, g)
                with torch.set_grad_enabled(grad):
                    r.update(timed(run, reps, min_time, warmup))
                r["params"] = params
                run = None  # free the model before the next case
            else:
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
