#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium with the network off and check it.

For each HTML page under the build folder (default `_build/html`): MathJax typeset every math
node with no MathJax error, every <img> loaded (naturalWidth > 0), no request left the build
folder (only file:// URLs inside it, data: and blob:), nothing was logged as a JavaScript or
console error, the page text shows no Python object repr (`<IPython.core.display.Markdown
object>`, `<... object at 0x7f...>`: a value that was displayed instead of rendered), and no
link opens another repository's notebook (a launch button pointing at Jupyter Book's default
repository, say; this project's own repository is read from `repository.url` in _config.yml).
Prints one line per problem and a summary with the number of pages, math nodes and images
checked; exit status 1 when there is a problem, 2 when Chromium cannot be started.

The browser is driven over the Chrome DevTools Protocol through a pair of pipes
(`--remote-debugging-pipe`), so the check needs nothing beyond the standard library and the
Debian `chromium` package; no port is opened. Usage:

    python scripts/browser_check.py [BUILD_DIR] [--browser /usr/bin/chromium]
                                    [--repository https://github.com/OWNER/NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                 "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing leaves
                 "--remote-debugging-pipe")
LOCAL_SCHEMES = ("data", "blob", "about")
PAGE_TIMEOUT_S = 60.0

# Runs in the page once it has loaded: loads lazy images, waits for them and for MathJax,
# then reports what a reader would see.
INSPECT_PAGE = """
(async () => {
  const images = Array.from(document.images);
  for (const img of images) { img.loading = "eager"; }
  await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  let mathjaxError = null;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) { mathjaxError = String(e); }
  }
  const math = Array.from(document.querySelectorAll(".math"));
  return {
    mathjax: Boolean(window.MathJax && MathJax.version),
    mathjaxError: mathjaxError,
    mathNodes: math.length,
    typeset: document.querySelectorAll("mjx-container").length,
    untypeset: math.filter(node => !node.querySelector("mjx-container"))
                   .map(node => node.textContent.slice(0, 60)),
    mathErrors: Array.from(document.querySelectorAll("mjx-merror"))
                     .map(node => (node.getAttribute("data-mjx-error") || node.textContent)
                                  .slice(0, 80)),
    images: images.length,
    brokenImages: images.filter(img => img.naturalWidth === 0)
                        .map(img => img.getAttribute("src")),
    text: (() => {
      const parts = [];
      const root = document.body || document.documentElement;   // a redirect page: no body
      if (!root) { return ""; }
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
        acceptNode: node => ["SCRIPT", "STYLE", "NOSCRIPT"].includes(node.parentNode.nodeName)
                            ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
      while (walker.nextNode()) { parts.push(walker.currentNode.nodeValue); }
      return parts.join("");
    })(),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  };
})()
"""

# A Python object shown by its repr instead of rendered: `<IPython.core.display.Markdown
# object>`, `<pandas.io.formats.style.Styler at 0x7f2a...>`, `<function f at 0x...>`.
OBJECT_REPR = re.compile(r"<[A-Za-z_][\w.]*(?: [\w.]+)? object(?: at 0x[0-9a-fA-F]+)?>"
                         r"|\bobject at 0x[0-9a-fA-F]+"
                         r"|<[A-Za-z_][\w.]*(?: [\w.]+)? at 0x[0-9a-fA-F]+>")
# Where a link names a GitHub repository: github.com/OWNER/NAME/..., Binder's
# /v2/gh/OWNER/NAME/..., Colab's /github/OWNER/NAME/...
REPOSITORY_IN_URL = re.compile(r"(?:github\.com|/v2/gh|colab\.research\.google\.com/github)/"
                               r"([^/?#]+)/([^/?#]+)")


class BrowserError(RuntimeError):
    """Chromium could not be started or stopped answering."""


class DevTools:
    """A Chromium process and its DevTools protocol over fds 3 (to it) and 4 (from it)."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # a tiny Python step puts the pipe ends on fds 3 and 4, where Chromium expects them
        place_fds = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                     "os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])")
        command = [sys.executable, "-c", place_fds, str(to_browser_r), str(from_browser_w),
                   executable, *BROWSER_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"]
        self.process = subprocess.Popen(command, pass_fds=(to_browser_r, from_browser_w),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = PAGE_TIMEOUT_S) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error'].get('message')}")
                    return reply.get("result", {})
                if "method" in reply:
                    self.events.append(reply)

    def wait_for(self, method: str, timeout: float = PAGE_TIMEOUT_S) -> None:
        """Wait until an event `method` has arrived (it stays in `events`)."""
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method for e in self.events):
            self.events.extend(r for r in self._read(deadline) if "method" in r)

    def settle(self, quiet: float = 0.3, limit: float = 3.0) -> None:
        """Keep events until none has arrived for `quiet` seconds (at most `limit` seconds):
        the network service reports a page's requests asynchronously, later on a busy
        machine than the page's own answers."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            ready, _, _ = select.select([self._from_browser], [], [], quiet)
            if not ready:
                return
            self.events.extend(r for r in self._read(end + quiet) if "method" in r)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError("Chromium did not answer in time")
        ready, _, _ = select.select([self._from_browser], [], [], remaining)
        if not ready:
            raise BrowserError("Chromium did not answer in time")
        chunk = os.read(self._from_browser, 1 << 20)
        if not chunk:
            raise BrowserError("Chromium closed the DevTools pipe (did it start?)")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode()
                     + b"\0")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class PageReport:
    """What one page showed."""

    page: str
    math_nodes: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def _inside(url: str, root: Path) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in LOCAL_SCHEMES:
        return True
    if parsed.scheme != "file":
        return False
    return Path(unquote(parsed.path)).resolve().is_relative_to(root)


