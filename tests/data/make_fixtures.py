"""Writes the Parquet fixtures the tests read, with pyarrow, as other tools write pools.

Run once and commit the output (tests do not need Python):
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install pyarrow && /tmp/fx/bin/python tests/data/make_fixtures.py

- pyarrow_pool.parquet: a pool as pyarrow writes it: large_string / large_binary columns,
  small row groups (25 rows), an extra pass-through column, NULLs in txt and img.
- no_img.parquet: a pool without its `img` column (fails the pool contract).
- conflict/a.parquet, conflict/b.parquet: the same column `score` as int64 and as string.
- nested.parquet: list, struct and fixed-size-list columns for output formats.
- clip_pool.parquet: the CLIP conformance images (clip/images) with captions, plus bad rows:
  bytes that are not an image, a truncated JPEG, zero bytes, a PNG header claiming
  30000x30000 pixels, NULL image, NULL text, a 100k-character caption, a 16-bit PNG.
"""
import hashlib
import os
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))

ROWS = 100


def uid(i):
    return hashlib.md5(f"fixture/{i}".encode()).hexdigest()


def pool_table():
    # Fake image bytes: a PNG signature and the row number. Not decodable as an image on
    # purpose; these fixtures test the engine, not decoding.
    imgs = [None if i % 10 == 3 else b"\x89PNG\r\n\x1a\n" + i.to_bytes(4, "big") for i in range(ROWS)]
    txts = [None if i % 7 == 0 else ("" if i % 11 == 0 else f"a photo of item {i}") for i in range(ROWS)]
    return pa.table(
        {
            "uid": pa.array([uid(i) for i in range(ROWS)], pa.large_string()),
            "url": pa.array([f"https://example.org/{i}.png" for i in range(ROWS)], pa.large_string()),
            "txt": pa.array(txts, pa.large_string()),
            "img": pa.array(imgs, pa.large_binary()),
            "width": pa.array([64 + i % 3 for i in range(ROWS)], pa.int32()),
            "height": pa.array([48] * ROWS, pa.int64()),
            "aesthetic": pa.array([i / 100 for i in range(ROWS)], pa.float64()),
        }
    )


def png_bomb_header():
    """A well-formed PNG whose header claims 30000x30000 RGB pixels, with one tiny IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def png_16bit(width=12, height=8):
    """A valid 16-bit-per-channel RGB PNG (a gradient), which Pillow reads as RGB after
    dropping the low bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    raw = b"".join(
        b"\x00" + b"".join(struct.pack(">HHH", x * 5000, y * 8000, (x + y) * 2500) for x in range(width))
        for y in range(height)
    )
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def clip_pool():
    image_dir = os.path.join(HERE, "clip", "images")
    names = sorted(os.listdir(image_dir))
    rows = []
    for i, name in enumerate(names):
        with open(os.path.join(image_dir, name), "rb") as f:
            rows.append((f"good-{i}", f"a picture stored as {name}", f.read(), "good"))
    with open(os.path.join(image_dir, "landscape.jpg"), "rb") as f:
        jpeg = f.read()
    rows += [
        ("bad-text-bytes", "not an image", b"hello, I am not an image", "not an image"),
        ("bad-truncated", "truncated jpeg", jpeg[: len(jpeg) // 3], "corrupt image"),
        ("bad-empty", "zero bytes", b"", "empty image bytes"),
        ("bad-bomb", "decompression bomb", png_bomb_header(), "image too large"),
        ("null-img", "no image at all", None, "null"),
        ("null-txt", None, jpeg, "null"),
        ("long-txt", "word " * 20000, jpeg, "good"),
        ("good-16bit", "a 16-bit png", png_16bit(), "good"),
    ]
    table = pa.table(
        {
            "uid": pa.array([r[0] for r in rows], pa.string()),
            "txt": pa.array([r[1] for r in rows], pa.string()),
            "img": pa.array([r[2] for r in rows], pa.binary()),
            "expect": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, os.path.join(HERE, "clip_pool.parquet"))


def main():
    clip_pool()
    pq.write_table(pool_table(), os.path.join(HERE, "pyarrow_pool.parquet"), row_group_size=25)
    pq.write_table(pool_table().drop(["img"]).slice(0, 10), os.path.join(HERE, "no_img.parquet"))
    os.makedirs(os.path.join(HERE, "conflict"), exist_ok=True)
    pq.write_table(pa.table({"uid": ["a"], "score": pa.array([1], pa.int64())}), os.path.join(HERE, "conflict", "a.parquet"))
    pq.write_table(pa.table({"uid": ["b"], "score": pa.array(["high"], pa.string())}), os.path.join(HERE, "conflict", "b.parquet"))
    nested = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "tags": pa.array([["red", "circle"], [], None], pa.list_(pa.string())),
            "scene": pa.array(
                [{"shape": "circle", "size": 2}, {"shape": None, "size": 1}, None],
                pa.struct([("shape", pa.string()), ("size", pa.int32())]),
            ),
            "emb": pa.array([[0.5, -0.5], [1.0, 0.0], None], pa.list_(pa.float32(), 2)),
            "img": pa.array([b"\x00\xff", None, b""], pa.binary()),
        }
    )
    pq.write_table(nested, os.path.join(HERE, "nested.parquet"))


if __name__ == "__main__":
    main()
