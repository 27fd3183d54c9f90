"""The web page in a real browser (headless Chromium through Selenium and Debian's chromium-driver): search,
open an article, compare two wordings of art. 135 CE, escaping of law text, keyboard and phone use. Plus the
page routes, the CSP header, diffs and the change feed over HTTP without a browser."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from legalsearch import indexing
from legalsearch.search import LegalSearch

from .conftest import CORPORA

pytest.importorskip("fastapi")
HOSTILE = """Ley 9/2099, de pruebas de escape. BOE-A-2099-9
Artículo 1. Texto hostil.
El trabajador <img src=x onerror=alert(1)> tendrá <script>alert(2)</script> derecho a vacaciones & descanso.
"""


@pytest.fixture(scope="module")
def site_index(tmp_path_factory, tiny_model) -> Path:
    if not (CORPORA / "xml" / "BOE-A-1978-31229.texto.xml").exists():
        pytest.skip(f"real BOE corpus not found at {CORPORA}")
    folder = tmp_path_factory.mktemp("web")
    (folder / "BOE-A-2099-9.txt").write_text(HOSTILE, encoding="utf-8")
    sources = [str(CORPORA / "xml" / "BOE-A-1978-31229.texto.xml"), str(folder / "BOE-A-2099-9.txt")]
    indexing.build(sources, folder / "idx", model=str(tiny_model), dims=[32], history=True, backend="torch",
                   precision="fp32")  # fmt: skip
    return folder / "idx"


@pytest.fixture(scope="module")
def client(site_index):
    from fastapi.testclient import TestClient

    from legalsearch.server import create_app

    return TestClient(create_app(LegalSearch.open(site_index)))


def test_pages_render_escape_and_carry_a_csp(client) -> None:
    started = time.perf_counter()
    page = client.get("/", params={"q": "artículo 135 CE", "modo": "lexical"})
    print(f"search page rendered in {(time.perf_counter() - started) * 1000:.0f} ms (tiny model, lexical, warm)")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "Art. 135 CE · BOE-A-1978-31229" in page.text and '<span class="badge">cita</span>' in page.text
    assert "TÍTULO VII. Economía y Hacienda" in page.text and "https://www.boe.es/buscar/act.php?id=" in page.text
    hostile = client.get("/", params={"q": "vacaciones descanso", "modo": "lexical", "ley": "BOE-A-2099-9"})
    assert "<mark>vacaciones</mark>" in hostile.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile.text and "<img src=x" not in hostile.text
    assert "<script>alert" not in hostile.text
    law = client.get("/ley/BOE-A-1978-31229")
    assert (
        law.status_code == 200
        and "TÍTULO VII. Economía y Hacienda" in law.text
        and "/ley/BOE-A-1978-31229/a135" in law.text
    )
    diff = client.get("/ley/BOE-A-1978-31229/a135", params={"desde": "2005-01-01", "hasta": "2020-01-01"})
    assert "<ins>" in diff.text and "<del>" in diff.text and "BOE-A-2011-15210" in diff.text
    feed = client.get("/cambios", params={"desde": "2011-01-01"})
    assert "Artículo 135" in feed.text and "BOE-A-2011-15210" in feed.text
    assert client.get("/ley/BOE-A-1-1").status_code == 404
    bad = client.get("/ley/BOE-A-1978-31229/a135", params={"desde": "2021-02-30", "hasta": "2022-01-01"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
    assert client.get("/search").status_code == 405, "the JSON API keeps its paths"
    assert client.get("/laws").headers["referrer-policy"] == "no-referrer"


def test_diff_and_changes_over_json(client) -> None:
    diff = client.get("/laws/BOE-A-1978-31229/articles/a135/diff", params={"from": "2005-01-01", "to": "2020-01-01"})
    body = diff.json()
    assert diff.status_code == 200 and body["changed"] and body["to"]["version_norma"] == "BOE-A-2011-15210"
    assert "".join(s["old"] for s in body["spans"]) == body["from"]["text"]
    assert "".join(s["new"] for s in body["spans"]) == body["to"]["text"]
    early = client.get("/laws/BOE-A-1978-31229/articles/a135/diff", params={"from": "1970-01-01", "to": "2020-01-01"})
    assert early.status_code == 400 and "was not in force on 1970-01-01" in early.json()["detail"]
    changes = client.get("/changes", params={"since": "2011-01-01"}).json()
    assert [c["article_id"] for c in changes[0]["changes"]][-1] == "a135"
    assert client.get("/changes", params={"since": "2011-13-01"}).status_code == 422


# --- in a real browser ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(site_index):
    import uvicorn

    from legalsearch.server import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(LegalSearch.open(site_index)), host="127.0.0.1", port=port,
                                           log_level="error"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (dev extra)")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()


def _shot(browser, name: str) -> None:
    folder = os.environ.get("LEGALSEARCH_SCREENSHOTS")  # README's screenshots: set it to docs/
    if folder:
        browser.save_screenshot(str(Path(folder) / name))


def test_search_read_and_compare_in_a_browser(site, browser) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(site + "/")
    assert browser.title.startswith("Buscar")
    Select(browser.find_element(By.NAME, "modo")).select_by_value("lexical")
    box = browser.find_element(By.ID, "q")
    box.send_keys("artículo 135 CE", Keys.ENTER)  # the keyboard submits the form
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".hit")))
    first = browser.find_elements(By.CSS_SELECTOR, ".hit")[0]
    assert "Art. 135 CE" in first.text and "cita" in first.text and "TÍTULO VII" in first.text
    _shot(browser, "screenshot-search.png")
    first.find_element(By.CSS_SELECTOR, "h2 a").click()
    wait.until(ready.presence_of_element_located((By.ID, "redacciones")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Artículo 135"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".timeline li")) == 2
    browser.find_element(By.CSS_SELECTOR, ".diff-form button").click()  # defaults: the first and the last wording
    wait.until(ready.presence_of_element_located((By.ID, "diferencias")))
    assert browser.find_elements(By.CSS_SELECTOR, ".diff-text ins") and browser.find_elements(
        By.CSS_SELECTOR, ".diff-text del"
    )
    assert "desde=1978-12-29" in browser.current_url and "hasta=2011-09-27" in browser.current_url
    browser.set_window_size(390, 844)  # a phone: nothing wider than the screen
    browser.get(browser.current_url)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _shot(browser, "screenshot-diff-phone.png")
    browser.set_window_size(1100, 900)

    browser.get(site + "/ley/BOE-A-2099-9/a1")
    text = browser.find_element(By.CSS_SELECTOR, "article.text").text
    assert "<img src=x onerror=alert(1)>" in text and "<script>alert(2)</script>" in text, "shown as text"
    assert browser.find_elements(By.CSS_SELECTOR, "article.text img, article.text script") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - nothing ran

    browser.get(site + "/")
    assert browser.switch_to.active_element.get_attribute("id") == "q", "the question box has the focus on arrival"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Buscar", "Tab reaches the button"