def _event_problems(events: list[dict[str, Any]], root: Path) -> list[str]:
    """Requests that left the build folder, failed loads and console or JavaScript errors."""
    problems = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not _inside(url, root):
                problems.append(f"request leaves the build folder: {url[:120]}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"failed to load ({params.get('errorText')}): "
                            f"{params.get('requestId')}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"JavaScript exception: {str(text).splitlines()[0][:160]}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", "")))
                            for a in params.get("args", []))
            problems.append(f"console {params['type']}: {text[:160]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            problems.append(f"console error ({entry.get('source')}): {entry.get('text', '')[:160]}"
                            f" {entry.get('url', '')[:120]}")
    return problems


def _failed_urls(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
            if e["method"] == "Network.requestWillBeSent"}


def object_reprs(text: str) -> list[str]:
    """Python object reprs in a page's text (each distinct one once)."""
    return list(dict.fromkeys(m.group(0) for m in OBJECT_REPR.finditer(text)))


def _repository_of(url: str) -> tuple[str, str] | None:
    match = REPOSITORY_IN_URL.search(url)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).lower().removesuffix(".git")


def foreign_notebook_links(links: list[str], repository: str | None) -> list[str]:
    """Links that open a notebook (`.ipynb` anywhere in the URL, Binder and Colab included)
    outside this project's repository (`repository`: its URL, None when it has no public
    home yet, and then every such link is foreign)."""
    own = _repository_of(repository) if repository else None
    foreign = []
    for url in links:
        if urlparse(url).scheme not in ("http", "https") or ".ipynb" not in unquote(url):
            continue
        if own is None or _repository_of(url) != own:
            foreign.append(url)
    return list(dict.fromkeys(foreign))


def configured_repository(config: Path) -> str | None:
    """`repository.url` of a Jupyter Book `_config.yml` (None when unset), read without YAML:
    the `url:` line indented under a top-level `repository:` line."""
    try:
        lines = config.read_text().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        if re.match(r"^repository:\s*(#.*)?$", line):
            inside = True
        elif inside and re.match(r"^\S", line):
            inside = False
        elif inside and (match := re.match(r"^\s+url:\s*[\"']?([^\"'#\s]+)", line)):
            return match.group(1)
    return None


