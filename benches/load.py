#!/usr/bin/env python3
"""Is abproxy cheaper on the request path than nginx `split_clients`? Measured here, now.

One run starts two upstreams (`abproxy backend`, or with --upstreams nginx one nginx worker
answering `return 200` on both, so the proxies are the only variable), abproxy with a Moon/Mars experiment,
nginx configured the equivalent way (a `device_id` cookie, minted when missing;
`split_clients` on "${device_id}:moon_mars"; keep-alive to the upstreams; as many worker
processes as abproxy has threads), and measures, interleaved (direct, nginx, abproxy,
direct, nginx, abproxy, ...) for --rounds rounds with `oha`:

  - throughput for new visitors (no cookie) and returning visitors (their cookies), with
    `wrk` when installed (it leaves more of the shared CPU to the servers), else `oha`,
  - latency percentiles at a fixed rate (--rate) with `oha --latency-correction`
    (coordinated omission corrected),

then memory (RSS idle, and with 1 000 open keep-alive connections) and failed requests
while the config is rewritten under load. It prints medians and the ratios
abproxy/nginx and abproxy/direct, and writes everything as JSON (--out).

--soak MINUTES instead runs mixed load for that long, rewriting the config every 10 s,
and reports failed requests, RSS and open file descriptors over time.

Installs nothing: it says what is missing and how to get it.

    cargo build --release
    python3 benches/load.py [--rounds 3] [--duration 8] [--workers 1] [--out load.json]
    python3 benches/load.py --soak 10
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CONNECTIONS = 64
KEEPALIVE_CONNECTIONS = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on 127.0.0.1:{port}")


def rss_kib(pids):
    """abproxy (one process): its resident set size. nginx (a master and workers): the
    sum of their proportional set sizes, so pages they share are not counted twice."""
    field = "Rss:" if len(pids) == 1 else "Pss:"
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field):
                    total += int(line.split()[1])
    return total


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        found = [int(p) for p in f.read().split()]
    if not found:
        raise SystemExit(f"nginx ({pid}) has no worker processes")
    return found


class Setup:
    """The processes under test, in a temporary directory."""

    def __init__(self, args, tmp):
        self.args, self.tmp, self.procs = args, tmp, []
        self.moon_port, self.mars_port = free_port(), free_port()
        self.proxy_port, self.admin_port, self.nginx_port = free_port(), free_port(), free_port()

    def start(self):
        args, tmp = self.args, self.tmp
        if args.upstreams == "nginx":
            # One nginx worker answering `return 200` on both ports: the cheapest upstream
            # there is, so the proxies are the only variable.
            prefix = os.path.join(tmp, "upstreams")
            os.makedirs(prefix)
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self.upstreams_config(prefix))
            upstreams = self.spawn([args.nginx, "-c", conf, "-p", prefix])
            for name, port in (("Moon", self.moon_port), ("Mars", self.mars_port)):
                wait_listening(port, f"upstream {name} (nginx return 200)", upstreams)
        else:
            for name, port in (("Moon", self.moon_port), ("Mars", self.mars_port)):
                backend = self.spawn([args.bin, "backend", "--name", name, "--listen",
                                      f"127.0.0.1:{port}", "--threads", "1"])
                wait_listening(port, f"backend {name}", backend)
        self.config = os.path.join(tmp, "abproxy.yaml")
        self.write_config(50, 50)
        self.abproxy = self.spawn([args.bin, "serve", "--config", self.config,
                                   "--threads", str(args.workers)])
        wait_listening(self.proxy_port, "abproxy", self.abproxy)
        if args.soak is None:
            nginx_conf = os.path.join(tmp, "nginx.conf")
            with open(nginx_conf, "w") as f:
                f.write(self.nginx_config())
            self.nginx = self.spawn([args.nginx, "-c", nginx_conf, "-p", tmp])
            try:
                wait_listening(self.nginx_port, "nginx", self.nginx)
            except SystemExit:
                with open(os.path.join(tmp, "nginx-error.log")) as f:
                    print(f.read(), file=sys.stderr)
                raise

    def spawn(self, cmd):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "RUST_LOG": "warn"})
        self.procs.append(proc)
        return proc

    def write_config(self, moon, mars):
        text = f"""listen: 127.0.0.1:{self.proxy_port}
