"""The PyTorch reference for grist's trainer parity test, in llm.c's manner: a small seeded GPT
(L=2, C=64, NH=4, T=32, vocabulary 250 padded to 256, B=2) run by a plain PyTorch model of
the same architecture (pre-LayerNorm blocks, causal attention, GELU tanh, tied output
embedding, cross-entropy over the real vocabulary), fp32 on the CPU. Writes one file with the
parameters (in grist's layout, llm.c's order), the batch, the logits, the loss, every
parameter's gradient, and the losses of 10 AdamW steps (lr 1e-3, betas 0.9/0.95, eps 1e-8,
weight decay 0.1 on the matrices only). Run by hand; CI only reads the file:
  pip install torch numpy
  python scripts/torch-reference.py trainer/tests/golden/gpt_reference.bin
Format: u32 header length H, H bytes of JSON (config and the arrays' names, dtypes, shapes,
in order), then the arrays, little-endian.
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)
L, C, NH, T, V, VP, B = 2, 64, 4, 32, 250, 256, 2


def randn(*shape, std=0.02):
    return torch.randn(*shape) * std


wte = randn(VP, C)
wte[V:] = 0.0
p = {
    "wte": wte,
    "wpe": randn(T, C),
    "ln1w": 1.0 + randn(L, C, std=0.1),
    "ln1b": randn(L, C),
    "qkvw": randn(L, 3 * C, C),
    "qkvb": randn(L, 3 * C),
    "attprojw": randn(L, C, C, std=0.02 / math.sqrt(2 * L)),
    "attprojb": randn(L, C),
    "ln2w": 1.0 + randn(L, C, std=0.1),
    "ln2b": randn(L, C),
    "fcw": randn(L, 4 * C, C),
    "fcb": randn(L, 4 * C),
    "fcprojw": randn(L, C, 4 * C, std=0.02 / math.sqrt(2 * L)),
    "fcprojb": randn(L, C),
    "lnfw": 1.0 + randn(C, std=0.1),
    "lnfb": randn(C),
}
order = list(p)
params = {k: v.clone().requires_grad_(True) for k, v in p.items()}
tokens = torch.randint(0, V, (B, T))
targets = torch.randint(0, V, (B, T))


def model(q):
    x = q["wte"][tokens] + q["wpe"][:T]
    hs = C // NH
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(L):
        h = F.layer_norm(x, (C,), q["ln1w"][i], q["ln1b"][i], eps=1e-5)
        qkv = h @ q["qkvw"][i].T + q["qkvb"][i]
        qq, kk, vv = qkv.split(C, dim=-1)
        qq = qq.view(B, T, NH, hs).transpose(1, 2)
        kk = kk.view(B, T, NH, hs).transpose(1, 2)
        vv = vv.view(B, T, NH, hs).transpose(1, 2)
        att = (qq @ kk.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ vv).transpose(1, 2).reshape(B, T, C)
        x = x + y @ q["attprojw"][i].T + q["attprojb"][i]
        h = F.layer_norm(x, (C,), q["ln2w"][i], q["ln2b"][i], eps=1e-5)
        h = F.gelu(h @ q["fcw"][i].T + q["fcb"][i], approximate="tanh")
        x = x + h @ q["fcprojw"][i].T + q["fcprojb"][i]
    x = F.layer_norm(x, (C,), q["lnfw"], q["lnfb"], eps=1e-5)
    logits = x @ q["wte"].T
    loss = F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1))
    return logits, loss


logits, loss = model(params)
loss.backward()
grads = {k: params[k].grad.clone() for k in order}

decay = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}
train = {k: v.clone().requires_grad_(True) for k, v in p.items()}
opt = torch.optim.AdamW(
    [
        {"params": [train[k] for k in order if k in decay], "weight_decay": 0.1},
        {"params": [train[k] for k in order if k not in decay], "weight_decay": 0.0},
    ],
    lr=1e-3,
    betas=(0.9, 0.95),
    eps=1e-8,
    foreach=False,
)
losses = []
for _ in range(10):
    opt.zero_grad()
    _, l = model(train)
    l.backward()
    losses.append(l.item())
    opt.step()

arrays = [("params", torch.cat([p[k].reshape(-1) for k in order]).numpy(), "f32")]
arrays.append(("tokens", tokens.reshape(-1).to(torch.int32).numpy(), "i32"))
arrays.append(("targets", targets.reshape(-1).to(torch.int32).numpy(), "i32"))
arrays.append(("logits", logits.detach().reshape(-1).numpy(), "f32"))
arrays.append(("grads", torch.cat([grads[k].reshape(-1) for k in order]).numpy(), "f32"))
header = {
    "torch": torch.__version__,
    "config": {"layers": L, "channels": C, "heads": NH, "seq_len": T, "vocab": V, "padded_vocab": VP, "batch": B},
    "loss": loss.item(),
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "losses": losses},
    "arrays": [{"name": n, "dtype": d, "len": int(a.size)} for n, a, d in arrays],
}
h = json.dumps(header).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<I", len(h)))
    f.write(h)
    for _, a, _ in arrays:
        f.write(a.astype("<f4" if a.dtype.kind == "f" else "<i4").tobytes())
print(f"loss {loss.item():.6f}, 10 AdamW losses {losses[0]:.6f} .. {losses[-1]:.6f}", file=sys.stderr)
