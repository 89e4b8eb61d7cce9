"""What a CLIP's image embeddings know about world scenes: linear probes.

For single-object world images (`hqflow world eval`'s zero-shot set), fits a multinomial
logistic regression from the L2-normalized image embedding to each attribute of the object
(shape, color, size, position) on 75% of the images and reports its accuracy on the other
25%, next to chance (the most common class's share). An attribute the probe cannot read
is one the embedding does not carry in linear form: a filter built on that model cannot
see a caption get it wrong, whatever the text tower does.

    hqflow world eval --seed 5 --per-class 40 --retrieval 0 --compositional 0 \\
        --filtering 0 --out probe-set
    hqflow sql -q --no-cache -t z=probe-set/zeroshot -m m=MODEL_DIR \\
        "COPY (SELECT truth_scene, clip_embed(img, 'm') AS e FROM z) TO 'emb.parquet' STORED AS PARQUET"
    python3 examples/probe_world_embeddings.py emb.parquet      # needs numpy and pyarrow
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq

ATTRIBUTES = ["shape", "color", "size", "position"]


def probe(x, labels, seed=0, steps=3000, lr=2.0, l2=1e-4):
    """Held-out accuracy of a softmax regression from x to labels, and chance."""
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[: len(y) * 3 // 4], order[len(y) * 3 // 4 :]
    onehot = np.eye(len(classes))[y[train]]
    w = np.zeros((x.shape[1], len(classes)))
    b = np.zeros(len(classes))
    for _ in range(steps):
        z = x[train] @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = p - onehot
        w -= lr * (x[train].T @ g / len(train) + l2 * w)
        b -= lr * g.mean(axis=0)
    accuracy = float(((x[test] @ w + b).argmax(axis=1) == y[test]).mean())
    chance = float(np.bincount(y[test]).max() / len(test))
    return accuracy, chance, len(classes)


def main(path):
    table = pq.read_table(path).to_pydict()
    x = np.array(table["e"], dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    objects = [json.loads(s)["objects"] for s in table["truth_scene"]]
    if any(len(o) != 1 for o in objects):
        sys.exit(f"{path}: every image must show exactly one object (the zero-shot set)")
    report = {}
    for attribute in ATTRIBUTES:
        accuracy, chance, classes = probe(x, [o[0][attribute] for o in objects])
        report[attribute] = {"accuracy": round(accuracy, 3), "chance": round(chance, 3),
                             "classes": classes}
    print(json.dumps({"images": len(objects), "probes": report}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