admin:
  listen: 127.0.0.1:{self.admin_port}
data_dir: {os.path.join(self.tmp, "data")}
upstreams:
  moon: http://127.0.0.1:{self.moon_port}
  mars: http://127.0.0.1:{self.mars_port}
experiments:
  moon_mars:
    state: active
    variants:
      Moon: {{ weight: {moon}, upstream: moon }}
      Mars: {{ weight: {mars}, upstream: mars }}
    fallback: Moon
"""
        tmp_path = self.config + ".tmp"
        with open(tmp_path, "w") as f:
            f.write(text)
        os.replace(tmp_path, self.config)

    def upstreams_config(self, prefix):
        servers = "".join(
            f"""  server {{
    listen 127.0.0.1:{port};
    location / {{ add_header X-Backend {name}; return 200 "{name}\\n"; }}
  }}
"""
            for name, port in (("Moon", self.moon_port), ("Mars", self.mars_port)))
        return f"""worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
{servers}}}
"""

    def nginx_config(self):
        t = self.tmp
        return f"""worker_processes {self.args.workers};
worker_rlimit_nofile 16384;
daemon off;
pid {t}/nginx.pid;
error_log {t}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  # Like abproxy, never close a busy keep-alive connection after N requests.
  keepalive_requests 1000000;
  client_body_temp_path {t}/nginx-body;
  proxy_temp_path {t}/nginx-proxy;
  fastcgi_temp_path {t}/nginx-fastcgi;
  uwsgi_temp_path {t}/nginx-uwsgi;
  scgi_temp_path {t}/nginx-scgi;
  upstream moon {{ server 127.0.0.1:{self.moon_port}; keepalive 256; keepalive_requests 1000000; }}
  upstream mars {{ server 127.0.0.1:{self.mars_port}; keepalive 256; keepalive_requests 1000000; }}
  # A visitor without the cookie gets a new id (like abproxy's), set in the response.
  map $cookie_device_id $device_id {{ "" $request_id; default $cookie_device_id; }}
  map $cookie_device_id $new_device_cookie {{
    "" "device_id=$request_id; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax";
    default "";
  }}
  split_clients "${{device_id}}:moon_mars" $variant {{ 50% moon; * mars; }}
  server {{
    listen 127.0.0.1:{self.nginx_port};
    location / {{
      proxy_pass http://$variant;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Device-Id $device_id;
      proxy_set_header X-AB-Assignments "moon_mars=$variant";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      add_header Set-Cookie $new_device_cookie;
    }}
  }}
}}
"""

    def nginx_pids(self):
        return [self.nginx.pid] + children(self.nginx.pid)

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def returning_cookies(url):
    """The cookies a first visit gets (abproxy: id and signed assignment; nginx: id)."""
    with urllib.request.urlopen(url) as response:
        cookies = [v.split(";", 1)[0] for k, v in response.headers.items() if k.lower() == "set-cookie"]
    return "; ".join(cookies) or "device_id=returning-visitor-1"


def throughput(args, url, seconds, cookie=None):
    """Closed-loop throughput: wrk when installed (it needs less CPU than oha, and the
    load generator shares the machine), else oha."""
    if not args.wrk:
        return oha(args, url, seconds, cookie=cookie)
    cmd = [args.wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps, total, non2xx, socket_errors = 0.0, 0, 0, 0
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif "requests in" in line:
            total = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            non2xx = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            # connect N, read N, write N, timeout N (not among the "requests in")
            socket_errors = sum(int(w.strip(",")) for w in words[3::2])
    return {"requests_per_second": rps, "ok": total - non2xx, "failed": non2xx + socket_errors,
            "p50_ms": None, "p99_ms": None}


def oha(args, url, seconds, rate=None, cookie=None):
    cmd = [args.oha, "-z", f"{seconds}s", "-c", str(CONNECTIONS), "--no-tui", "--output-format", "json"]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    summary = result["summary"]
    codes = result.get("statusCodeDistribution", {})
    # Requests cut off when the duration ends are not failures of the server.
    errors = sum(n for e, n in result.get("errorDistribution", {}).items()
                 if e != "aborted due to deadline")
    ok = sum(n for code, n in codes.items() if code.startswith("2"))
    failed = sum(n for code, n in codes.items() if not code.startswith("2")) + errors
    percentiles = result.get("latencyPercentiles", {})
    if percentiles.get("p50") is None:
        raise SystemExit(f"oha got no successful response from {url}: {result}")
    return {
        "requests_per_second": summary["requestsPerSec"],
        "ok": ok,
        "failed": failed,
        "p50_ms": 1000 * percentiles["p50"],
        "p99_ms": 1000 * percentiles["p99"],
    }


def hold_connections(port, n):
    """Open `n` keep-alive connections, each having made one request; return them."""
    held = []
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    def receive(s):
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"port {port} closed connection {len(held) + 1} of {n}")
        return chunk

    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += receive(s)
        head, _, body = data.partition(b"\r\n\r\n")
        lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")]
        if not lengths:
            raise SystemExit(f"port {port} answered without Content-Length: {head!r}")
        while len(body) < lengths[0]:
            body += receive(s)
        held.append(s)
    return held


def reloads_applied(setup):
    """abproxy's own count of successful reloads, from its metrics."""
    url = f"http://127.0.0.1:{setup.admin_port}/metrics"
    with urllib.request.urlopen(url) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('abproxy_config_reloads_total{result="success"}'):
                return int(float(line.split()[-1]))
    return 0


