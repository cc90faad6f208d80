"""PyTorch training-step throughput for the same GPT shape as trainer/examples/train_bench.rs
(forward, backward, AdamW; torch.set_num_threads as given). Prints one JSON object.
On the CPU in fp32 by default; GRIST_TORCH_DEVICE=cuda runs on the GPU (fused AdamW; the GEMM
peak is an 8192^3 product), GRIST_TORCH_COMPILE=1 wraps the model in torch.compile, and
GRIST_TORCH_DTYPE=bf16 autocasts the forward pass to bfloat16 (fp32 otherwise, TF32 off).
usage: torch_train_bench.py LAYERS CHANNELS HEADS SEQ BATCH STEPS THREADS
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

L, C, H, T, B, STEPS, THREADS = map(int, sys.argv[1:8])
torch.set_num_threads(THREADS)
V, VP = 50257, 50304
DEVICE = os.environ.get("GRIST_TORCH_DEVICE", "cpu")
COMPILE = os.environ.get("GRIST_TORCH_COMPILE") == "1"
BF16 = os.environ.get("GRIST_TORCH_DTYPE") == "bf16"
if DEVICE == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fcproj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
        sh = lambda t: t.view(B, T, H, C // H).transpose(1, 2)
        y = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VP, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block() for _ in range(L))
        self.lnf = nn.LayerNorm(C)

    def forward(self, idx, tgt):
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.T
        return F.cross_entropy(logits[..., :V].reshape(-1, V), tgt.reshape(-1))


m = GPT()
# GPT-2's initialization (as grist's): matrices and embeddings N(0, 0.02), biases 0.
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Embedding)):
            nn.init.normal_(mod.weight, std=0.02)
        if isinstance(mod, nn.Linear):
            mod.bias.zero_()
m = m.to(DEVICE)
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=DEVICE == "cuda")
run = torch.compile(m) if COMPILE else m
idx, tgt = torch.randint(0, V, (B, T), device=DEVICE), torch.randint(0, V, (B, T), device=DEVICE)
times = []
warm = 3 if COMPILE else 1
for _ in range(STEPS + warm):
    sync()
    s = time.perf_counter()
    opt.zero_grad()
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=BF16):
        loss = run(idx, tgt)
    loss.backward()
    opt.step()
    sync()
    times.append(time.perf_counter() - s)
step = sum(times[warm:]) / STEPS
n = 8192 if DEVICE == "cuda" else 1024
dtype = torch.bfloat16 if BF16 else torch.float32
a, b = torch.ones(n, n, device=DEVICE, dtype=dtype), torch.full((n, n), 0.5, device=DEVICE, dtype=dtype)
a @ b  # warm-up
best = float("inf")
for _ in range(6):
    sync()
    s = time.perf_counter()
    a @ b
    sync()
    best = min(best, time.perf_counter() - s)
peak = 2 * n**3 / best
params = sum(p.numel() for p in m.parameters())
tps = B * T / step
isa = torch.cuda.get_device_name() if DEVICE == "cuda" else torch.backends.cpu.get_cpu_capability()
out = {"torch": torch.__version__, "isa": isa, "threads": THREADS, "params": params, "tokens_per_s": round(tps, 1), "step_s": round(step, 4),
       "gemm_gflops": round(peak / 1e9, 1), "mfu": round(6 * params * tps / peak, 3), "loss": loss.item(),
       "compiled": COMPILE, "dtype": "bf16" if BF16 else "fp32"}
if DEVICE == "cuda":
    out["device_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
print(json.dumps(out))
