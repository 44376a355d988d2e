#!/usr/bin/env python3
"""How long does abproxy take to start with a million events in its counts log?

Writes a data directory whose counts log holds N records of one event each (the worst
case: one event per flush), starts `abproxy serve` on it N times over, and prints the
time from spawn to its "listening" line, and what the proxy itself logged for reading
the log. Usage:

    cargo build --release
    python3 benches/count_log_startup.py [--records 1000000] [--rounds 5] [--bin target/release/abproxy]

Installs nothing; needs only Python 3.
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
import zlib


def record(kind_fields):
    body = " ".join(str(f) for f in kind_fields)
    return f"{body} {zlib.crc32(body.encode()):08x}\n"


def write_log(path, records):
    moon = mars = clicks = 0
    with open(path, "w") as f:
        for i in range(records):
            at = 1_790_000_000_000 + i
            if i % 3 == 0:
                moon += 1
                f.write(record(["v", at, "moon_mars", 1, "Moon", moon, moon]))
            elif i % 3 == 1:
                mars += 1
                f.write(record(["v", at, "moon_mars", 1, "Mars", mars, mars]))
            else:
                clicks += 1
                f.write(record(["g", at, "moon_mars", 1, "Mars", "click", clicks, "0e0", "0e0"]))


CONFIG = """listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
data_dir: {data}
upstreams:
  moon: http://127.0.0.1:9
  mars: http://127.0.0.1:9
experiments:
  moon_mars:
    state: active
    variants:
      Moon: {{ weight: 50, upstream: moon }}
      Mars: {{ weight: 50, upstream: mars }}
    fallback: Moon
    goals:
      click: {{ event: button_click }}
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bin", default="target/release/abproxy")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        config = os.path.join(tmp, "abproxy.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(data=data))
        times, logged = [], []
        for _ in range(args.rounds):
            # Each start compacts the log, so write it afresh every round.
            counts = os.path.join(data, "counts")
            os.makedirs(counts, exist_ok=True)
            for name in os.listdir(counts):
                os.remove(os.path.join(counts, name))
            write_log(os.path.join(counts, "counts-000001.log"), args.records)
            start = time.monotonic()
            proxy = subprocess.Popen(
                [args.bin, "serve", "--config", config],
                stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"},
            )
            for line in proxy.stderr:
                m = re.search(r"(\d+) records read from .* in (\d+) ms", line)
                if m:
                    logged.append(int(m.group(2)))
                if "proxy listening on" in line:
                    times.append(time.monotonic() - start)
                    break
            proxy.terminate()
            proxy.wait()
        size = os.path.getsize(os.path.join(data, "counts", sorted(os.listdir(os.path.join(data, "counts")))[-1]))
        print(f"{args.records} records, {args.rounds} rounds")
        print(f"  spawn to listening: median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})")
        print(f"  log read and compacted (as logged): median {statistics.median(logged)} ms")
        print(f"  compacted log afterwards: {size} bytes")


if __name__ == "__main__":
    main()
