"""The web page in a real browser (headless Chromium through Selenium and Debian's chromium-driver): search,
open an article, compare two wordings of art. 135 CE, escaping of law text, keyboard and phone use; what a lawyer
reads (short citations, Spanish dates, the apartado that matched with its cuts marked, the law's own order in the
Índice, details read from a PDF) and how they move (previous/next unit, a result count, more results, a "no good
match" signal). Plus the page routes, the CSP header, diffs and the change feed over HTTP without a browser."""

from __future__ import annotations

import os
import re
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
# The norm that gave art. 135 CE its 2011 wording, by its title and first words, so the index knows its name
REFORM = """Reforma del artículo 135 de la Constitución Española, de 27 de septiembre de 2011. BOE-A-2011-15210
Artículo único.
El artículo 135 de la Constitución Española queda redactado como sigue: …
"""
PHONE = (390, 844)
TOKEN = "kX9-open-sesame-2099-tok"


@pytest.fixture(scope="module")
def site_index(tmp_path_factory, tiny_model) -> Path:
    """The Constitution's API XML (every wording; no title), the LAU and the LPAC from their consolidated PDFs,
    the 2011 reform of art. 135 CE and a law with hostile text."""
    if not (CORPORA / "xml" / "BOE-A-1978-31229.texto.xml").exists():
        pytest.skip(f"real BOE corpus not found at {CORPORA}")
    folder = tmp_path_factory.mktemp("web")
    (folder / "BOE-A-2099-9.txt").write_text(HOSTILE, encoding="utf-8")
    (folder / "BOE-A-2011-15210.txt").write_text(REFORM, encoding="utf-8")
    sources = [
        str(CORPORA / "xml" / "BOE-A-1978-31229.texto.xml"),
        str(CORPORA / "pdf" / "BOE-A-1994-26003.pdf"),
        str(CORPORA / "pdf" / "BOE-A-2015-10565.pdf"),
        str(CORPORA / "xml" / "BOE-A-1989-22056.xml"),  # an older law: "Art. 2.º"
        str(folder / "BOE-A-2011-15210.txt"),
        str(folder / "BOE-A-2099-9.txt"),
    ]
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
    assert ">Art. 135 CE</a>" in page.text and '<span class="badge">cita</span>' in page.text
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
    assert bad.status_code == 400 and "«Desde» no es una fecha válida" in bad.text
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


def _serve(site_index: Path, token: str | None = None):
    """`serve` of the site's index on a free loopback port, in a thread: (its URL, the uvicorn server)."""
    import uvicorn

    from legalsearch.server import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(LegalSearch.open(site_index), token=token), host="127.0.0.1",
                                           port=port, log_level="error"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def site(site_index):
    url, server, thread = _serve(site_index)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def guarded_site(site_index):
    """The site served with a token (a browser gives it as the password)."""
    url, server, thread = _serve(site_index, token=TOKEN)
    yield url
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


def _texts(browser, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]


def _top_of_index(browser) -> list[str]:
    script = "return Array.from(document.querySelectorAll('.toc > li')).map(li => li.firstElementChild.textContent)"
    return browser.execute_script(script)