def check_page(browser: DevTools, session: str, page: Path, root: Path,
               repository: str | None = None) -> PageReport:
    """Load one page and report what went wrong on it."""
    report = PageReport(str(page.relative_to(root)))
    browser.events.clear()
    browser.send("Page.navigate", {"url": page.as_uri()}, session)
    browser.wait_for("Page.loadEventFired")
    result = browser.send("Runtime.evaluate", {"expression": INSPECT_PAGE, "awaitPromise": True,
                                               "returnByValue": True}, session)
    if "exceptionDetails" in result:
        report.problems.append(f"inspection failed: {result['exceptionDetails'].get('text')}")
        return report
    seen = result["result"]["value"]
    browser.send("Runtime.evaluate", {"expression": "0"}, session)  # drain pending events
    browser.settle()
    report.math_nodes, report.images = seen["typeset"], seen["images"]
    if seen["mathNodes"] and not seen["mathjax"]:
        report.problems.append(f"{seen['mathNodes']} math nodes but MathJax did not load")
    if seen["mathjaxError"]:
        report.problems.append(f"MathJax failed: {seen['mathjaxError']}")
    report.problems += [f"math not typeset: {text!r}" for text in seen["untypeset"]]
    report.problems += [f"MathJax error: {text}" for text in seen["mathErrors"]]
    report.problems += [f"image not loaded: {src}" for src in seen["brokenImages"]]
    report.problems += [f"Python object shown instead of its value: {text}"
                        for text in object_reprs(seen["text"])]
    report.problems += [f"link to another repository's notebook: {url[:160]}"
                        for url in foreign_notebook_links(seen["links"], repository)]
    urls = _failed_urls(browser.events)
    report.problems += [problem.replace(request_id, urls.get(request_id, request_id))
                        if (request_id := problem.rsplit(" ", 1)[-1]) in urls else problem
                        for problem in _event_problems(browser.events, root)]
    return report


def pages_of(root: Path) -> list[Path]:
    """Every HTML page of a Sphinx build (not the theme's template fragments in _static)."""
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts
                  and "_sources" not in p.relative_to(root).parts)


def check_site(root: Path, executable: str, repository: str | None = None
               ) -> list[PageReport]:
    """Open every page under `root` in one headless Chromium with the network off
    (`repository`: this project's repository URL, whose notebooks may be linked)."""
    root = root.resolve()
    with tempfile.TemporaryDirectory(prefix="browser-check-") as profile_dir:
        browser = DevTools(executable, Path(profile_dir))
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target,
                                                             "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                browser.send(f"{domain}.enable", {}, session)
            browser.send("Network.emulateNetworkConditions", {
                "offline": True, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1}, session)
            return [check_page(browser, session, page, root, repository)
                    for page in pages_of(root)]
        finally:
            browser.close()


def find_browser(requested: str | None) -> str | None:
    """The Chromium executable: the one asked for, else chromium on PATH."""
    if requested:
        return requested if os.access(requested, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default="_build/html")
    parser.add_argument("--browser", default=None, help="Chromium executable")
    parser.add_argument("--repository", default=None,
                        help="this project's repository URL, whose notebooks pages may link "
                             "(default: repository.url of _config.yml; none when unset)")
    args = parser.parse_args(argv)
    repository = args.repository or configured_repository(
        Path(__file__).resolve().parents[1] / "_config.yml")
    root = Path(args.build_dir)
    executable = find_browser(args.browser)
    if executable is None:
        sys.stderr.write("browser check: chromium not found; install it with "
                         "`apt-get install chromium` (make test does this as root)\n")
        return 2
    if not pages_of(root):
        sys.stderr.write(f"browser check: no HTML pages under {root}; build the book first\n")
        return 2
    started = time.perf_counter()
    try:
        reports = check_site(root, executable, repository)
    except BrowserError as error:
        sys.stderr.write(f"browser check: {error}\n")
        return 2
    problems = [f"{r.page}: {p}" for r in reports for p in r.problems]
    for problem in problems:
        print(problem)
    print(f"browser check: {len(reports)} pages, {sum(r.math_nodes for r in reports)} math "
          f"nodes typeset, {sum(r.images for r in reports)} images loaded, "
          f"{len(problems)} problems ({time.perf_counter() - started:.1f} s, network off)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
