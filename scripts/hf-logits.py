"""Logits of a grist checkpoint through Hugging Face transformers (tests/train.rs runs this).
usage: hf-logits.py CHECKPOINT_DIR TOKEN,TOKEN,...   prints a JSON list of (T x V) logits."""
import json
import sys

import torch
from transformers import GPT2LMHeadModel

model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor([[int(t) for t in sys.argv[2].split(",")]])
with torch.no_grad():
    logits = model(ids).logits[0]
print(json.dumps(logits.flatten().tolist()))