def measure(args, setup):
    targets = {
        "direct": f"http://127.0.0.1:{setup.moon_port}/",
        "nginx": f"http://127.0.0.1:{setup.nginx_port}/",
        "abproxy": f"http://127.0.0.1:{setup.proxy_port}/",
    }
    cookies = {name: returning_cookies(url) for name, url in targets.items()}
    idle_rss = {"abproxy": rss_kib([setup.abproxy.pid]), "nginx": rss_kib(setup.nginx_pids())}
    runs = {t: {"new": [], "returning": [], "latency": []} for t in targets}
    for round_number in range(1, args.rounds + 1):
        for kind in ("new", "returning", "latency"):
            for target, url in targets.items():
                if kind == "latency":
                    result = oha(args, url, args.duration, rate=args.rate)
                else:
                    result = throughput(args, url, args.duration,
                                        cookie=cookies[target] if kind == "returning" else None)
                runs[target][kind].append(result)
                latency = (f"  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms"
                           if result["p50_ms"] is not None else "")
                print(f"  round {round_number} {kind:<9} {target:<7} "
                      f"{result['requests_per_second']:>9.0f} req/s{latency}  failed {result['failed']}",
                      file=sys.stderr)
    time.sleep(1)
    after_rss = {"abproxy": rss_kib([setup.abproxy.pid]), "nginx": rss_kib(setup.nginx_pids())}
    held = {}
    for target, port in (("abproxy", setup.proxy_port), ("nginx", setup.nginx_port)):
        connections = hold_connections(port, KEEPALIVE_CONNECTIONS)
        time.sleep(0.5)
        held[target] = rss_kib([setup.abproxy.pid] if target == "abproxy" else setup.nginx_pids())
        for c in connections:
            c.close()

    # Failed requests while the config is rewritten every 0.5 s under full load.
    stop = threading.Event()
    reloads = [0]

    def rewrite():
        flip = False
        while not stop.wait(0.5):
            flip = not flip
            setup.write_config(60 if flip else 50, 40 if flip else 50)
            reloads[0] += 1

    applied_before = reloads_applied(setup)
    rewriter = threading.Thread(target=rewrite)
    rewriter.start()
    under_reload = throughput(args, targets["abproxy"], args.duration)
    stop.set()
    rewriter.join()
    time.sleep(0.5)
    applied = reloads_applied(setup) - applied_before

    med = lambda target, kind, key: statistics.median(r[key] for r in runs[target][kind])
    medians = {t: {
        "new_rps": med(t, "new", "requests_per_second"),
        "returning_rps": med(t, "returning", "requests_per_second"),
        "p50_ms": med(t, "latency", "p50_ms"),
        "p99_ms": med(t, "latency", "p99_ms"),
    } for t in targets}
    added = {t: {"p50_ms": medians[t]["p50_ms"] - medians["direct"]["p50_ms"],
                 "p99_ms": medians[t]["p99_ms"] - medians["direct"]["p99_ms"]}
             for t in ("nginx", "abproxy")}
    ratios = {
        "new_rps_abproxy_over_nginx": medians["abproxy"]["new_rps"] / medians["nginx"]["new_rps"],
        "returning_rps_abproxy_over_nginx": medians["abproxy"]["returning_rps"] / medians["nginx"]["returning_rps"],
        "new_rps_abproxy_over_direct": medians["abproxy"]["new_rps"] / medians["direct"]["new_rps"],
        "returning_rps_abproxy_over_direct": medians["abproxy"]["returning_rps"] / medians["direct"]["returning_rps"],
    }
    failed = sum(r["failed"] for t in runs.values() for k in t.values() for r in k)
    return {
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "connections": CONNECTIONS,
                     "rate": args.rate, "workers": args.workers, "cores": os.cpu_count()},
        "runs": runs,
        "medians": medians,
        "added_latency_over_direct": added,
        "ratios": ratios,
        "rss_kib": {"idle_at_start": idle_rss, "idle_after_load": after_rss,
                    f"with_{KEEPALIVE_CONNECTIONS}_keepalive_connections": held},
        "reload_under_load": {"rewrites": reloads[0], "reloads_applied": applied,
                              "requests": under_reload["ok"] + under_reload["failed"],
                              "failed": under_reload["failed"]},
        "failed_requests_in_rounds": failed,
    }


