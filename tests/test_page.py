"""docs/compatibility.html in a real headless browser (Debian's chromium): rows, filters, expanding cells,
and the page without JavaScript. The screenshot is kept under test-artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO, gpu_record, record
from envcheck.results.publish import write_outputs

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("chromium") is None:
        pytest.fail("the browser tests need Debian's chromium (scripts/setup.sh installs it)")
    docs = tmp_path_factory.mktemp("docs")
    records = [
        record("tf-2.15-cuda12", "ci-cpu", "2026-11-26T10:00:00+00:00"),
        record("tf-2.15-cpu", "ci-cpu", "2026-11-26T10:00:00+00:00"),
        gpu_record("tf-2.15-cuda12", "h100-node", "2026-11-26T11:00:00+00:00"),
        record("tf-2.15-cpu", "h100-node", "2026-11-26T11:00:00+00:00"),
        record(
            "tf-2.17-cuda12", "h100-node", "2026-11-26T11:00:00+00:00", status="build-failed", error="build failed: pip"
        ),
    ]
    return write_outputs(docs, records)[1]


def chromium(*args: str) -> str:
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rows(dom: str) -> dict[str, str]:
    """The grid's rows by stack, each with its class attribute ('' when visible)."""
    found = {}
    for tag in re.findall(r"<tr [^>]*data-stack=[^>]*>", dom):
        cls = re.search(r'class="([^"]*)"', tag)
        found[re.search(r'data-stack="([^"]+)"', tag)[1]] = cls[1] if cls else ""
    return found


class _Cell(HTMLParser):
    """The opening tag and text of one element, found by id, nested tables included."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.tag, self.text = element_id, 0, None, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.depth:
            self.depth += tag == "td"
            self.text.append(f"<{tag}{''.join(f' {k}' for k, _ in attrs)}>")
        elif dict(attrs).get("id") == self.element_id:
            self.depth, self.tag = 1, dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag == "td":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)


def cell_html(dom: str, element_id: str) -> str:
    parser = _Cell(element_id)
    parser.feed(dom)
    return "".join(parser.text)


def test_rows_are_there_and_filters_show(page: Path):
    dom = chromium("--dump-dom", page.as_uri())
    assert rows(dom) == {"tf-2.15-cpu": "", "tf-2.15-cuda12": "", "tf-2.17-cuda12": ""}
    assert '<form class="filters" id="filters">' in dom  # JavaScript unhid the filters


def test_a_filter_hides_rows(page: Path):
    dom = chromium("--dump-dom", page.as_uri() + "?status=gpu")
    assert rows(dom) == {"tf-2.15-cpu": "hidden", "tf-2.15-cuda12": "", "tf-2.17-cuda12": "hidden"}
    dom = chromium("--dump-dom", page.as_uri() + "?host=ci-cpu")
    assert re.search(r'<th data-col="3" data-host="h100-node" class="hidden">', dom)
    assert rows(dom)["tf-2.15-cuda12"] == ""


def test_a_cell_expands_with_diagnoses_and_benchmark(page: Path):
    dom = chromium("--dump-dom", page.as_uri() + "#cell-tf-2.15-cuda12--ci-cpu")
    cell = cell_html(dom, "cell-tf-2.15-cuda12--ci-cpu")
    assert "<details open>" in cell
    assert "no-gpu-runtime" in cell and "Fix:" in cell and "numpy" in cell
    closed = cell_html(dom, "cell-tf-2.15-cuda12--h100-node")
    assert "<details>" in closed and "412" in closed


def test_the_page_works_without_javascript(page: Path):
    # Headless chromium cannot render with scripting off, so read what a browser without JavaScript shows:
    # the page as served. Every row and cell is there, expandable by <details>; only the filters are hidden.
    html = page.read_text()
    assert rows(html) == {"tf-2.15-cpu": "", "tf-2.15-cuda12": "", "tf-2.17-cuda12": ""}
    assert '<form class="filters" id="filters" hidden>' in html
    assert "no-gpu-runtime" in cell_html(html, "cell-tf-2.15-cuda12--ci-cpu")
    assert "<svg" in html and "412 (GPU)" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # no CDN


def test_screenshot(page: Path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "compatibility.png"
    shot.unlink(missing_ok=True)
    chromium("--window-size=1300,1100", f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_framework_filter(tmp_path: Path):
    from conftest import load_json
    from envcheck.results.model import Result

    records = [record("tf-2.15-cuda12", "ci-cpu", "2026-11-26T10:00:00+00:00")] + [
        Result.from_dict(load_json(name)["record"])
        for name in ("probe-torch2.9.1-pypi-no-gpu-runtime.json", "probe-jax0.10.2-cuda12-no-gpu-runtime.json")
    ]
    page = write_outputs(tmp_path, records)[1]
    dom = chromium("--dump-dom", page.as_uri() + "?framework=torch")
    assert rows(dom) == {"tf-2.15-cuda12": "hidden", "torch-2.9-cuda12": "", "jax-0.10-cuda12": "hidden"}
    dom = chromium("--dump-dom", page.as_uri() + "?version=JAX%200.10.2")
    assert rows(dom) == {"tf-2.15-cuda12": "hidden", "torch-2.9-cuda12": "hidden", "jax-0.10-cuda12": ""}
