"""What `--serve` costs a run: the same `jaxstyle.stylize` with the command line's
callback, without a page, with `--serve` and nobody watching, and with `--serve` and a
watching client (which reads every event and fetches every image, as the page does).

    python benchmarks/serve_overhead.py --size 512 --steps 8 --repeats 3 \\
        --out benchmarks/results/serve

Random VGG19 weights (the real network's compute), one stage at --size, Adam (a fixed
amount of work per step, unlike L-BFGS's line search). The three variants run interleaved
in one process, after one run that compiles, so machine load drifts over all of them alike.
Per run: steps_s (the library's timing of the stepping, setup and compile excluded), the
seconds spent inside the callback (the run waits for it), the CPU seconds of the server's
threads (which share the cores with the run), the images copied off the device. The
in-run shares are the direct costs; the wall-time differences also carry the machine's
noise (compare them with the spread of the "no page" runs). Writes
OUT/serve_overhead.json and OUT/serve_overhead.md.

The variants are what the command does: without a page the callback runs every 10 steps
(`MAX_CALLBACK_EVERY`); with --serve on a CPU every step (`View.callback_every`), and on an
accelerator every 10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("JAXSTYLE_NO_COMPILE_CACHE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("no page", "--serve, no client", "--serve, watching client")


WATCHER = r"""
import asyncio, json, signal, sys
import aiohttp

counts = {"events": 0, "images": 0, "bytes": 0}

async def main(url):
    async with aiohttp.ClientSession() as session, session.get(url + "events") as response:
        print("watching", flush=True)
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            counts["events"] += 1
            data = json.loads(line[6:])
            if "image" in data:
                async with session.get(f"{url}image?v={data['image']['version']}") as reply:
                    counts["bytes"] += len(await reply.read())
                    counts["images"] += 1

def done(*_):
    print(json.dumps(counts), flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, done)
asyncio.run(main(sys.argv[1]))
"""


class Watcher:
    """A page's traffic, from another process as a browser's is: the event stream read as
    it comes, and each new image fetched."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", WATCHER, url],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "watching"
        self.cpu_start = self.cpu()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> dict:
        """Its counts, and the CPU seconds it used while watching (it runs on this machine,
        so it shares the cores; a browser over ssh would not)."""
        cpu = self.cpu() - self.cpu_start
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(30)
        return {**json.loads(out.strip().splitlines()[-1]), "cpu_s": cpu}


def web_cpu_seconds() -> dict[int, float]:
    """{thread id: CPU seconds so far} of this process's web threads: the server's event
    loop ("jaxstyle-web") and the executor threads it encodes images in ("asyncio_N")."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for thread in threading.enumerate():
        if not thread.name.startswith(("jaxstyle-web", "asyncio")):
            continue
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        out[thread.native_id] = (int(utime) + int(stime)) / tick
    return out


def cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the web threads used since `before` (threads started since: all)."""
    return sum(cpu - before.get(tid, 0.0) for tid, cpu in web_cpu_seconds().items())


def one_run(variant: str, content, style, weights, config, device) -> dict:
    import jaxstyle
    from jaxstyle.web import address as addresses
    from jaxstyle.web import device as device_info
    from jaxstyle.web.live import Live
    from jaxstyle.web.server import Server
    from jaxstyle.web.view import live_app

    live = server = watcher = None
    every = 10
    if variant != "no page":
        local = addresses.Address("127.0.0.1", 0)
        live = Live(kind="stylize", title="benchmark", device=device_info.describe([device]))
        sock = addresses.bind(local)
        server = Server(live_app(live, local, [device]), sock).start()
        every = 1 if device.platform == "cpu" else 10
        if variant == "--serve, watching client":
            watcher = Watcher(addresses.url(local, sock))
            while live.watchers < 1:
                time.sleep(0.01)
    pulls = [0]
    in_callback = [0.0]

    def callback(progress):
        t = time.perf_counter()
        if live is not None:
            images = progress.images

            def counted():
                pulls[0] += 1
                return images()
            progress.images = counted
            live.progress(progress)
        in_callback[0] += time.perf_counter() - t
        return True

    web_before = web_cpu_seconds()
    result = jaxstyle.stylize(content, style, weights=weights, config=config,
                              callback=callback, callback_every=every, devices=[device])
    out = {"variant": variant, "steps_s": result.timings["steps_s"],
           "total_s": result.timings["total_s"], "callback_s": in_callback[0],
           "web_threads_cpu_s": cpu_since(web_before),
           "callback_every": every, "images_copied": pulls[0]}
    if watcher is not None:
        time.sleep(0.3)
        out.update({f"client_{k}": v for k, v in watcher.close().items()})
    if server is not None:
        server.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve"))
    args = parser.parse_args(argv)

    from jaxstyle import runtime

    runtime.set_xla_cpu_flags()
    import jax
    import numpy as np

    import jaxstyle

    device = jax.devices()[0]
    rng = np.random.default_rng(0)
    content = rng.random((args.size * 3 // 4, args.size, 3), np.float32)
    style = rng.random((args.size, args.size, 3), np.float32)
    weights = jaxstyle.random_weights(0)
    config = jaxstyle.StyleConfig(image_size=args.size, scales=None, optimizer="adam",
                                  iterations=args.steps, style_weight=1e7)
    print(f"compiling ({args.size} px) ...", file=sys.stderr, flush=True)
    one_run("no page", content, style, weights, config, device)
    runs = []
    for repeat in range(args.repeats):
        for variant in VARIANTS:
            row = one_run(variant, content, style, weights, config, device)
            row["repeat"] = repeat
            runs.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {}
    base = statistics.median(r["steps_s"] for r in runs if r["variant"] == "no page")
    for variant in VARIANTS:
        rows = [r for r in runs if r["variant"] == variant]
        median = statistics.median(r["steps_s"] for r in rows)
        summary[variant] = {
            "steps_s_median": median, "steps_s": [r["steps_s"] for r in rows],
            "overhead_vs_no_page": median / base - 1,
            "callback_share": statistics.median(r["callback_s"] / r["steps_s"] for r in rows),
            "web_cpu_share": statistics.median(r["web_threads_cpu_s"] / r["steps_s"]
                                               for r in rows),
            "client_cpu_share": statistics.median(r.get("client_cpu_s", 0.0) / r["steps_s"]
                                                  for r in rows),
            "images_copied": [r["images_copied"] for r in rows]}
    report = {"size": args.size, "steps": args.steps, "repeats": args.repeats,
              "optimizer": "adam", "weights": "random_weights(0)",
              "device": {"platform": device.platform, "kind": device.device_kind},
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
              "machine": platform.machine(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d"), "summary": summary, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_overhead.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# --serve overhead, {args.size} px, {args.steps} Adam steps, "
             f"{device.platform} ({os.cpu_count()} cores), {report['date']}", "",
             "| variant | stepping s (median) | runs | vs no page | in callback | "
             "web threads' CPU | client's CPU | images copied |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, s in summary.items():
        lines.append(f"| {variant} | {s['steps_s_median']:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in s['steps_s'])} | "
                     f"{100 * s['overhead_vs_no_page']:+.1f}% | "
                     f"{100 * s['callback_share']:.2f}% | "
                     f"{100 * s['web_cpu_share']:.2f}% | "
                     f"{100 * s['client_cpu_share']:.2f}% | "
                     f"{', '.join(map(str, s['images_copied']))} |")
    (args.out / "serve_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
