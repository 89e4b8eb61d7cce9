"""Benchmark inputs for dfn_score end to end: a ViT-B/32-shaped CLIP checkpoint in Hugging Face
format (random weights: speed does not depend on them) with the real CLIP tokenizer, and a
Parquet pool of JPEG images with captions.

    python benches/make_bench_data.py OUT_DIR [--rows 2000] [--tokenizer-from DIR]

Needs torch, transformers, pillow, pyarrow, and open_clip_torch (for the BPE vocabulary)
unless --tokenizer-from names a checkpoint directory whose tokenizer files are copied.
"""
import argparse
import gzip
import io
import json
import os
import shutil
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageDraw
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def checkpoint(out, tokenizer_from=None):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    # openai/clip-vit-base-patch32's shapes.
    config = CLIPConfig(
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=32),
        projection_dim=512,
    )
    CLIPModel(config).eval().save_pretrained(out, safe_serialization=True)
    if tokenizer_from:
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(tokenizer_from, name), out)
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "clip"))
        from make_clip_fixtures import tokenizer_sources  # needs open_clip_torch

        vocab, merges = tokenizer_sources()
        tok = CLIPTokenizer(vocab=dict(vocab), merges=list(merges))
        tok.model_max_length = 77
        tok.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(out)


def pool(out, rows):
    rng = np.random.default_rng(0)
    words = "red green blue yellow circle square star dog cat car tree house on a the with near small large photo of".split()
    uids, txts, imgs = [], [], []
    for i in range(rows):
        w, h = int(rng.integers(240, 480)), int(rng.integers(200, 400))
        base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        d = ImageDraw.Draw(im)
        d.ellipse([w * 0.2, h * 0.2, w * 0.7, h * 0.8], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        uids.append(f"{i:032x}")
        txts.append(" ".join(rng.choice(words, int(rng.integers(3, 15)))))
        imgs.append(buf.getvalue())
    table = pa.table({"uid": uids, "txt": txts, "img": pa.array(imgs, pa.binary())})
    pq.write_table(table, os.path.join(out, "pool.parquet"), row_group_size=256)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--tokenizer-from", help="copy tokenizer files from this checkpoint directory")
    a = ap.parse_args()
    checkpoint(os.path.join(a.out, "clip-b32"), a.tokenizer_from)
    pool(a.out, a.rows)
    json.dump({"rows": a.rows}, open(os.path.join(a.out, "meta.json"), "w"))


if __name__ == "__main__":
    main()
