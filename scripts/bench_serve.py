"""Throughput and latency of ``videolm serve`` with batching off and on, side by side.

Starts ``videolm serve`` twice (``--max-batch-size 1`` and ``--max-batch-size N``), each a subprocess on a
free loopback port, and for each number of concurrent clients sends both the same requests (the colour
question of a synthetic video, ``file://`` URLs, the ``--videos`` videos in turn) from client threads that
each keep one connection open (as the openai client does) and wait for their answer before sending the
next; the rows of the two servers interleave, over ``--rounds`` rounds, and the medians are shown. Prints
requests per second, p50 / p95 latency and the server's CPU time per request, and checks that every row
gave the same answers. Before the servers start it times the model alone in this process, batch 1 vs
batch N on the same clips: the model's own gain from batching on this machine.

    python scripts/bench_serve.py                       # the bundled captioner on the CPU
    python scripts/bench_serve.py --device cuda --requests 128 --json bench.json

The cores this machine's other work keeps busy are reported (load average before the run), since they
slow both columns.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(conn: http.client.HTTPConnection, body: dict) -> tuple[int, dict]:
    """One request on the client's kept-alive connection (as the openai client's connection pool does)."""
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


class Server:
    def __init__(self, args, media: Path, batch: int):
        self.port = free_port()
        command = [sys.executable, "-m", "videolm.cli", "serve", "--port", str(self.port), "--log-level", "warning",
                   "--allowed-local-media-path", str(media), "--max-batch-size", str(batch)]
        if args.batch_wait_ms is not None:
            command += ["--batch-wait-ms", str(args.batch_wait_ms)]
        for model in args.model or []:
            command += ["--model", model]
        if args.device:
            command += ["--device", args.device]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited:\n" + self.process.stderr.read().decode())
            try:
                get(self.port, "/health")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start in 300 s") from None
                time.sleep(0.3)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system, all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def median_row(rows: list[dict]) -> dict:
    """The median of each figure over the rounds of one row."""
    return {"clients": rows[0]["clients"], **{k: statistics.median(r[k] for r in rows)
                                               for k in ("rps", "p50_ms", "p95_ms", "cpu_ms")}}


def _batch_sizes(port: int) -> dict:
    sizes: dict = {}
    for stats in get(port, "/health")["models"].values():
        for n, count in stats["batch_sizes"].items():
            sizes[n] = sizes.get(n, 0) + count
    return sizes


def model_ceiling(a, paths: list[str], questions: list[str]) -> dict:
    """The model's own gain from batching on this machine: in this process, the served model's ``predict``
    per request at batch 1 and at ``--batch`` on the same decoded clips (medians of ``--rounds``), and
    the decoding of one clip. Decoding and request handling cost the same per request batched or not."""
    import torch

    from videolm.infer import Captioner, load

    pipe = load(a.model[0] if a.model else None, device=a.device)
    n = min(a.batch, len(paths))
    start = time.perf_counter()
    clips = [pipe.frames(path) for path in paths[:n]]
    decode = (time.perf_counter() - start) / n
    extra = {"question": questions[:n]} if isinstance(pipe, Captioner) and pipe.answers_questions else {}

    def predict(rows: list[int]) -> None:
        kwargs = {k: [v[r] for r in rows] for k, v in extra.items()}
        with torch.inference_mode():
            pipe.predict(torch.stack([clips[r][0] for r in rows]).to(pipe.device), [clips[r][1] for r in rows],
                         **kwargs)

    predict([0])  # warm-up
    one, many = [], []
    for _ in range(a.rounds):
        start = time.perf_counter()
        for r in range(n):
            predict([r])
        one.append((time.perf_counter() - start) / n)
        start = time.perf_counter()
        predict(list(range(n)))
        many.append((time.perf_counter() - start) / n)
    return {"batch": n, "decode_ms": 1000 * decode, "one_ms": 1000 * statistics.median(one),
            "batched_ms": 1000 * statistics.median(many), "threads": torch.get_num_threads()}


def run_load(port: int, requests: list[dict], clients: int) -> dict:
    """Send ``requests`` from ``clients`` threads (each one request at a time); latencies and answers."""
    latencies: list[float] = [0.0] * len(requests)
    answers: list[str | None] = [None] * len(requests)
    next_index = iter(range(len(requests)))
    lock = threading.Lock()
    failures: list[str] = []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                send(conn, i)
        finally:
            conn.close()

    def send(conn, i):
        t = time.perf_counter()
        status, body = post(conn, requests[i])
        latencies[i] = time.perf_counter() - t
        if status != 200:
            failures.append(f"{status}: {body}")
        else:
            answers[i] = body["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"clients": clients, "requests": len(requests), "seconds": wall, "rps": len(requests) / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p95_ms": 1000 * q[18], "answers": answers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="served model (default: the bundled captioner)")
    p.add_argument("--device", default=None, help="the server's --device")
    p.add_argument("--clients", default="1,4,16", help="concurrent client counts (default 1,4,16)")
    p.add_argument("--requests", type=int, default=64, help="requests per row (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all rows, interleaved (default 3; medians shown)")
    p.add_argument("--batch", type=int, default=16, help="--max-batch-size with batching on (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=None, help="the server's --batch-wait-ms (default: its own)")
    p.add_argument("--videos", type=int, default=32, help="synthetic videos the requests cycle through")
    p.add_argument("--data", default=None, help="a synthetic corpus folder (default: generated in a temp folder)")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from videolm.data.manifests import read_jsonl
    from videolm.data.synthetic import generate_corpus

    clients = [int(c) for c in a.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(a.data) if a.data else generate_corpus(Path(tmp) / "synthetic", videos=a.videos, seed=7,
                                                            progress=False)
        records = [r for s in ("train", "val", "test") for r in read_jsonl(Path(data) / f"{s}.jsonl")]
        requests = []
        for k in range(a.requests):
            r = records[k % len(records)]
            question = next(q["question"] for q in r["qa"] if q["question"].startswith("what colour"))
            url = (Path(data) / r["video"]).resolve().as_uri()
            requests.append({"messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}]}]})
        ceiling = model_ceiling(a, [str(Path(data) / records[k % len(records)]["video"]) for k in range(a.requests)],
                                [r["messages"][0]["content"][1]["text"] for r in requests])
        load = os.getloadavg()
        print(f"{os.cpu_count()} CPU cores; load average before the run {load[0]:.2f} "
              f"(other processes' work, shared with the servers and their clients)", flush=True)
        modes = (("off", 1), ("on", a.batch))
        servers = {}
        try:
            for label, batch in modes:  # both up at once (idle when not measured): rows interleave
                servers[label] = Server(a, Path(data), batch)
            for server in servers.values():
                run_load(server.port, requests[: max(4, max(clients))], max(clients))  # warm-up
            rows: dict = {(label, c): [] for label, _ in modes for c in clients}
            for round_ in range(a.rounds):
                for c in clients:
                    for label, batch in modes:
                        port = servers[label].port
                        before, cpu = _batch_sizes(port), servers[label].cpu_seconds()
                        row = run_load(port, requests, c)
                        row["cpu_ms"] = 1000 * (servers[label].cpu_seconds() - cpu) / len(requests)
                        after = _batch_sizes(port)
                        row["batch_sizes"] = {n: after[n] - before.get(n, 0) for n in sorted(after, key=int)
                                              if after[n] - before.get(n, 0)}
                        rows[label, c].append(row)
                        print(f"  round {round_ + 1}, batching {label:>3} ({batch:>2}), {c:>2} clients: "
                              f"{row['rps']:6.2f} req/s, p50 {row['p50_ms']:6.0f} ms, p95 {row['p95_ms']:6.0f} ms, "
                              f"server CPU {row['cpu_ms']:5.1f} ms/request; "
                              f"batches (size: count) {row['batch_sizes']}", flush=True)
        finally:
            for server in servers.values():
                server.close()
    results = {label: [median_row(rows[label, c]) for c in clients] for label, _ in modes}
    same = all(x["answers"] == y["answers"] for label, _ in modes for c in clients
               for x, y in zip(rows[label, c], rows["off", clients[0]]))
    truth = []
    for k in range(a.requests):
        r = records[k % len(records)]
        truth.append(next(q["answer"] for q in r["qa"] if q["question"].startswith("what colour")))
    right = sum(x == t for x, t in zip(rows["on", clients[-1]][0]["answers"], truth))
    device = a.device or "default device"
    print(f"\n{'/'.join(a.model or ['pllava-tiny'])} on {device}; {a.requests} requests per row, median of "
          f"{a.rounds} interleaved rounds; batching on = --max-batch-size {a.batch}:\n")
    print("| clients | off: req/s | off: p50 ms | off: p95 ms | off: CPU ms/req | on: req/s | on: p50 ms | on: p95 ms "
          "| on: CPU ms/req | on / off |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for off, on in zip(results["off"], results["on"]):
        print(f"| {off['clients']} | {off['rps']:.2f} | {off['p50_ms']:.0f} | {off['p95_ms']:.0f} | {off['cpu_ms']:.1f} | "
              f"{on['rps']:.2f} | {on['p50_ms']:.0f} | {on['p95_ms']:.0f} | {on['cpu_ms']:.1f} | "
              f"{on['rps'] / off['rps']:.2f}x |")
    one, on, off = results["off"][0]["rps"], results["on"][-1]["rps"], results["off"][-1]["rps"]
    print(f"\n{max(clients)} clients with batching: {on / one:.2f}x the throughput of one client served one "
          f"request at a time ({one:.2f} req/s), {on / off:.2f}x that of {max(clients)} clients with batching off "
          f"({off:.2f} req/s); every row the same answers: {same}; colour answers right: {right}/{a.requests}; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    c = ceiling
    print(f"the model alone, in this process ({c['threads']} torch threads): {c['one_ms']:.1f} ms a request at batch 1, "
          f"{c['batched_ms']:.1f} ms at batch {c['batch']}: {c['one_ms'] / c['batched_ms']:.2f}x, the model's own gain "
          f"from batching; decoding one clip: {c['decode_ms']:.1f} ms, the same batched or not")
    if a.json:
        Path(a.json).write_text(json.dumps({"medians": results, "model_alone": ceiling, "rows": {f"{k[0]}-{k[1]}": v for k, v in rows.items()}},
                                           indent=1, default=str))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
