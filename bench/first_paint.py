"""First paint of the chat: time from navigation until the question box is visible; prints a table, writes JSON.

    .venv/bin/python bench/first_paint.py                  # 8 runs against a fresh server on the demo corpus
    .venv/bin/python bench/first_paint.py --runs 3 --url http://127.0.0.1:7860

Without --url it starts `dossier serve` (this checkout's code, `python -m assistant.cli`) on a free port of
127.0.0.1 with a temporary store holding examples/articles, and waits for /api/health before the first run.
Each run opens a new browser context (an empty cache: a first visit) in Debian's headless chromium through
Playwright and loads the page twice: "cold", then "warm" in a new tab of the same context (a returning
visitor, with what the browser cached). Times come from the page's own clock (`performance.now()`, 0 at
navigation): the HTML's arrival, DOMContentLoaded, and the first frame in which the question box is visible.
It also counts the requests that reached the server (those the browser's cache answered do not), the requests
to other hosts (fonts or scripts from the internet never arrive on an offline install), and the bytes of
Gradio's /config. Results go to bench/results/first_paint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from assistant.browser import launch_chromium

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# Polled every animation frame: the page's clock at the first frame the question box has a size on screen.
VISIBLE = """() => {
    const box = document.querySelector('#dossier-question textarea, #dossier-question input');
    if (!box) return false;
    const rect = box.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0 && getComputedStyle(box).visibility !== 'hidden' ? performance.now() : false;
}"""
TIMINGS = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return {response_ms: nav.responseEnd, dom_content_loaded_ms: nav.domContentLoadedEventEnd};
}"""
# Every resource the page asked for, and whether it went to a server (a 304 too): what the browser's cache
# answered has no transfer (nor has a cross-origin one, which only counts for its host).
RESOURCES = """() => performance.getEntriesByType('resource').map(e => [e.name, e.transferSize > 0])"""
VISITS = ("cold", "warm")
MEASURES = ("response_ms", "dom_content_loaded_ms", "question_box_ms")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """`dossier serve` on a free port with a fresh store; returns the process, its URL and seconds until healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOSSIER_")}
    env.update(
        HF_HUB_OFFLINE="1",
        DOSSIER_UPLOAD_DIR=str(folder / "uploads"),
        DOSSIER_CONFIG=os.devnull,
        PYTHONPATH=str(REPO),
    )
    command = [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--store", str(folder / "store")]
    log = (folder / "server.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < started + 600:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}: see {folder / 'server.log'}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return process, url, time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise SystemExit("the server did not answer /api/health within 600 s")


def measure(url: str, runs: int, path: str) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    host = urlsplit(url).netloc
    results = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                for visit in VISITS:
                    page = context.new_page()
                    page.goto(url + path, wait_until="commit", timeout=60_000)
                    visible = page.wait_for_function(VISIBLE, polling="raf", timeout=60_000).json_value()
                    timings = page.evaluate(TIMINGS)
                    page.wait_for_timeout(500)  # requests the page makes just after showing the box count too
                    resources = page.evaluate(RESOURCES)
                    fetched = [name for name, sent in resources if sent]
                    elsewhere = sorted(
                        {urlsplit(r).netloc for r, _ in resources if urlsplit(r).netloc not in {host, ""}}
                    )
                    results.append(
                        {
                            "visit": visit,
                            **{k: round(v, 1) for k, v in timings.items()},
                            "question_box_ms": round(visible, 1),
                            "requests": len(fetched),
                            "other_hosts": elsewhere,
                        }
                    )
                    page.close()
                context.close()
        finally:
            browser.close()
    return results


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per visit (cold, warm): the median and the maximum of each measure, and the median request count."""
    out: dict[str, dict[str, float]] = {}
    for visit in VISITS:
        chosen = [run for run in runs if run["visit"] == visit]
        out[visit] = {"requests_median": statistics.median(run["requests"] for run in chosen)}
        for key in MEASURES:
            values = sorted(run[key] for run in chosen)
            out[visit][f"{key}_median"] = round(statistics.median(values), 1)
            out[visit][f"{key}_max"] = values[-1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8, help="page loads, each in a fresh browser context")
    parser.add_argument("--url", default="", help="an already running Dossier (default: start one)")
    parser.add_argument("--path", default="/", help="the page to load, e.g. '/?embed=1'")
    parser.add_argument("--out", type=Path, default=RESULTS / "first_paint.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    process = None
    with tempfile.TemporaryDirectory(prefix="dossier-first-paint-") as temp:
        try:
            if args.url:
                url, startup = args.url.rstrip("/"), None
            else:
                process, url, startup = start_server(Path(temp))
            config_bytes = len(httpx.get(f"{url}/config", timeout=30).content)
            runs = measure(url, args.runs, args.path)
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    result = {
        "url_path": args.path,
        "runs": runs,
        "summary": summary(runs),
        "config_bytes": config_bytes,
        "server_start_s": round(startup, 1) if startup is not None else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print("| run | visit | HTML received | DOMContentLoaded | question box visible | requests | other hosts |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for number, run in enumerate(runs, 2):
        print(
            f"| {number // 2} | {run['visit']} | {run['response_ms']:.0f} ms | {run['dom_content_loaded_ms']:.0f} ms "
            f"| {run['question_box_ms']:.0f} ms | {run['requests']} | {', '.join(run['other_hosts']) or '-'} |"
        )
    print()
    for visit, numbers in result["summary"].items():
        print(
            f"{visit}: question box visible, median {numbers['question_box_ms_median']:.0f} ms, "
            f"max {numbers['question_box_ms_max']:.0f} ms; {numbers['requests_median']:.0f} requests"
        )
    print(
        f"/config {config_bytes / 1024:.0f} KB; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