def report(result):
    m, r, a = result["medians"], result["ratios"], result["added_latency_over_direct"]
    rss = result["rss_kib"]
    s = result["settings"]
    print(f"\nmedians of {s['rounds']} interleaved rounds, {s['duration_s']} s each, "
          f"{s['connections']} connections, {s['workers']} worker(s), {s['cores']} cores")
    print(f"{'':<10}{'new req/s':>12}{'returning req/s':>17}{'p50 @' + str(s['rate']):>12}{'p99 @' + str(s['rate']):>12}")
    for t in ("direct", "nginx", "abproxy"):
        print(f"{t:<10}{m[t]['new_rps']:>12.0f}{m[t]['returning_rps']:>17.0f}"
              f"{m[t]['p50_ms']:>10.3f}ms{m[t]['p99_ms']:>10.3f}ms")
    print(f"\nabproxy / nginx:  new {r['new_rps_abproxy_over_nginx']:.2f}x  "
          f"returning {r['returning_rps_abproxy_over_nginx']:.2f}x")
    print(f"abproxy / direct: new {r['new_rps_abproxy_over_direct']:.2f}x  "
          f"returning {r['returning_rps_abproxy_over_direct']:.2f}x")
    print(f"added latency over direct at {s['rate']} req/s: "
          f"nginx p50 {a['nginx']['p50_ms']:+.3f} ms p99 {a['nginx']['p99_ms']:+.3f} ms; "
          f"abproxy p50 {a['abproxy']['p50_ms']:+.3f} ms p99 {a['abproxy']['p99_ms']:+.3f} ms")
    held_key = f"with_{KEEPALIVE_CONNECTIONS}_keepalive_connections"
    print(f"RSS: abproxy idle {rss['idle_at_start']['abproxy'] / 1024:.1f} MiB "
          f"(after load {rss['idle_after_load']['abproxy'] / 1024:.1f}), "
          f"{KEEPALIVE_CONNECTIONS} keep-alive connections {rss[held_key]['abproxy'] / 1024:.1f} MiB; "
          f"nginx (PSS of all processes) idle {rss['idle_at_start']['nginx'] / 1024:.1f} MiB, "
          f"{KEEPALIVE_CONNECTIONS} connections {rss[held_key]['nginx'] / 1024:.1f} MiB")
    rl = result["reload_under_load"]
    print(f"config rewritten {rl['rewrites']} times under load ({rl['reloads_applied']} reloads applied): "
          f"{rl['failed']} failed of {rl['requests']} requests; "
          f"failed requests in all rounds: {result['failed_requests_in_rounds']}")


