"""Conformance fixtures for hqflow's CLIP: tiny random checkpoints in Hugging Face format,
awkward images and texts, and what HF transformers computes for them.

hqflow's tests compare against these files without Python. To regenerate (downloads torch,
a few GB, once):

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers open_clip_torch pillow
    /tmp/ref/bin/python tests/data/clip/make_clip_fixtures.py

Checkpoints (both with the real CLIP BPE vocabulary from open_clip's bpe_simple_vocab_16e6):
- tiny-quickgelu: quick_gelu, legacy eos_token_id=2 (pooling at argmax of ids), float32
  weights, CLIP preprocessing (shortest edge 32, center crop 32).
- tiny-gelu: exact gelu, eos_token_id=49407, float16 weights (loaded as float32), 40 px
  "squash" preprocessing (resize to 40x40, no crop), different widths and depth.

Reference outputs (reference.json per checkpoint): token ids from the checkpoint's fast
tokenizer (truncation to 77), L2-normalized text and image embeddings from CLIPModel in
float32, and the preprocessed pixel values of each image from CLIPImageProcessorPil
(pixel_values.safetensors).
"""
import gzip
import io
import json
import os
import shutil

import numpy as np
import open_clip
import torch
from PIL import Image, ImageDraw
from safetensors.numpy import save_file
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))

