"""The screenshots of docs/serve.md: the live page of a `jaxstyle --serve` run and the
`jaxstyle serve` app, taken with Debian's chromium (apt-get install chromium
chromium-driver) and selenium, from real runs with random weights (offline: the images show
what the pages look like, not what real VGG19 weights make).

    python examples/web_screenshots.py --out docs/
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")


def browser(width: int = 1360, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def start(args, cwd) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                               cwd=cwd, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT),
                                        JAXSTYLE_NO_COMPILE_CACHE="1"))
    while True:
        line = process.stderr.readline()
        if not line:
            raise SystemExit(f"the command ended: {process.wait()}")
        if found := URL.search(line):
            return process, found.group(1)


def wait(driver, script: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {script}")
        time.sleep(0.2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--steps", type=int, default=60, help="steps shown on the live page")
    args = parser.parse_args(argv)
    import jaxstyle
    from jaxstyle.arbitrary import random_params, save_model

    work = Path(tempfile.mkdtemp(prefix="jaxstyle-shots-"))
    jaxstyle.save_weights(jaxstyle.random_weights(0), work / "vgg19.npz")
    save_model({k: v for k, v in random_params("adain").items()}, work / "adain.npz", "adain")
    examples = ROOT / "examples"
    driver = browser()
    try:
        # The live page: a run of chelsea in the style of the Hubble deep field.
        process, url = start([examples / "chelsea.jpg", examples / "hubble_deep_field.jpg",
                              "-o", work / "cat.png", "--weights", work / "vgg19.npz",
                              "--image-size", 192, "--scales", "none", "--optimizer", "adam",
                              "--style-weight", "1e7", "--iterations", 100000,
                              "--serve", 0], work)
        driver.get(url)
        wait(driver, f"return liveView.state.step >= {args.steps} && "
                     "document.querySelector('[data-role=live]').dataset.imageVersion")
        time.sleep(1.5)
        driver.save_screenshot(str(args.out / "serve-live.png"))
        driver.find_element("css selector", "[data-role=stop]").click()
        process.wait(120)

        # The app: a refine and a sweep done, the preview shown.
        process, url = start(["serve", 0, "--weights", work / "vgg19.npz", "--model",
                              work / "adain.npz", "--images", examples, "--out",
                              work / "srv", "--image-size", 128], work)
        driver.get(url)
        wait(driver, "return document.getElementById('iterations').value")
        for target, name in (("content", "chelsea.jpg"), ("styles", "hubble_deep_field.jpg")):
            select = driver.find_element("css selector", f"[data-folder={target}]")
            driver.execute_script(
                "const s = arguments[0]; s.value = [...s.options].find(o => o.text === "
                "arguments[1]).value; s.dispatchEvent(new Event('change'))", select, name)
            time.sleep(1)
        wait(driver, "return !document.getElementById('preview-image').hidden")
        for control, value in (("iterations", "40"), ("optimizer", "adam")):
            driver.execute_script(f"document.getElementById('{control}').value = '{value}'")
        driver.execute_script("const w = document.getElementById('style_weight'); w.value = 7; "
                              "w.dispatchEvent(new Event('input'))")
        driver.find_element("id", "refine").click()
        driver.find_element("id", "sweep").click()
        wait(driver, "return document.querySelectorAll('#gallery figure').length >= 2")
        driver.find_element("id", "refine").click()
        wait(driver, "return liveView.state.step >= 15 && liveView.state.status == 'running'")
        time.sleep(1)
        driver.set_window_size(1360, 1250)
        time.sleep(0.5)
        driver.save_screenshot(str(args.out / "serve-app.png"))
        process.terminate()
        process.wait(120)
    finally:
        driver.quit()
    print(f"wrote {args.out / 'serve-live.png'} and {args.out / 'serve-app.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
