"""The reference side of the dfn_score benchmark: what a user does today with PyTorch
transformers and PIL on the same checkpoint and table. Reads the Parquet pool, decodes and
preprocesses with CLIPImageProcessorPil (on the main thread, or in DataLoader worker
processes with --workers), tokenizes with the checkpoint's tokenizer, runs CLIPModel in
batches on --device, and prints one JSON line: rows, seconds, pairs/s and the score sum.
--precision bf16 runs the model under torch.autocast with bfloat16, as a PyTorch user asks
for bfloat16 (oneDNN's AVX512-BF16 kernels on CPUs that have them).

    python benches/dfn_score_torch.py DATA_DIR --threads N [--batch 64] [--device cpu|cuda] [--workers 0]
        [--precision f32|bf16]
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


class Pairs(torch.utils.data.Dataset):
    """Rows of the pool as (pixels, caption); decoding happens where the loader runs it."""

    def __init__(self, imgs, txts, proc):
        self.imgs, self.txts, self.proc = imgs, txts, proc

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        im = Image.open(io.BytesIO(self.imgs[i])).convert("RGB")
        return self.proc(images=[im], return_tensors="pt")["pixel_values"][0], self.txts[i]


def collate(items):
    return torch.stack([p for p, _ in items]), [t for _, t in items]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for decoding")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    start = time.perf_counter()
    ckpt = f"{a.data}/clip-b32"
    model = CLIPModel.from_pretrained(ckpt, dtype=torch.float32).eval().to(a.device)
    tok = CLIPTokenizer.from_pretrained(ckpt)
    proc = CLIPImageProcessorPil.from_pretrained(ckpt)
    table = pq.read_table(f"{a.data}/pool.parquet", columns=["img", "txt"])
    data = Pairs(table.column("img").to_pylist(), table.column("txt").to_pylist(), proc)
    loader = torch.utils.data.DataLoader(data, batch_size=a.batch, num_workers=a.workers, collate_fn=collate)
    total, n = 0.0, 0
    autocast = torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.precision == "bf16")
    with torch.inference_mode(), autocast:
        for px, txts in loader:
            enc = tok(txts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(a.device)
            ie = model.get_image_features(pixel_values=px.to(a.device))
            te = model.get_text_features(**enc)
            ie = getattr(ie, "pooler_output", ie)
            te = getattr(te, "pooler_output", te)
            ie, te = ie.float(), te.float()
            s = (torch.nn.functional.normalize(ie, dim=-1) * torch.nn.functional.normalize(te, dim=-1)).sum(-1)
            total += float(s.sum())
            n += len(txts)
    secs = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "device": a.device, "precision": a.precision, "workers": a.workers,
                      "rows": n, "seconds": secs,
                      "pairs_per_s": n / secs, "score_sum": total}))


if __name__ == "__main__":
    main()
