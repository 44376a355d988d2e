#!/usr/bin/env python3
"""Independent implementation of the abproxy assignment hash (PRODUCT.md), used to pin
the Rust one with golden vectors. Regenerate with:

    python3 tests/golden/make_assignment_vectors.py > tests/golden/assignment_vectors.json

It is the original demo's assign_group: SHA-256 of "device_id:experiment" as a big-endian
integer, mod the total weight, walking the variants sorted by name.
"""
import hashlib
import json
import random


def assign(device_id, experiment, weights):
    h = int.from_bytes(hashlib.sha256(f"{device_id}:{experiment}".encode()).digest(), "big")
    bucket = h % sum(weights.values())
    running = 0
    for name in sorted(weights, key=lambda n: n.encode()):
        running += weights[name]
        if running > bucket:
            return name


rng = random.Random(20261123)
experiments = [
    ("moon_mars", {"Moon": 50, "Mars": 50}),
    ("moon_mars", {"Moon": 25, "Mars": 75}),
    ("white_gold_btn", {"White": 1, "Gold": 2, "Blue": 3}),
    ("zero-weight", {"A": 0, "B": 7, "C": 0, "D": 3}),
    ("big", {"Control": 999_983, "Treatment": 1_000_000}),
]
device_ids = ["a", "Z", "device-1", "_", "-" * 64, "00000000-0000-4000-8000-000000000000"]
device_ids += [
    "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
            for _ in range(rng.randint(1, 64)))
    for _ in range(40)
]
vectors = [
    {"device_id": d, "experiment": key, "weights": weights, "variant": assign(d, key, weights)}
    for key, weights in experiments
    for d in device_ids
]
print(json.dumps(vectors, indent=1))
