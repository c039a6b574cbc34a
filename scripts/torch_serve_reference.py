#!/usr/bin/env python3
"""PyTorch reference for `flowcast bench serve` (docs/serve.md "Speed"): the registry's
architectures rebuilt layer for layer in PyTorch (from models/src/*.rs), timed on the same
shapes — batch-64 windows/s and single-window p50/p99 latency — in inference mode on the CPU.

Not a test (CI has no torch). Run it alternately with `flowcast bench serve` on an idle-ish
machine, with the same thread counts (flowcast: RAYON_NUM_THREADS=N):

    /work/torchenv/bin/python scripts/torch_serve_reference.py [--threads 1,2] [--json]
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RnnClassifier(nn.Module):
    """flowcast_models::rnn: one LSTM/GRU layer (hidden 64), linear head on the last step."""

    def __init__(self, cell, d_in, hidden=64, classes=3):
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(d_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def conv_unit(c_in, c_out, kernel, stride=(1, 1), padding=(0, 0), act="leaky"):
    a = nn.LeakyReLU(0.01) if act == "leaky" else nn.Tanh()
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding), a, nn.BatchNorm2d(c_out))


class DeepLob(nn.Module):
    """flowcast_models::deeplob (Zhang, Zohren & Roberts 2019): conv blocks, Inception, LSTM, head."""

    def __init__(self, levels=10, ch=32, ci=64, hidden=64, classes=3):
        super().__init__()

        def block(c_in, spatial, stride, act):
            return nn.Sequential(
                conv_unit(c_in, ch, spatial, stride, act=act), conv_unit(ch, ch, (4, 1), act=act), conv_unit(ch, ch, (4, 1), act=act)
            )

        self.conv1 = block(1, (1, 2), (1, 2), "leaky")
        self.conv2 = block(ch, (1, 2), (1, 2), "tanh")
        self.conv3 = block(ch, (1, levels), (1, 1), "leaky")
        self.inp1 = nn.Sequential(conv_unit(ch, ci, (1, 1)), conv_unit(ci, ci, (3, 1), padding=(1, 0)))
        self.inp2 = nn.Sequential(conv_unit(ch, ci, (1, 1)), conv_unit(ci, ci, (5, 1), padding=(2, 0)))
        self.inp3 = nn.Sequential(nn.MaxPool2d((3, 1), stride=(1, 1), padding=(1, 0)), conv_unit(ch, ci, (1, 1)))
        self.lstm = nn.LSTM(3 * ci, hidden, batch_first=True)
        self.fc1 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = x.unsqueeze(1)
        x = self.conv3(self.conv2(self.conv1(x)))
        x = torch.cat([self.inp1(x), self.inp2(x), self.inp3(x)], dim=1)  # [B, 3ci, T', 1]
        x = x.squeeze(3).transpose(1, 2)
        out, _ = self.lstm(x)
        return self.fc1(out[:, -1])


class TransLob(nn.Module):
    """flowcast_models::translob defaults: 5 causal dilated convs of 14 filters (kernel 2), LayerNorm,
    a linear position channel, 2 post-norm encoder layers (d_model 15, 3 heads, d_ff 60, GELU) with a
    causal mask, then a 64-unit MLP head over the flattened sequence."""

    def __init__(self, d_in=40, window=100, ch=14, layers=5, kernel=2, heads=3, depth=2, mlp=64, classes=3):
        super().__init__()
        self.kernel = kernel
        self.convs = nn.ModuleList([nn.Conv1d(d_in if i == 0 else ch, ch, kernel, dilation=1 << i) for i in range(layers)])
        self.norm = nn.LayerNorm(ch)
        d = ch + 1
        enc = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(enc, depth, enable_nested_tensor=False)
        self.fc1 = nn.Linear(window * d, mlp)
        self.fc2 = nn.Linear(mlp, classes)
        self.register_buffer("pos", torch.linspace(-1.0, 1.0, window).view(1, window, 1))
        self.register_buffer("mask", torch.triu(torch.ones(window, window, dtype=torch.bool), diagonal=1))

    def forward(self, x):
        b, t, _ = x.shape
        h = x.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            h = F.relu(conv(F.pad(h, ((self.kernel - 1) << i, 0))))
        h = self.norm(h.transpose(1, 2))
        h = torch.cat([h, self.pos.expand(b, t, 1)], dim=2)
        h = self.encoder(h, mask=self.mask)
        return self.fc2(F.relu(self.fc1(h.reshape(b, -1))))


MODELS = {
    "LSTM-64": lambda: RnnClassifier("lstm", 40),
    "GRU-64": lambda: RnnClassifier("gru", 40),
    "DeepLOB (quickstart)": lambda: DeepLob(ch=16, ci=16, hidden=32),
    "DeepLOB (full)": lambda: DeepLob(),
    "TransLOB": lambda: TransLob(),
}


def measure(model, batch=64, window=100, features=40, calls=200):
    x = torch.randn(batch, window, features)
    one = x[:1].contiguous()
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < 1.0:
            model(x)
            n += 1
        rate = n * batch / (time.perf_counter() - t0)
        for _ in range(max(3, calls // 10)):
            model(one)
        lat = []
        for _ in range(calls):
            t = time.perf_counter_ns()
            model(one)
            lat.append(time.perf_counter_ns() - t)
    lat.sort()
    pct = lambda q: lat[min(len(lat), max(1, int(-(-q * len(lat) // 1)))) - 1] / 1e3
    return rate, pct(0.5), pct(0.99)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated torch.set_num_threads values")
    ap.add_argument("--calls", type=int, default=200, help="timed single-window calls per model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(1)
    rows = []
    for threads in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name, make in MODELS.items():
            m = make().eval()
            params = sum(p.numel() for p in m.parameters() if p.requires_grad)
            rate, p50, p99 = measure(m, calls=args.calls)
            rows.append(dict(model=name, threads=threads, params=params, windows_per_s=rate, p50_us=p50, p99_us=p99))
    if args.json:
        print(json.dumps({"torch": torch.__version__, "rows": rows}))
        return
    print(f"PyTorch {torch.__version__}, batch 64 x [100, 40] windows/s and single-window latency (µs)")
    print(f"{'model':<22} {'threads':>7} {'params':>9} {'windows/s':>10} {'p50':>9} {'p99':>9}")
    for r in rows:
        print(f"{r['model']:<22} {r['threads']:>7} {r['params']:>9} {r['windows_per_s']:>10.0f} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f}")


if __name__ == "__main__":
    main()
