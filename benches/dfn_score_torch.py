"""The reference side of the dfn_score benchmark: what a user does today with PyTorch
transformers and PIL on the same checkpoint and table. Reads the Parquet pool, decodes and
preprocesses with CLIPImageProcessorPil, tokenizes with the checkpoint's tokenizer, runs
CLIPModel in batches, and prints one JSON line: rows, seconds, pairs/s and the score sum.

    python benches/dfn_score_torch.py DATA_DIR --threads N [--batch 64]
"""
import argparse
import io
import json
import time

import pyarrow.parquet as pq
import torch
from PIL import Image
from transformers import CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    start = time.perf_counter()
    ckpt = f"{a.data}/clip-b32"
    model = CLIPModel.from_pretrained(ckpt, dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(ckpt)
    proc = CLIPImageProcessorPil.from_pretrained(ckpt)
    table = pq.read_table(f"{a.data}/pool.parquet", columns=["img", "txt"])
    imgs, txts = table.column("img").to_pylist(), table.column("txt").to_pylist()
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(imgs), a.batch):
            ims = [Image.open(io.BytesIO(b)).convert("RGB") for b in imgs[i : i + a.batch]]
            px = proc(images=ims, return_tensors="pt")["pixel_values"]
            enc = tok(txts[i : i + a.batch], padding=True, truncation=True, max_length=77, return_tensors="pt")
            ie = model.get_image_features(pixel_values=px)
            te = model.get_text_features(**enc)
            ie = getattr(ie, "pooler_output", ie)
            te = getattr(te, "pooler_output", te)
            s = (torch.nn.functional.normalize(ie, dim=-1) * torch.nn.functional.normalize(te, dim=-1)).sum(-1)
            total += float(s.sum())
            n += len(ims)
    secs = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "rows": n, "seconds": secs, "pairs_per_s": n / secs, "score_sum": total}))


if __name__ == "__main__":
    main()
