"""The reference side of the training benchmark: the same CLIP trained with PyTorch
transformers on the same table, to compare samples/s and loss curves with `hqflow-train fit`.

It takes the architecture (config.json) and tokenizer (tokenizer.json) of an `hqflow-train
fit --out` directory, starts from transformers' own random initialisation, and trains with
the recipe's defaults: AdamW (weight decay on matrices only), linear warmup then cosine decay,
random resized crop without flip, symmetric InfoNCE with a learnable temperature clamped at
100, and each image's own `long_neg` as one extra image->text candidate (--hard-negative 0
turns it off), as udfs/src/training/loss.rs defines it. Decoding runs on the main thread (as
hqflow-train's single default worker does); --workers N decodes the next batch on N threads
while the current one trains (set the recipe's data.workers to the same N). --device cuda
trains on the GPU. Prints one JSON line per --log-every steps and a final line with
samples/s.

    python benches/train_torch.py TABLE_DIR --like FIT_OUT_DIR [--steps 300] [--batch 64]
        [--lr 1e-3] [--warmup 30] [--text txt|long_pos] [--quality correct] [--threads 2]
        [--impl transformers|open_clip] [--device cpu|cuda] [--workers N]

With --impl open_clip the same sizes are built as open_clip's CLIP (PyPI open_clip_torch),
the issue's throughput reference.
"""
import argparse
import glob
import io
import json
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer
from torchvision import transforms
from transformers import CLIPConfig, CLIPModel

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def rows(table_dir, text, quality):
    """(image bytes, caption, negative or None) of every usable row, in file order."""
    out = []
    for path in sorted(glob.glob(os.path.join(table_dir, "*.parquet"))):
        cols = ["img", text, "long_neg", "truth_quality"]
        t = pq.read_table(path, columns=[c for c in cols if c in pq.read_schema(path).names])
        d = t.to_pydict()
        for i in range(t.num_rows):
            if quality and d["truth_quality"][i] != quality:
                continue
            cap = d[text][i]
            if cap is None or not cap.strip() or d["img"][i] is None:
                continue
            neg = d.get("long_neg", [None] * t.num_rows)[i]
            out.append((d["img"][i], cap, neg))
    return out


def features(out):
    """Projected features: a tensor before transformers 5, its pooler_output from 5 on."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def open_clip_model(config):
    """open_clip's CLIP with the checkpoint's sizes. Its text tower pools at the largest token
    id (OpenAI's end-of-text), not at this tokenizer's end-of-text: the compute per step is
    the same, so this side serves throughput comparisons only."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vc, tc = config.vision_config, config.text_config
    return CLIP(
        embed_dim=config.projection_dim,
        vision_cfg=CLIPVisionCfg(
            layers=vc.num_hidden_layers, width=vc.hidden_size,
            head_width=vc.hidden_size // vc.num_attention_heads,
            mlp_ratio=vc.intermediate_size / vc.hidden_size,
            patch_size=vc.patch_size, image_size=vc.image_size),
        text_cfg=CLIPTextCfg(
            context_length=tc.max_position_embeddings, vocab_size=tc.vocab_size,
            width=tc.hidden_size, heads=tc.num_attention_heads, layers=tc.num_hidden_layers,
            mlp_ratio=tc.intermediate_size / tc.hidden_size),
        quick_gelu=vc.hidden_act == "quick_gelu",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--like", required=True, help="an hqflow-train fit --out directory")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--hard-negative", type=float, default=1.0)
    ap.add_argument("--text", default="txt")
    ap.add_argument("--quality", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--impl", choices=["transformers", "open_clip"], default="transformers")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)

    config = CLIPConfig.from_pretrained(a.like)
    if a.impl == "open_clip":
        model = open_clip_model(config).train()
    else:
        model = CLIPModel(config).train()
    dev = torch.device(a.device)
    model = model.to(dev)
    ctx = config.text_config.max_position_embeddings
    side = config.vision_config.image_size
    tok = Tokenizer.from_file(os.path.join(a.like, "tokenizer.json"))
    tok.enable_truncation(max_length=ctx)
    aug = transforms.Compose([
        transforms.RandomResizedCrop(side, scale=(0.9, 1.0), ratio=(0.75, 4 / 3)),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        progress = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def ids(texts):
        enc = [e.ids for e in tok.encode_batch(texts)]
        n = max(len(e) for e in enc)
        eos = config.text_config.eos_token_id
        x = torch.full((len(enc), n), eos, dtype=torch.long)
        for i, e in enumerate(enc):
            x[i, : len(e)] = torch.tensor(e)
        return x.to(dev)

    pool = ThreadPoolExecutor(a.workers) if a.workers > 0 else None
    # The batch ahead is assembled on its own thread (it waits on `pool`, so it cannot be one
    # of pool's threads).
    prefetch = ThreadPoolExecutor(1) if pool else None

    def decode(item):
        return aug(Image.open(io.BytesIO(item[0])).convert("RGB"))

    def make_batch(batch):
        images = list(pool.map(decode, batch)) if pool else [decode(x) for x in batch]
        return batch, torch.stack(images)

    data = rows(a.table, a.text, a.quality)
    order = list(range(len(data)))
    rng.shuffle(order)
    pos = 0

    def draw():
        nonlocal pos
        batch = []
        while len(batch) < a.batch:
            if pos == len(order):
                rng.shuffle(order)
                pos = 0
            batch.append(data[order[pos]])
            pos += 1
        return batch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    started = time.time()
    seen = 0
    ahead = prefetch.submit(make_batch, draw()) if pool else None
    for step in range(a.steps):
        if pool:
            batch, pixels = ahead.result()
            ahead = prefetch.submit(make_batch, draw())
        else:
            batch, pixels = make_batch(draw())
        pixels = pixels.to(dev, non_blocking=True)
        caps = [c for _, c, _ in batch]
        use_neg = a.hard_negative > 0 and all(n for _, _, n in batch)
        texts = caps + ([n for _, _, n in batch] if use_neg else [])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if a.impl == "open_clip":
            img = F.normalize(model.encode_image(pixels), dim=-1)
            txt_all = F.normalize(model.encode_text(ids(texts)), dim=-1)
        else:
            img = F.normalize(features(model.get_image_features(pixel_values=pixels)), dim=-1)
            txt_all = F.normalize(features(model.get_text_features(input_ids=ids(texts))), dim=-1)
        b = len(batch)
        txt = txt_all[:b]
        scale = model.logit_scale.exp()
        logits = scale * img @ txt.t()
        target = torch.arange(b, device=dev)
        t2i = F.cross_entropy(logits.t(), target)
        if use_neg:
            neg = txt_all[b:]
            neg_logit = scale * (img * neg).sum(-1, keepdim=True) + math.log(a.hard_negative)
            i2t = F.cross_entropy(torch.cat([logits, neg_logit], 1), target)
        else:
            i2t = F.cross_entropy(logits, target)
        loss = 0.5 * (i2t + t2i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        seen += b
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            sync()
            print(json.dumps({"step": step + 1, "loss": loss.item(), "lr": lr_at(step),
                              "scale": model.logit_scale.exp().item(),
                              "pairs_per_s": seen / (time.time() - started)}), flush=True)
    sync()
    print(json.dumps({"impl": a.impl, "device": a.device, "steps": a.steps, "samples": seen,
                      "seconds": time.time() - started,
                      "samples_per_s": seen / (time.time() - started)}), flush=True)


if __name__ == "__main__":
    main()
