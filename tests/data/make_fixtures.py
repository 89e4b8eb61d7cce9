"""Writes the Parquet fixtures the tests read, with pyarrow, as other tools write pools.

Run once and commit the output (tests do not need Python):
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install pyarrow && /tmp/fx/bin/python tests/data/make_fixtures.py

- pyarrow_pool.parquet: a pool as pyarrow writes it: large_string / large_binary columns,
  small row groups (25 rows), an extra pass-through column, NULLs in txt and img.
- no_img.parquet: a pool without its `img` column (fails the pool contract).
- conflict/a.parquet, conflict/b.parquet: the same column `score` as int64 and as string.
- nested.parquet: list, struct and fixed-size-list columns for output formats.
"""
import hashlib
import os

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


def main():
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
