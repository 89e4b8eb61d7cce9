"""Writes the fuzz seed corpora: fuzz/seeds/image_header/ (encoded images) and
fuzz/seeds/image_preprocess/ (the same images behind the configuration byte that target
reads first). Run from the repository root, once, and commit the output (about 100 KB):

    python3 fuzz/seeds/make_seeds.py

Sources: the images in tests/data/clip_pool.parquet (needs pyarrow; skipped without it),
tests/data/clip/images/, and small images of every format written here with the standard
library: PNG of each color type and depth (interlaced too), an animated GIF, BMP of several
depths. Pillow, if importable, adds lossy and animated WebP and progressive, grayscale and
restart-marker JPEG. Seeds over 16 KB and duplicates are left out.
"""
import hashlib
import io
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "seeds")
MAX_SEED = 16 * 1024


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, color, depth, interlace=0, palette=None, trns=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    bits = channels * depth
    row_bytes = (width * bits + 7) // 8

    def rows(w, h, salt):
        return b"".join(
            b"\x00" + bytes((x * 37 + y * 11 + salt) % 256 for x in range(((w * bits + 7) // 8)))
            for y in range(h)
        )

    if interlace:
        # Adam7: each pass's sub-image, filtered rows.
        raw = b""
        for i, (x0, y0, dx, dy) in enumerate(
            [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        ):
            w = max(0, (width - x0 + dx - 1) // dx)
            h = max(0, (height - y0 + dy - 1) // dy)
            if w and h:
                raw += rows(w, h, i)
    else:
        raw = rows(width, height, 0)
    assert row_bytes > 0
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    return out + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def gif(width, height):
    """A two-frame GIF with a 4-color global palette; LZW with 8-bit clear/end codes."""
    def lzw(indices):
        # Minimum code size 2: clear=4, end=5, codes 3 bits wide; clear every 2 codes so the
        # code width never grows.
        codes, bits, n = [], 0, 0
        for i in indices:
            codes.append(4)
            codes.append(i)
        codes.append(5)
        for c in codes:
            bits |= c << n
            n += 3
        data = bits.to_bytes((n + 7) // 8, "little")
        return b"\x02" + b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255)) + b"\x00"

    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x81, 0, 0)
    head += bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    frames = b""
    for f in range(2):
        frames += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"  # graphic control: delay 10
        frames += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        frames += lzw([(x + y + f) % 4 for y in range(height) for x in range(width)])
    return head + frames + b"\x3b"


def bmp(width, height, bpp, top_down=False):
    row = ((width * bpp + 31) // 32) * 4
    palette = b""
    if bpp <= 8:
        palette = b"".join(bytes([i * 7 % 256, i * 13 % 256, i * 29 % 256, 0]) for i in range(1 << bpp))
    pixels = b"".join(bytes((x * 17 + y * 5) % 256 for x in range(row)) for y in range(height))
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bpp, 0, len(pixels), 2835, 2835, 0, 0
    )
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def generated():
    gray_palette = bytes(v for i in range(16) for v in (i * 16, 255 - i * 16, i * 8))
    yield "png_gray1", png(13, 7, 0, 1)
    yield "png_gray4", png(9, 5, 0, 4)
    yield "png_gray16", png(6, 4, 0, 16)
    yield "png_rgb8_interlaced", png(11, 9, 2, 8, interlace=1)
    yield "png_rgb16", png(5, 3, 2, 16)
    yield "png_palette4_trns", png(10, 6, 3, 4, palette=gray_palette, trns=b"\x00\x80")
    yield "png_gray_alpha8", png(7, 7, 4, 8)
    yield "png_rgba16_interlaced", png(9, 9, 6, 16, interlace=1)
    yield "png_tall", png(1, 300, 0, 8)
    yield "png_wide", png(300, 1, 0, 8)
    yield "gif_two_frames", gif(8, 6)
    yield "bmp_24", bmp(7, 5, 24)
    yield "bmp_32_top_down", bmp(5, 4, 32, top_down=True)
    yield "bmp_8", bmp(6, 3, 8)
    yield "bmp_4", bmp(9, 4, 4)
    yield "bmp_1", bmp(17, 3, 1)
    try:
        from PIL import Image
    except ImportError:
        return
    img = Image.new("RGB", (19, 11))
    img.putdata([((x * 13) % 256, (y * 23) % 256, (x * y) % 256) for y in range(11) for x in range(19)])

    def save(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    yield "webp_lossy", save(img, "WEBP", quality=50)
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(img.size))
    yield "webp_lossy_alpha", save(rgba, "WEBP", quality=50)
    yield "webp_animated", save(img, "WEBP", save_all=True, append_images=[img.rotate(90)], lossless=True)
    yield "jpeg_progressive", save(img, "JPEG", progressive=True, quality=60)
    yield "jpeg_gray", save(img.convert("L"), "JPEG", quality=60)
    yield "jpeg_420_restart", save(img, "JPEG", quality=60, subsampling=2, restart_marker_blocks=1)


def fixtures():
    images = os.path.join(ROOT, "tests", "data", "clip", "images")
    for name in sorted(os.listdir(images)):
        with open(os.path.join(images, name), "rb") as f:
            yield "fixture_" + name.replace(".", "_"), f.read()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return
    column = pq.read_table(os.path.join(ROOT, "tests", "data", "clip_pool.parquet"), columns=["img"])
    for i, b in enumerate(column.column("img").to_pylist()):
        if b:
            yield f"clip_pool_{i}", b


def main():
    seen = set()
    seeds = []
    for name, data in list(generated()) + list(fixtures()):
        digest = hashlib.sha1(data).hexdigest()
        if not data or len(data) > MAX_SEED or digest in seen:
            continue
        seen.add(digest)
        seeds.append((name, data))
    for target in ("image_header", "image_preprocess"):
        os.makedirs(os.path.join(OUT, target), exist_ok=True)
    for i, (name, data) in enumerate(seeds):
        with open(os.path.join(OUT, "image_header", name), "wb") as f:
            f.write(data)
        # The preprocess target's first byte picks the configuration: cycle through all 32.
        with open(os.path.join(OUT, "image_preprocess", name), "wb") as f:
            f.write(bytes([i * 7 % 32]) + data)
    print(f"{len(seeds)} seeds, {sum(len(d) for _, d in seeds)} bytes each target")


if __name__ == "__main__":
    main()
