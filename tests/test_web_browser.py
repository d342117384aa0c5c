"""The pages in a real browser (Debian's chromium through its chromedriver, which .ci/run
installs): the live page of a real `jaxstyle --serve` run, and `jaxstyle serve` from upload
to download. Both commands run as a user runs them, in subprocesses (random weights,
64 px, shallow layers, Adam). Without chromium these tests skip, except in CI (CI=true),
where they fail: CI must run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, smooth_image
from PIL import Image

import jaxstyle
from jaxstyle.image import save_image

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LAYERS = ["--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (CHROMIUM and DRIVER):
        return "chromium and chromium-driver are not installed (apt-get install chromium " \
               "chromium-driver; .ci/run does it)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser_inputs")
    save_image(d / "content.png", smooth_image(20, 48, 64))
    save_image(d / "style.png", smooth_image(21, 56, 40))
    jaxstyle.save_weights(jaxstyle.random_weights(0), d / "vgg19.npz")
    return d


def start(args, cwd) -> tuple[subprocess.Popen, str]:
    """`python cli.py ARGS` in `cwd`; (the process, the URL it printed)."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=cwd,
        env=dict(os.environ, JAX_PLATFORMS="cpu", JAXSTYLE_NO_COMPILE_CACHE="1",
                 PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        line = process.stderr.readline()
        assert line, f"ended early, rc={process.wait()}: {process.stderr.read()}"
        found = URL.search(line)
        if found:
            return process, found.group(1)
        assert time.monotonic() < deadline, "no URL printed within 60 s"


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()
    process.stderr.close()


def wait(driver, script: str, timeout: float = 60, what: str = ""):
    """Poll `script` in the page until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or script}"
        time.sleep(0.1)


def downloaded(folder: Path, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        done = [p for p in folder.iterdir() if p.suffix == ".png"]
        if done:
            return done[0]
        assert time.monotonic() < deadline, list(folder.iterdir())
        time.sleep(0.1)


def test_live_page_of_a_run_stop_and_download(browser, inputs, tmp_path):
    out = tmp_path / "out.png"
    process, url = start(["content.png", "style.png", "-o", out, "--weights", "vgg19.npz",
                          "--image-size", 64, "--iterations", 100000, "--optimizer", "adam",
                          "--scales", "none", *LAYERS, "--serve", 0], inputs)
    try:
        browser.get(url)
        first = int(wait(browser, "return document.querySelector('[data-role=live]')"
                                  ".dataset.imageVersion", what="the first image"))
        points = wait(browser, "return liveView.plot.points.length", what="plot points")
        wait(browser, f"return +document.querySelector('[data-role=live]').dataset"
                      f".imageVersion > {first}", what="the image to change")
        wait(browser, f"return liveView.plot.points.length > {points} + 2",
             what="the plot to grow")
        assert browser.execute_script("return liveView.state.status") == "running"
        for f in browser.downloads.iterdir():
            f.unlink()
        browser.find_element("css selector", "[data-role=download]").click()
        with Image.open(downloaded(browser.downloads)) as im:
            assert im.size == (64, 48)
            assert json.loads(im.text["jaxstyle"])["config"]["image_size"] == 64
        browser.find_element("css selector", "[data-role=stop]").click()
        assert process.wait(60) == 130
        err = process.stderr.read()
        assert "Stop pressed on the page" in err and "wrote the best image so far" in err
        assert "Traceback" not in err
        with Image.open(out) as im:
            assert im.size == (64, 48)
            steps = json.loads(im.text["jaxstyle"])["config"]["iterations"]
        assert steps == 100000
        status = wait(browser, "return document.querySelector('[data-role=status]')"
                               ".textContent.includes('exit 130') && "
                               "document.querySelector('[data-role=status]').textContent",
                      what="the page to show the end")
        assert status == "interrupted (exit 130)"
    finally:
        end(process)


def test_serve_upload_run_gallery_download(browser, inputs, tmp_path):
    process, url = start(["serve", 0, "--weights", "vgg19.npz", "--out", tmp_path / "srv",
                          "--image-size", 64, *LAYERS], inputs)
    try:
        browser.get(url)
        wait(browser, "return document.getElementById('iterations').value", what="setup")
        for target, name in (("content", "content.png"), ("styles", "style.png")):
            field = browser.find_element("css selector", f"[data-file={target}]")
            browser.execute_script("arguments[0].hidden = false", field)
            field.send_keys(str(inputs / name))
        wait(browser, "return document.querySelectorAll('#content-thumbs .thumb').length "
                      "&& document.querySelectorAll('#style-thumbs .thumb').length",
             what="both uploads")
        # A bad file first: the page says why, and the server goes on.
        field = browser.find_element("css selector", "[data-file=styles]")
        field.send_keys(str(inputs / "vgg19.npz"))
        error = wait(browser, "return document.getElementById('errors').textContent",
                     what="the upload's error")
        assert error == "vgg19.npz: not an image file (or a format Pillow cannot read)"
        for control, value in (("iterations", "20"), ("optimizer", "adam")):
            element = browser.find_element("id", control)
            if element.tag_name == "select":
                browser.execute_script(f"arguments[0].value = '{value}'", element)
            else:
                element.clear()
                element.send_keys(value)
        browser.find_element("id", "refine").click()
        wait(browser, "return document.querySelector('#gallery figure')",
             what="the gallery entry")
        assert browser.execute_script("return liveView.state.status") == "done"
        for f in browser.downloads.iterdir():
            f.unlink()
        browser.find_element("css selector", "#gallery figure a[download]").click()
        path = downloaded(browser.downloads)
        assert path.name == "result_001.png"
        with Image.open(path) as im:
            settings = json.loads(im.text["jaxstyle"])
            assert im.size == (64, 48)
            pixels = np.asarray(im)
        assert settings["content"] == "content.png" and settings["styles"] == ["style.png"]
        assert settings["config"]["iterations"] == 20
        assert (pixels == np.asarray(Image.open(tmp_path / "srv" / "result_001.png"))).all()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert "server stopped" in process.stderr.read()
    finally:
        end(process)
