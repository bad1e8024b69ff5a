"""The real-browser check of the built book can fail: a synthetic site with one good page and
one page with every fault it looks for (math MathJax cannot parse, an untypeset math node,
images that do not load, a request to the network, a JavaScript exception, a console error)."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import sys

import pytest

from multisource.paths import BOOK_DIR, REPO_ROOT

SPEC = importlib.util.spec_from_file_location("browser_check",
                                              REPO_ROOT / "scripts" / "browser_check.py")
browser_check = importlib.util.module_from_spec(SPEC)
sys.modules["browser_check"] = browser_check  # dataclasses look their module up there
SPEC.loader.exec_module(browser_check)

CHROMIUM = browser_check.find_browser(None)
MATHJAX = BOOK_DIR / "_mathjax" / "mathjax"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAW"
                       "jR9awAAAABJRU5ErkJggg==")
HEAD = ('<html><head><script>MathJax = {options: {processHtmlClass: "math"}};</script>'
        '<script defer src="mathjax/tex-mml-chtml.js"></script></head>'
        '<body class="tex2jax_ignore">')


@pytest.mark.skipif(CHROMIUM is None or not MATHJAX.is_dir(),
                    reason="needs chromium (make test installs it) and vendored MathJax")
def test_browser_check_passes_a_good_page_and_names_every_fault(tmp_path) -> None:
    site = tmp_path / "html"
    (site / "sub").mkdir(parents=True)
    shutil.copytree(MATHJAX, site / "mathjax")
    (site / "dot.png").write_bytes(PNG)
    (site / "good.html").write_text(
        HEAD + '<p><span class="math">\\(x^2 + \\frac{1}{2}\\)</span></p>'
        '<img src="dot.png"></body></html>')
    (site / "sub" / "bad.html").write_text(
        HEAD.replace('src="mathjax', 'src="../mathjax') +
        '<p><span class="math">\\(\\frac{1}\\)</span></p>'
        '<p><span class="math"></span></p>'
        '<img src="missing.png"><img src="https://example.org/remote.png">'
        '<script>notDefinedAnywhere();</script><script>console.error("boom")</script>'
        '</body></html>')
    (site / "_static").mkdir()
    (site / "_static" / "fragment.html").write_text("<script>broken(</script>")  # not a page

    reports = {r.page: r for r in browser_check.check_site(site, CHROMIUM)}
    assert set(reports) == {"good.html", "sub/bad.html"}
    good, bad = reports["good.html"], reports["sub/bad.html"]
    assert good.problems == [] and good.math_nodes == 1 and good.images == 1
    found = "\n".join(bad.problems)
    for fragment in ("MathJax error", "math not typeset", "image not loaded: missing.png",
                     "image not loaded: https://example.org/remote.png",
                     "request leaves the build folder: https://example.org/remote.png",
                     "notDefinedAnywhere", "console error: boom"):
        assert fragment in found, found


def test_only_files_inside_the_build_folder_are_local(tmp_path) -> None:
    inside = (tmp_path / "a.js").as_uri()
    assert browser_check._inside(inside, tmp_path)
    assert browser_check._inside("data:image/png;base64,xyz", tmp_path)
    assert not browser_check._inside((tmp_path.parent / "b.js").as_uri(), tmp_path)
    assert not browser_check._inside("https://unpkg.com/thebe", tmp_path)
