#!/usr/bin/env python3
"""PyTorch reference for `flowcast bench train`: the registry's architectures rebuilt layer for
layer in PyTorch (same shapes, same parameter counts as models/src/*.rs), timed the same way —
training samples/s (forward + cross-entropy + backward + Adam step, one warm-up step) and
inference windows/s (eval mode, no autograd) on random windows.

Not a test: CI has no torch. Run it beside `flowcast bench train` with the same thread count:

    python3 scripts/torch_reference.py --model deeplob --threads 2   # a Python with torch
    flowcast bench train --model deeplob            # (release build)

Figures go into docs/models.md § Speed.
"""

import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - only where torch is absent
    print("torch_reference.py: PyTorch is not installed (pip install torch; CI has none)", file=sys.stderr)
    sys.exit(2)

# Trainable parameters of the flowcast models at the default hyperparameters (10 levels = 40
# columns, 3 classes); the script refuses to time an architecture that does not match.
EXPECTED_PARAMS = {"deeplob": 143_907, "lstm": 27_331, "gru": 20_547, "transformer": 104_835}


class ConvUnit(nn.Module):
    """Convolution -> activation -> BatchNorm (models/src/deeplob.rs ConvUnit)."""

    def __init__(self, c_in, c_out, kernel, stride=(1, 1), padding=(0, 0), act="leaky"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
        self.act = nn.LeakyReLU(0.01) if act == "leaky" else nn.Tanh()
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.act(self.conv(x)))


class DeepLob(nn.Module):
    """Zhang, Zohren & Roberts (2019), as models/src/deeplob.rs."""

    def __init__(self, levels=10, n_classes=3, c=32, ci=64, hidden=64):
        super().__init__()

        def block(c_in, spatial, stride, act):
            return nn.Sequential(
                ConvUnit(c_in, c, spatial, stride, act=act),
                ConvUnit(c, c, (4, 1), act=act),
                ConvUnit(c, c, (4, 1), act=act),
            )

        self.conv1 = block(1, (1, 2), (1, 2), "leaky")
        self.conv2 = block(c, (1, 2), (1, 2), "tanh")
        self.conv3 = block(c, (1, levels), (1, 1), "leaky")
        self.inp1 = nn.Sequential(ConvUnit(c, ci, (1, 1)), ConvUnit(ci, ci, (3, 1), padding=(1, 0)))
        self.inp2 = nn.Sequential(ConvUnit(c, ci, (1, 1)), ConvUnit(ci, ci, (5, 1), padding=(2, 0)))
        self.inp3_pool = nn.MaxPool2d((3, 1), stride=(1, 1), padding=(1, 0))
        self.inp3 = ConvUnit(c, ci, (1, 1))
        self.lstm = nn.LSTM(3 * ci, hidden, batch_first=True)
        self.fc1 = nn.Linear(hidden, n_classes)

    def forward(self, x):  # [batch, T, 4L]
        x = x.unsqueeze(1)
        x = self.conv3(self.conv2(self.conv1(x)))
        x = torch.cat([self.inp1(x), self.inp2(x), self.inp3(self.inp3_pool(x))], dim=1)  # [B, 192, T', 1]
        x = x.squeeze(3).transpose(1, 2)  # [B, T', 192]
        out, _ = self.lstm(x)
        return self.fc1(out[:, -1, :])


class Rnn(nn.Module):
    """Stacked LSTM/GRU, last hidden state -> linear (models/src/rnn.rs)."""

    def __init__(self, cell, d_input=40, n_classes=3, hidden=64, layers=1, bidirectional=False):
        super().__init__()
        kind = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = kind(d_input, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.hidden = hidden
        self.bidirectional = bidirectional
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        h = self.hidden
        if self.bidirectional:
            last = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)
        else:
            last = out[:, -1, :]
        return self.head(last)


class TransLob(nn.Module):
    """Causal dilated convolutions, LayerNorm, linear position channel, causally masked encoder
    blocks (post-norm, GELU feed-forward as burn's TransformerEncoder), flattened MLP head
    (models/src/translob.rs)."""

    def __init__(self, d_input=40, n_classes=3, window=100, c=14, conv_layers=5, k=2, heads=3, depth=2, mlp=64, dropout=0.1):
        super().__init__()
        self.pads = [(2**i) * (k - 1) for i in range(conv_layers)]
        self.convs = nn.ModuleList(nn.Conv1d(d_input if i == 0 else c, c, k, dilation=2**i) for i in range(conv_layers))
        self.norm = nn.LayerNorm(c)
        d = c + 1
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, activation="gelu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.fc1 = nn.Linear(window * d, mlp)
        self.fc2 = nn.Linear(mlp, n_classes)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("pos", torch.linspace(-1.0, 1.0, window).reshape(1, window, 1))
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(window))

    def forward(self, x):  # [B, T, F]
        b, t, _ = x.shape
        h = x.transpose(1, 2)
        for pad, conv in zip(self.pads, self.convs):
            h = F.relu(conv(F.pad(h, (pad, 0))))
        h = self.norm(h.transpose(1, 2))
        h = torch.cat([h, self.pos.expand(b, t, 1)], dim=2)
        h = self.encoder(h, mask=self.mask, is_causal=True)
        h = self.drop(F.relu(self.fc1(h.reshape(b, -1))))
        return self.fc2(h)


def build(name, features, classes, window):
    if name == "deeplob":
        return DeepLob(levels=features // 4, n_classes=classes)
    if name in ("lstm", "gru"):
        return Rnn(name, d_input=features, n_classes=classes)
    if name == "transformer":
        return TransLob(d_input=features, n_classes=classes, window=window)
    raise SystemExit(f"unknown model {name!r} (deeplob, lstm, gru, transformer)")


def measure(name, args):
    torch.manual_seed(1)
    model = build(name, args.features, args.classes, args.window)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = EXPECTED_PARAMS.get(name) if (args.features, args.classes) == (40, 3) else None
    if expected is not None and n_params != expected:
        raise SystemExit(f"{name}: {n_params} trainable parameters, flowcast has {expected}: the architectures differ")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.window, args.features)
    y = torch.arange(args.batch) % args.classes

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.item()  # synchronise, as flowcast's training loop does
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    train_s = time.perf_counter() - t

    model.eval()
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        for _ in range(args.steps):
            model(x)
        infer_s = time.perf_counter() - t
    n = args.steps * args.batch
    return {
        "model": name,
        "params": n_params,
        "threads": torch.get_num_threads(),
        "train_samples_per_s": n / train_s,
        "infer_windows_per_s": n / infer_s,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="all", help="deeplob, lstm, gru, transformer or all")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (use flowcast's thread count)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--levels", type=int, default=10)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.features = 4 * args.levels
    torch.set_num_threads(args.threads)
    names = ["deeplob", "lstm", "gru", "transformer"] if args.model == "all" else [args.model]
    for name in names:
        r = measure(name, args)
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{name:<12} {r['params']:>8} params  threads {r['threads']}  "
                f"train {r['train_samples_per_s']:8.1f} samples/s  infer {r['infer_windows_per_s']:8.1f} windows/s"
            )


if __name__ == "__main__":
    main()
