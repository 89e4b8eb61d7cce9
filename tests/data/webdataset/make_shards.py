#!/usr/bin/env python3
"""Writes webdataset tar shards with Python's own tarfile (stdlib only), for hqflow's ingest
tests: a shard written by another tool than hqflow must ingest with every caption intact.

Usage: make_shards.py OUT_DIR

Writes OUT_DIR/good-000.tar and good-001.tar (samples with tricky captions, some with a JSON
uid and url, in PAX format with a long member name), OUT_DIR/bad.tar (a sample without a
caption, a non-image, a caption without an image, a duplicate key), OUT_DIR/truncated.tar
(cut in the middle of a member) and OUT_DIR/expected.json: for each good sample its key,
caption, uid (when its JSON has one), url and image size.
"""

import io
import json
import os
import struct
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "..", "clip", "images")


def png(width, height, rgb):
    """A solid-color RGB PNG, encoded with zlib by hand (no imaging library)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def fixture(name):
    with open(os.path.join(IMAGES, name), "rb") as f:
        return f.read()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1700000000
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shard(path, members, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            add(tar, name, data)


CAPTIONS = [
    "a red circle on a white background",
    "Ünïcödé — 東京の夜景 🚀 \"quoted\", commas, and 'apostrophes'",
    "line one\nline two\n",
    "  leading and trailing spaces  ",
    "tab\tseparated\tand a backslash \\ and <b>html</b> &amp; entities",
    "",
    "x" * 5000,
]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    images = [
        (png(7, 5, (200, 10, 10)), "png", (7, 5)),
        (fixture("landscape.jpg"), "jpg", None),
        (fixture("lossless.webp"), "webp", None),
        (png(3, 9, (0, 0, 255)), "png", (3, 9)),
    ]
    expected = []
    shards = [[], []]
    long_dir = "a-directory-with-a-long-name/" * 4
    for i, caption in enumerate(CAPTIONS):
        img, ext, size = images[i % len(images)]
        key = f"{i:06d}" if i % 3 else f"{long_dir}{i:06d}"
        if i == 4:
            key = "dir.v1/000004"  # a dot in the directory is part of the key
        members = [(f"{key}.{ext}", img), (f"{key}.txt", caption.encode("utf-8"))]
        sample = {"key": key, "txt": caption, "size": size}
        if i % 2 == 0:
            meta = {"uid": f"{i:032x}", "url": f"https://example.com/{i}.{ext}", "caption": "ignored"}
            members.append((f"{key}.json", json.dumps(meta).encode()))
            sample["uid"] = meta["uid"]
            sample["url"] = meta["url"]
        shards[i % 2].extend(members)
        expected.append(sample)
    write_shard(os.path.join(out, "good-000.tar"), shards[0])
    write_shard(os.path.join(out, "good-001.tar"), shards[1], fmt=tarfile.GNU_FORMAT)

    red = png(4, 4, (255, 0, 0))
    write_shard(
        os.path.join(out, "bad.tar"),
        [
            ("ok1.png", red),
            ("ok1.txt", b"the first good sample"),
            ("nocaption.png", red),
            ("notimage.jpg", b"this is not a JPEG at all"),
            ("notimage.txt", b"a caption for text bytes"),
            ("onlytext.txt", b"a caption with no picture"),
            ("onlytext.pdf", b"%PDF-1.4"),
            ("dup.png", red),
            ("dup.txt", b"the first dup"),
            ("ok2.png", red),
            ("ok2.txt", b"the second good sample"),
            ("dup.png", red),
            ("dup.txt", b"the second dup"),
        ],
    )

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, "t1.png", red)
        add(tar, "t1.txt", b"kept: before the cut")
        add(tar, "t2.png", png(64, 64, (1, 2, 3)))
        add(tar, "t2.txt", b"lost: after the cut")
    data = buf.getvalue()
    # Headers are 512 bytes and data is padded to 512: t1.png, t1.txt take 4 blocks, t2.png's
    # header the fifth; cut 10 bytes into t2.png's data.
    with open(os.path.join(out, "truncated.tar"), "wb") as f:
        f.write(data[: 5 * 512 + 10])
    with open(os.path.join(out, "truncated-header.tar"), "wb") as f:
        f.write(data[: 4 * 512 + 100])

    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
