"""The real-browser check of the built book can fail: a synthetic site with one good page and
one page with every fault it looks for (math MathJax cannot parse, an untypeset math node,
images that do not load, a request to the network, a JavaScript exception, a console error)."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import sys

import pytest

from multisource.common.paths import BOOK_DIR, REPO_ROOT

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
        '<p>n = &lt;IPython.core.display.Markdown object&gt; points</p>'
        '<pre>&lt;pandas.io.formats.style.Styler at 0x7f2acc266290&gt;</pre>'
        '<a href="https://mybinder.org/v2/gh/executablebooks/jupyter-book/master?urlpath=lab/'
        'tree/notebooks/04_gaussian.ipynb">launch</a>'
        '<a href="https://github.com/our/book/blob/main/notebooks/04_gaussian.ipynb">ours</a>'
        '</body></html>')
    (site / "_static").mkdir()
    (site / "_static" / "fragment.html").write_text("<script>broken(</script>")  # not a page

    reports = {r.page: r for r in browser_check.check_site(site, CHROMIUM,
                                                            "https://github.com/our/book")}
    assert set(reports) == {"good.html", "sub/bad.html"}
    good, bad = reports["good.html"], reports["sub/bad.html"]
    assert good.problems == [] and good.math_nodes == 1 and good.images == 1
    found = "\n".join(bad.problems)
    for fragment in ("MathJax error", "math not typeset", "image not loaded: missing.png",
                     "image not loaded: https://example.org/remote.png",
                     "request leaves the build folder: https://example.org/remote.png",
                     "notDefinedAnywhere", "console error: boom",
                     "Python object shown instead of its value: <IPython.core.display.Markdown "
                     "object>",
                     "Python object shown instead of its value: <pandas.io.formats.style.Styler "
                     "at 0x7f2acc266290>",
                     "link to another repository's notebook: https://mybinder.org/v2/gh/"
                     "executablebooks/jupyter-book/"):
        assert fragment in found, found
    assert "our/book" not in found   # this project's own notebooks may be linked


def test_only_files_inside_the_build_folder_are_local(tmp_path) -> None:
    inside = (tmp_path / "a.js").as_uri()
    assert browser_check._inside(inside, tmp_path)
    assert browser_check._inside("data:image/png;base64,xyz", tmp_path)
    assert not browser_check._inside((tmp_path.parent / "b.js").as_uri(), tmp_path)
    assert not browser_check._inside("https://unpkg.com/thebe", tmp_path)


@pytest.mark.parametrize("text, found", [
    ("n = <IPython.core.display.Markdown object> points", ["<IPython.core.display.Markdown "
                                                           "object>"]),
    ("<function f at 0x7f00aa11>", ["<function f at 0x7f00aa11>"]),
    ("an <object object at 0x7f00aa> here", ["<object object at 0x7f00aa>"]),
    ("if a < b and the object > c, at 0 x", []),
    ("TV(p, q) <= 1 for every object", []),
])
def test_object_reprs_are_found_in_page_text(text, found) -> None:
    assert browser_check.object_reprs(text) == found


def test_links_to_another_repositorys_notebooks() -> None:
    links = ["https://mybinder.org/v2/gh/executablebooks/jupyter-book/master?urlpath=lab/tree/"
             "notebooks/x.ipynb",
             "https://colab.research.google.com/github/executablebooks/jupyter-book/blob/master/"
             "notebooks/x.ipynb",
             "https://github.com/our/book/blob/main/notebooks/x.ipynb",
             "https://mybinder.org/v2/gh/Our/Book/main?urlpath=lab/tree/notebooks/x.ipynb",
             "file:///site/_sources/x.ipynb", "https://example.org/paper.pdf"]
    assert browser_check.foreign_notebook_links(links, "https://github.com/our/book") == \
        links[:2]
    # no public home yet: every link to a notebook elsewhere is foreign
    assert browser_check.foreign_notebook_links(links, None) == links[:4]


def test_the_repository_is_read_from_the_book_config(tmp_path) -> None:
    config = tmp_path / "_config.yml"
    config.write_text("title: x\nrepository:\n  branch: main\n  url: https://github.com/a/b"
                      "  # ours\nhtml:\n  url: https://elsewhere\n")
    assert browser_check.configured_repository(config) == "https://github.com/a/b"
    config.write_text("title: x\nhtml:\n  url: https://elsewhere\n")
    assert browser_check.configured_repository(config) is None