TEXTS = [
    "a photo of a cat",
    "",
    "A RED circle on a blue background, next to a small green star.",
    "naïve café — 東京 🌸 emoji",
    "   whitespace\tand\nnewlines  ",
    "don't stop-believing!!! 123,456 #hashtag @user http://example.com/x.jpg",
    " ".join(f"word{i} and another piece of text" for i in range(30)),  # far beyond 77 tokens
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tokenizer_sources():
    """The vocabulary and merges exactly as OpenAI's CLIP tokenizer builds them."""
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")
    merges = merges[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    assert len(vocab) == 49408
    return {t: i for i, t in enumerate(vocab)}, merges


def make_images(out_dir):
    """Awkward inputs: formats, color types, shapes and sizes web pools contain."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)

    def scene(w, h):
        x = np.linspace(0, 255, w)[None, :, None]
        y = np.linspace(0, 255, h)[:, None, None]
        base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
        noise = rng.integers(0, 40, size=(h, w, 3))
        im = Image.fromarray(np.clip(base * 0.8 + noise, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(im)
        d.ellipse([w * 0.2, h * 0.2, w * 0.6, h * 0.7], fill=(220, 30, 30))
        d.rectangle([w * 0.55, h * 0.4, w * 0.9, h * 0.9], fill=(30, 30, 200))
        return im

    files = {}
    scene(200, 90).save(os.path.join(out_dir, "landscape.jpg"), quality=92)
    files["landscape.jpg"] = "JPEG 200x90"
    scene(60, 130).save(os.path.join(out_dir, "portrait.png"))
    files["portrait.png"] = "PNG RGB 60x130"
    rgba = scene(64, 64).convert("RGBA")
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1)), "L")
    rgba.putalpha(alpha)
    rgba.save(os.path.join(out_dir, "rgba.png"))
    files["rgba.png"] = "PNG RGBA, alpha dropped as convert('RGB') does"
    scene(50, 50).convert("L").save(os.path.join(out_dir, "gray.png"))
    files["gray.png"] = "PNG grayscale"
    frames = [scene(40, 30).convert("P", palette=Image.ADAPTIVE), scene(40, 30).rotate(90).convert("P", palette=Image.ADAPTIVE)]
    frames[0].save(os.path.join(out_dir, "animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["animated.gif"] = "GIF, two frames, first frame used"
    scene(3, 5).save(os.path.join(out_dir, "tiny.png"))
    files["tiny.png"] = "PNG 3x5, upscaled"
    scene(70, 70).save(os.path.join(out_dir, "lossless.webp"), lossless=True)
    files["lossless.webp"] = "WebP lossless"
    scene(33, 21).save(os.path.join(out_dir, "small.bmp"))
    files["small.bmp"] = "BMP 33x21"
    scene(48, 48).convert("CMYK").save(os.path.join(out_dir, "cmyk.jpg"), quality=95)
    files["cmyk.jpg"] = "JPEG CMYK"
    return files


def make_checkpoint(name, tok, text, vision, projection_dim, preprocessor, dtype, seed):
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    model = CLIPModel(config).eval()
    # Random init at transformers' default scale gives near-identical embeddings for all
    # inputs; a wider spread makes the comparison discriminating.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.08)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    tokenizer = CLIPTokenizer(vocab=dict(tok[0]), merges=list(tok[1]))
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(out)
    for extra in ["vocab.json", "merges.txt"]:
        p = os.path.join(out, extra)
        if os.path.exists(p):
            os.remove(p)  # tokenizer.json carries both; keep the fixture small
    processor = CLIPImageProcessorPil(**preprocessor)
    processor.save_pretrained(out)

    model = CLIPModel.from_pretrained(out, dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(out)
    processor = CLIPImageProcessorPil.from_pretrained(out)
    return out, model, tokenizer, processor


def features(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


def reference(out, model, tokenizer, processor, image_dir, image_files):
    enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        text = features(model.get_text_features(**enc))
    text = torch.nn.functional.normalize(text, dim=-1)
    texts = []
    for i, t in enumerate(TEXTS):
        ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
        texts.append({"text": t, "input_ids": ids, "embedding": text[i].tolist()})

    images, pixels = [], {}
    for name in sorted(image_files):
        with open(os.path.join(image_dir, name), "rb") as f:
            im = Image.open(io.BytesIO(f.read()))
            im.seek(0)
            im = im.convert("RGB")
        pv = processor(images=[im], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            emb = features(model.get_image_features(pixel_values=pv))
        emb = torch.nn.functional.normalize(emb, dim=-1)[0]
        images.append({"file": name, "what": image_files[name], "embedding": emb.tolist()})
        pixels[name] = pv[0].numpy().astype(np.float32)
    save_file(pixels, os.path.join(out, "pixel_values.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"texts": texts, "images": images}, f, indent=1, ensure_ascii=False)


def resize_cases():
    """Pillow's bicubic and bilinear resize on random sizes, up and down, both pass orders."""
    rng = np.random.default_rng(11)
    cases = {}
    for i in range(40):
        w, h = (int(v) for v in rng.integers(1, 64, 2))
        ow, oh = (int(v) for v in rng.integers(1, 80, 2))
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        resample = Image.BICUBIC if i % 4 else Image.BILINEAR
        out = np.asarray(Image.fromarray(src).resize((ow, oh), resample))
        cases[f"case{i:02d}_src"] = src
        cases[f"case{i:02d}_{'bicubic' if i % 4 else 'bilinear'}"] = np.ascontiguousarray(out)
    save_file(cases, os.path.join(HERE, "resize_cases.safetensors"))


def main():
    resize_cases()
    image_dir = os.path.join(HERE, "images")
    image_files = make_images(image_dir)
    tok = tokenizer_sources()
    if True:
        common_text = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, pad_token_id=1)
        a = make_checkpoint(
            "tiny-quickgelu",
            tok,
            text=dict(common_text, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu", eos_token_id=2),
            vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, hidden_act="quick_gelu"),
            projection_dim=16,
            preprocessor=dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
            dtype=torch.float32,
            seed=1,
        )
        b = make_checkpoint(
            "tiny-gelu",
            tok,
            text=dict(common_text, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6, hidden_act="gelu", eos_token_id=49407),
            vision=dict(hidden_size=40, intermediate_size=80, num_hidden_layers=3, num_attention_heads=5, image_size=40, patch_size=10, hidden_act="gelu"),
            projection_dim=24,
            preprocessor=dict(size={"height": 40, "width": 40}, do_center_crop=False),
            dtype=torch.float16,
            seed=2,
        )
    for ckpt in (a, b):
        reference(*ckpt, image_dir, image_files)


if __name__ == "__main__":
    main()