def test_at_phone_width_the_search_page_fits_the_screen(site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(*PHONE)
    try:
        browser.get(site + "/?q=plazo&modo=lexical")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        width = browser.execute_script("return window.innerWidth")
        for name in ("fecha", "ley", "rango", "modo"):
            box = browser.find_element(By.NAME, name)
            assert box.is_displayed() and box.rect["x"] >= 0 and box.rect["x"] + box.rect["width"] <= width, name
        options = _texts(browser, "select[name=ley] option")
        assert "LPAC · Ley 39/2015" in options and max(len(o) for o in options) <= 48, "short names, not titles"
    finally:
        browser.set_window_size(1100, 900)


def test_the_index_keeps_the_laws_own_order(site, browser) -> None:
    browser.get(site + "/ley/BOE-A-1978-31229")  # API XML
    top = _top_of_index(browser)
    assert top[0] == "Preámbulo" and top[1] == "TÍTULO PRELIMINAR", "no empty bullet, nothing before the Título"
    assert top.index("TÍTULO X. De la reforma constitucional") < top.index("Disposición adicional primera.")
    assert top[-1] == "Disposición final.", "the disposiciones where the law puts them, after the articles"
    browser.get(site + "/ley/BOE-A-2015-10565")  # PDF
    top = _top_of_index(browser)
    assert top[:2] == ["Preámbulo", "TÍTULO PRELIMINAR. Disposiciones generales"]
    assert "Disposición final" not in top, "no unit made of the preámbulo's sections V on"


def test_a_law_from_a_pdf_shows_what_its_first_page_says(site, browser, client) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/ley/BOE-A-2015-10565")
    assert browser.find_element(By.TAG_NAME, "h1").text == (
        "Ley 39/2015, de 1 de octubre, del Procedimiento Administrativo Común de las Administraciones Públicas (LPAC)"
    ), "no doubled period before the short name"
    meta = dict(zip(_texts(browser, ".meta dt"), _texts(browser, ".meta dd"), strict=True))
    assert meta["Departamento"] == "Jefatura del Estado" and meta["Rango"] == "Ley" and meta["Estado"] == "en vigor"
    assert (meta["Publicación"], meta["Actualizada a"]) == ("2 de octubre de 2015", "6 de noviembre de 2024")
    browser.get(site + "/ley/BOE-A-1978-31229")  # the API's /texto carries no metadata: no row says "desconocido"
    assert "Estado" not in _texts(browser, ".meta dt") and "desconocido" not in browser.page_source
    assert client.get("/").text.count("<option>Ley</option>") == 1, "the Rango filter offers the PDFs' rango"


def test_previous_and_next_unit_on_an_article_page(site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/ley/BOE-A-1978-31229/a135")
    previous = browser.find_element(By.CSS_SELECTOR, ".siblings a[rel=prev]")
    assert previous.text == "← Artículo 134" and previous.get_attribute("href").endswith("/a134")
    browser.find_element(By.CSS_SELECTOR, ".siblings a[rel=next]").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Artículo 136"
    browser.get(site + "/ley/BOE-A-1978-31229/preambulo")
    assert not browser.find_elements(By.CSS_SELECTOR, ".siblings a[rel=prev]")
    assert browser.find_element(By.CSS_SELECTOR, ".siblings a[rel=next]").text == "Artículo 1 →"


def test_a_result_count_and_more_results(site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/?q=plazo&modo=lexical")
    assert browser.find_element(By.CSS_SELECTOR, ".count").text == "Resultados 1–10"
    first_page = _texts(browser, ".hit h2")
    assert len(first_page) == 10 and not browser.find_elements(By.CSS_SELECTOR, ".pages a[rel=prev]")
    browser.find_element(By.CSS_SELECTOR, ".pages a[rel=next]").click()
    assert browser.find_element(By.CSS_SELECTOR, ".count").text == "Resultados 11–20"
    assert browser.find_element(By.CSS_SELECTOR, "ol.hits").get_attribute("start") == "11"
    second_page = _texts(browser, ".hit h2")
    assert second_page and not set(second_page) & set(first_page), "the next ten, not the same ones"
    assert "modo=lexical" in browser.current_url and "pagina=2" in browser.current_url, "the search is kept"
    browser.get(site + "/?q=vacaciones&modo=lexical&ley=BOE-A-2099-9")
    assert browser.find_element(By.CSS_SELECTOR, ".count").text == "1 resultado"
    assert not browser.find_elements(By.CSS_SELECTOR, ".pages")


def test_a_nonsense_question_says_no_good_match(site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/?q=xyzzy+qwerty&modo=hybrid")
    assert browser.find_elements(By.CSS_SELECTOR, ".hit"), "the nearest texts are still listed"
    assert "Ningún resultado responde claramente" in browser.find_element(By.CSS_SELECTOR, ".weak").text
    browser.get(site + "/?q=xyzzy+qwerty&modo=lexical")  # no text holds these words: no hit at all
    assert "ningún texto de este índice responde" in browser.find_element(By.CSS_SELECTOR, ".count").text
    for question in ("artículo 135 CE", "duración mínima del arrendamiento de vivienda"):
        browser.get(site + "/?modo=hybrid&q=" + question)
        assert browser.find_elements(By.CSS_SELECTOR, ".hit") and not browser.find_elements(By.CSS_SELECTOR, ".weak")
    assert "BM25" not in browser.page_source and "Por palabras" in _texts(browser, "select[name=modo] option")


def test_results_read_short_citation_first_and_show_the_apartado_that_matched(site, browser, client) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/?q=duración+mínima+del+arrendamiento+de+vivienda&modo=lexical")
    _shot(browser, "screenshot-search.png")
    first = browser.find_elements(By.CSS_SELECTOR, ".hit")[0]
    assert first.find_element(By.CSS_SELECTOR, "h2").text == "Art. 9 LAU", "the citation, the title after it"
    assert first.find_element(By.CSS_SELECTOR, ".law").text.startswith("Ley 29/1994, de 24 de noviembre")
    lines = [p.text for p in first.find_elements(By.CSS_SELECTOR, ".snippet p")]
    assert "cinco años" in lines[0] and "siete años" in lines[0], "the minimums of the apartado are shown"
    assert lines[-1] == "…", "the apartados left out are marked"
    for hit in browser.find_elements(By.CSS_SELECTOR, ".hit"):  # every cut is marked
        link = hit.find_element(By.CSS_SELECTOR, "h2 a").get_attribute("href").split("/ley/", 1)[1]
        boe_id, unit = link.split("?")[0].split("/")
        text = client.get(f"/laws/{boe_id}/articles/{unit}").json()["text"]
        shown = [p.text for p in hit.find_elements(By.CSS_SELECTOR, ".snippet p")]
        if shown != [p.strip() for p in text.split("\n")]:
            assert any("…" in line for line in shown), f"{link}: cut without a mark"
    browser.get(site + "/?q=artículo+135+CE&modo=lexical&fecha=2005-01-01")  # an earlier wording, dated in words
    assert "Redacción vigente del 29 de diciembre de 1978 al 27 de septiembre de 2011" in _texts(browser, ".hit")[0]


def test_the_comparison_names_the_amending_norm_and_shows_the_text_once(site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site + "/ley/BOE-A-1978-31229/a135?desde=2005-01-01&hasta=2020-01-01")
    said = browser.find_element(By.CSS_SELECTOR, "#diferencias p").text
    assert "dada por la Reforma del artículo 135 de la Constitución Española, de 27 de septiembre de 2011" in said
    assert "29 de diciembre de 1978" in said and "BOE-A-2011-15210" not in said
    assert not browser.find_elements(By.CSS_SELECTOR, "article.text"), "the current text is not repeated"
    first_change = browser.find_element(By.CSS_SELECTOR, ".diff-text del").text
    assert first_change.strip() == "El Gobierno habrá", "one change, not 'El' kept as a stray match"
    timeline = _texts(browser, ".timeline li")
    assert timeline[0].startswith("29 de diciembre de 1978 – 27 de septiembre de 2011 · texto original")
    assert "Reforma del artículo 135" in timeline[1]


def test_with_a_token_a_browser_given_the_password_loads_everything(guarded_site, browser) -> None:
    """A browser gives the token as the password of a page (here in the address, as a bookmark would); what the
    page loads (its CSS; Swagger's files and the schema on /docs) must ask for the same password: they answered
    a Bearer challenge, the browser gave up, and the page came without its CSS."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(guarded_site.replace("http://", f"http://abogada:{TOKEN}@") + "/?q=plazo&modo=lexical")
    assert browser.find_elements(By.CSS_SELECTOR, ".hit")
    assert browser.execute_script("return getComputedStyle(document.querySelector('main')).maxWidth") != "none"
    browser.get(guarded_site + "/docs")
    WebDriverWait(browser, 20).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    assert "/search" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui").text


def test_an_older_laws_units_read_as_it_writes_them(client) -> None:
    """The 1989 diario XML heads its articles "Art. 2.º": the previous/next links and a hit name the article so
    (they read "← Art" and "2.º" as its title)."""
    page = client.get("/ley/BOE-A-1989-22056/a3")
    assert page.status_code == 200
    assert ">← Art. 2.º</a>" in page.text and ">Art. 4.º →</a>" in page.text
    hits = client.get("/", params={"q": "especies objeto de caza", "ley": "BOE-A-1989-22056", "modo": "lexical"})
    assert hits.status_code == 200 and ">Art. 4</a>" in hits.text
    assert not re.search(r'<p class="heading">\d+\.º', hits.text), "an ordinal shown as the article's title"
