"""What Hugging Face transformers computes with a checkpoint hqflow-train wrote: the built-in
DFN (udfs/models/world-dfn), loaded with CLIPModel / AutoTokenizer / CLIPImageProcessorPil
`from_pretrained` (the Pillow processor, whose resize hqflow reproduces exactly; transformers
5's default processor resizes with torchvision, one 8-bit level away at places). tests/it/clip_conformance.rs compares hqflow's own functions with it, the
same way as the fixtures of make_clip_fixtures.py (whose images it reuses).

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers pillow safetensors
    /tmp/ref/bin/python tests/data/clip/make_trained_fixture.py

Writes tests/data/clip/world-dfn/{reference.json,pixel_values.safetensors}. reference.json
records the SHA-256 of the model's weights: retraining the built-in model needs this script
run again, and the test says so.
"""
import hashlib
import io
import json
import os

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers import AutoTokenizer, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "..", "udfs", "models", "world-dfn")
OUT = os.path.join(HERE, "world-dfn")

TEXTS = [
    "a photo of a cat",
    "",
    "a small red circle left of a large blue square on a gray background",
    "two green triangles",
    "A YELLOW STAR, above a purple hexagon!",
    "Über das Café: 東京 🙂",
    # longer than the 40-token context: truncated, the last token kept as end-of-text
    "a big orange circle and a tiny cyan square and a medium pink triangle and a dark star " * 3,
]


def features(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


def main():
    model = CLIPModel.from_pretrained(MODEL, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    processor = CLIPImageProcessorPil.from_pretrained(MODEL)
    enc = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        text = torch.nn.functional.normalize(features(model.get_text_features(**enc)), dim=-1)
    texts = []
    for i, t in enumerate(TEXTS):
        ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
        texts.append({"text": t, "input_ids": ids, "embedding": text[i].tolist()})

    image_dir = os.path.join(HERE, "images")
    images, pixels = [], {}
    for name in sorted(os.listdir(image_dir)):
        with open(os.path.join(image_dir, name), "rb") as f:
            im = Image.open(io.BytesIO(f.read()))
            im.seek(0)
            im = im.convert("RGB")
        pv = processor(images=[im], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            emb = features(model.get_image_features(pixel_values=pv))
        emb = torch.nn.functional.normalize(emb, dim=-1)[0]
        images.append({"file": name, "what": name, "embedding": emb.tolist()})
        pixels[name] = pv[0].numpy().astype(np.float32)

    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        weights = hashlib.sha256(f.read()).hexdigest()
    os.makedirs(OUT, exist_ok=True)
    save_file(pixels, os.path.join(OUT, "pixel_values.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"model_sha256": weights, "transformers": transformers.__version__,
                   "texts": texts, "images": images}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