def soak(args, setup):
    url = f"http://127.0.0.1:{setup.proxy_port}/"
    seconds = int(args.soak * 60)
    cookie = returning_cookies(url)
    base = [args.oha, "-z", f"{seconds}s", "--no-tui", "--output-format", "json", "-c", "32", "-q", str(args.soak_rate)]
    loads = [subprocess.Popen(base + [url], stdout=subprocess.PIPE, text=True),
             subprocess.Popen(base + ["-H", f"Cookie: {cookie}", url], stdout=subprocess.PIPE, text=True)]
    # Stopped with everything else if the soak fails part-way.
    setup.procs.extend(loads)
    samples = []
    started = time.monotonic()
    applied_before = reloads_applied(setup)
    flip = False
    while time.monotonic() - started < seconds - 1:
        time.sleep(min(10, seconds - 1 - (time.monotonic() - started)))
        if setup.abproxy.poll() is not None or any(load.poll() is not None for load in loads):
            raise SystemExit("abproxy or a load generator stopped during the soak")
        flip = not flip
        setup.write_config(60 if flip else 50, 40 if flip else 50)
        sample = {"t_s": round(time.monotonic() - started), "rss_kib": rss_kib([setup.abproxy.pid]),
                  "open_fds": open_fds(setup.abproxy.pid)}
        samples.append(sample)
        print(f"  {sample['t_s']:>5} s  RSS {sample['rss_kib'] / 1024:.1f} MiB  fds {sample['open_fds']}", file=sys.stderr)
    totals = {"ok": 0, "failed": 0}
    for load in loads:
        out, _ = load.communicate()
        result = json.loads(out)
        codes = result.get("statusCodeDistribution", {})
        totals["ok"] += sum(n for c, n in codes.items() if c.startswith("2"))
        totals["failed"] += sum(n for c, n in codes.items() if not c.startswith("2")) + sum(
            n for e, n in result.get("errorDistribution", {}).items() if e != "aborted due to deadline")
    applied = reloads_applied(setup) - applied_before
    warm = [s["rss_kib"] for s in samples if s["t_s"] >= 60] or [s["rss_kib"] for s in samples]
    result = {"minutes": args.soak, "rate_per_kind": args.soak_rate, "requests": totals,
              "rewrites": len(samples), "reloads_applied": applied, "samples": samples,
              "rss_kib_after_first_minute": {"first": warm[0], "last": warm[-1], "max": max(warm)},
              "open_fds": {"min": min(s["open_fds"] for s in samples), "max": max(s["open_fds"] for s in samples)}}
    print(f"\nsoak: {args.soak} min, new + returning at {args.soak_rate} req/s each, config rewritten every 10 s "
          f"({len(samples)} times, {applied} reloads applied)")
    print(f"  requests ok {totals['ok']}, failed {totals['failed']}")
    r = result["rss_kib_after_first_minute"]
    print(f"  RSS after the first minute: first {r['first'] / 1024:.1f} MiB, last {r['last'] / 1024:.1f} MiB, "
          f"max {r['max'] / 1024:.1f} MiB")
    print(f"  open fds: {result['open_fds']['min']}..{result['open_fds']['max']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default="target/release/abproxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=1, help="abproxy threads = nginx worker processes")
    parser.add_argument("--rate", type=int, default=5000, help="requests/s of the latency runs")
    parser.add_argument("--out", default="load.json")
    parser.add_argument("--soak", type=float, help="minutes of soak instead of the comparison")
    parser.add_argument("--soak-rate", type=int, default=1000)
    parser.add_argument("--upstreams", choices=["backend", "nginx"], default="backend",
                        help="backend: abproxy's built-in Moon/Mars backends; nginx: one nginx "
                             "worker answering `return 200`, so the proxies are the only variable")
    args = parser.parse_args()
    missing = []
    args.oha = shutil.which("oha")
    args.wrk = shutil.which("wrk")
    args.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not args.oha:
        missing.append("oha (cargo install oha)")
    if not args.nginx and (args.soak is None or args.upstreams == "nginx"):
        missing.append("nginx (apt-get install nginx-light)")
    if not os.access(args.bin, os.X_OK):
        missing.append(f"{args.bin} (cargo build --release)")
    if missing:
        raise SystemExit("missing: " + "; ".join(missing))
    # 1 000 held connections plus pools: raise the open-file limit the servers inherit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A SIGTERM to the harness still stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(args, tmp)
        try:
            setup.start()
            result = soak(args, setup) if args.soak is not None else measure(args, setup)
        finally:
            setup.stop()
    result["upstreams"] = args.upstreams
    if args.soak is None:
        report(result)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
