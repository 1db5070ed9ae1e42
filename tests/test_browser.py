"""End to end in a real browser: headless Chromium (Debian's package) drives tests/browser_app.py.

uvicorn serves the app on 127.0.0.1; Selenium drives Debian's ``chromium`` through Debian's
``chromedriver``, both given by path, so Selenium Manager never looks for (or downloads) a
driver. The browser resolves one made-up name, ``insecure.test``, to 127.0.0.1 and no other
name at all: nothing leaves the machine. Chromium treats 127.0.0.1 and ``localhost`` as
secure contexts even over plain http, so the ``Secure`` check uses ``insecure.test``; the two
loopback names are two different sites for the SameSite check.

A missing browser fails the module (it is not skipped): install it with
``bash scripts/install-servers.sh``. Every wait is a ``WebDriverWait`` on a condition.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser_app import MAX_COOKIE_SIZE, SECRET_KEY, VISIBLE_COOKIE, blob
from tests.helpers import unsign_json
from tests.servers import HOST, serve_uvicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSECURE_HOST = "insecure.test"
WAIT = 20.0
RESOLVER_RULES = f"MAP {INSECURE_HOST} {HOST}, MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE {HOST}"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Serve tests/browser_app.py with uvicorn on 127.0.0.1; yield its port."""
    log_path = tmp_path_factory.mktemp("browser") / "uvicorn.log"
    with serve_uvicorn("tests.browser_app:app", log_path) as chosen:
        yield chosen


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"the browser tests need Chromium and chromedriver, missing: {', '.join(missing)}; "
            "install them with: bash scripts/install-servers.sh",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # we run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
        # insecure.test is 127.0.0.1; every other name (but the loopback ones) resolves to nothing.
        f"--host-resolver-rules={RESOLVER_RULES}",
        f"--user-data-dir={directory / 'profile'}",
    ):
        options.add_argument(argument)
    # A driver given by path means Selenium Manager is never run; were it run anyway, it must
    # neither download anything nor report usage statistics.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(directory / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_AVOID_STATS", "true")
        patch.setenv("SE_OFFLINE", "true")
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            pytest.fail(
                f"Chromium did not start ({exc.msg}); see {directory / 'chromedriver.log'}. "
                "Install or repair it with: bash scripts/install-servers.sh",
                pytrace=False,
            )
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chrome(browser: webdriver.Chrome) -> webdriver.Chrome:
    """The browser, with no cookie left from an earlier test."""
    browser.execute_cdp_cmd("Storage.clearCookies", {})
    assert all_cookies(browser) == []
    return browser


# -- helpers ------------------------------------------------------------------------------------


def all_cookies(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Every cookie the browser holds, for every host and path (WebDriver shows one page's only)."""
    cookies: list[dict[str, Any]] = driver.execute_cdp_cmd("Storage.getCookies", {})["cookies"]
    return cookies


def cookies_named(driver: webdriver.Chrome, prefix: str, domain: str = HOST) -> dict[str, dict[str, Any]]:
    return {
        cookie["name"]: cookie
        for cookie in all_cookies(driver)
        if cookie["domain"] == domain and cookie["name"].split(".")[0] == prefix
    }


def state(driver: webdriver.Chrome) -> dict[str, Any]:
    """What the server said it received, from the current page's ``<pre id="state">``."""
    element: WebElement = WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "state"))
    )
    shown: dict[str, Any] = json.loads(element.text)
    return shown


def visit(driver: webdriver.Chrome, url: str) -> dict[str, Any]:
    driver.get(url)  # returns once the page has loaded
    return state(driver)


def replaced(old_page: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """A wait condition: the page that held ``old_page`` has been replaced by another.

    ``expected_conditions.staleness_of``, except that chromedriver's answer for an element
    whose document is being torn down ("Node with given id does not belong to the
    document", a plain ``WebDriverException``) counts as stale rather than failing the test.
    """

    def check(driver: webdriver.Chrome) -> bool:
        try:
            old_page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    return check


def click(driver: webdriver.Chrome, element_id: str) -> dict[str, Any]:
    """Click a link or button and wait for the page it leads to."""
    old_page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, WAIT).until(replaced(old_page))
    return state(driver)


def state_in(text: str) -> dict[str, Any]:
    """What the server said it received, from a page fetched without the browser."""
    match = re.search(r'<pre id="state">(.*?)</pre>', text)
    assert match is not None, text
    shown: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return shown


def origin(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}"


# -- the tests ------------------------------------------------------------------------------------


def test_session_cookie_is_hidden_from_page_scripts(chrome: webdriver.Chrome, port: int) -> None:
    shown = visit(chrome, f"{origin(port)}/lax/login?user=alice")
    assert shown["session"] == {"user": "alice"}
    assert visit(chrome, f"{origin(port)}/lax/whoami")["session"] == {"user": "alice"}

    visible = chrome.execute_script("return document.cookie")
    # The page's scripts see the ordinary cookie set beside the session, but not the session.
    assert f"{VISIBLE_COOKIE}=yes" in visible
    assert "session" not in visible
    session = cookies_named(chrome, "session")["session"]
    assert session["httpOnly"] is True
    # Nor can a script overwrite it: document.cookie writes cannot touch an HttpOnly cookie.
    chrome.execute_script("document.cookie = 'session=forged; path=/lax'")
    assert cookies_named(chrome, "session")["session"]["value"] == session["value"]
    assert visit(chrome, f"{origin(port)}/lax/whoami")["session"] == {"user": "alice"}


def test_strict_cookie_is_not_sent_on_a_cross_site_navigation(chrome: webdriver.Chrome, port: int) -> None:
    site = origin(port)
    other_site = origin(port, "localhost")
    visit(chrome, f"{site}/strict/login?user=alice")
    visit(chrome, f"{site}/lax/login?user=bob")
    typed = visit(chrome, f"{site}/strict/whoami")  # typed into the address bar: sent
    assert "strict_session" in typed["cookies"]
    assert typed["session"] == {"user": "alice"}
    assert cookies_named(chrome, "strict_session")["strict_session"]["sameSite"] == "Strict"

    # From a page on another site (localhost), a link back to 127.0.0.1.
    visit_links = f"{other_site}/links?to={site}"
    chrome.get(visit_links)
    crossed = click(chrome, "strict")
    assert crossed["host"] == HOST
    assert crossed["path"] == "/strict/whoami"
    assert "strict_session" not in crossed["cookies"]
    assert crossed["session"] == {}

    # The same cross-site link to the SameSite=Lax session carries its cookie.
    chrome.get(visit_links)
    lax = click(chrome, "lax")
    assert "session" in lax["cookies"]
    assert lax["session"] == {"user": "bob"}

    # And from a page on the same site, the strict cookie is sent again: it was never lost.
    chrome.get(f"{site}/links?to={site}")
    same_site = click(chrome, "strict")
    assert "strict_session" in same_site["cookies"]
    assert same_site["session"] == {"user": "alice"}


def test_large_cookie_session_survives_round_trips_in_chunks(chrome: webdriver.Chrome, port: int) -> None:
    size = 7500  # about 10 KB once serialized, base64-encoded and signed
    expected = {"length": size, "sha256": hashlib.sha256(blob(size).encode()).hexdigest()}
    shown = visit(chrome, f"{origin(port)}/lax/fill?size={size}")
    assert shown["session"] == {"blob": expected}

    chunks = cookies_named(chrome, "session")
    names = sorted(chunks)
    assert names[0] == "session"
    count = len(names) - 1
    assert count >= 3, names
    assert chunks["session"]["value"] == f"chunks.{count}"
    assert names[1:] == sorted(f"session.{index}" for index in range(1, count + 1))
    total = sum(len(cookie["value"]) for name, cookie in chunks.items() if name != "session")
    assert 10_000 <= total <= MAX_COOKIE_SIZE, total
    assert all(cookie["httpOnly"] and cookie["path"] == "/lax" for cookie in chunks.values())

    for bumps in range(1, 5):
        shown = click(chrome, "bump")
        # The server joined every chunk the browser sent back, intact.
        assert shown["session"] == {"blob": expected, "bumps": bumps}
        assert sorted(name for name in shown["cookies"] if name.startswith("session")) == names
        # Each answer rewrote the chunks; the browser still holds exactly one set of them.
        assert sorted(cookies_named(chrome, "session")) == names

    shown = visit(chrome, f"{origin(port)}/lax/logout")
    assert shown["session"] == {}
    assert cookies_named(chrome, "session") == {}, "logout must expire the cookie and every chunk"
    after = visit(chrome, f"{origin(port)}/lax/whoami")
    assert [name for name in after["cookies"] if name.startswith("session")] == []
    assert after["session"] == {}


def test_secure_cookie_is_not_stored_over_plain_http(chrome: webdriver.Chrome, port: int) -> None:
    url = f"{origin(port, INSECURE_HOST)}/secure/login?user=alice"
    # The server does send it, with the Secure attribute.
    with httpx.Client(timeout=10.0) as client:
        sent = client.get(f"{origin(port)}/secure/login?user=alice").headers.get_list("set-cookie")
    assert any(value.startswith("secure_session=") and "; secure" in value for value in sent), sent

    shown = visit(chrome, url)
    assert shown["host"] == INSECURE_HOST
    assert shown["session"] == {"user": "alice"}
    # The ordinary cookie of the same response was stored; the Secure one was refused.
    assert cookies_named(chrome, VISIBLE_COOKIE, INSECURE_HOST)
    assert cookies_named(chrome, "secure_session", INSECURE_HOST) == {}
    again = visit(chrome, f"{origin(port, INSECURE_HOST)}/secure/whoami")
    assert again["cookies"] == [VISIBLE_COOKIE]
    assert again["session"] == {}

    # 127.0.0.1 counts as a secure context even over http: there the same cookie is kept,
    # which shows that the refusal above is the browser applying Secure.
    visit(chrome, f"{origin(port)}/secure/login?user=alice")
    assert set(cookies_named(chrome, "secure_session")) == {"secure_session"}
    assert visit(chrome, f"{origin(port)}/secure/whoami")["session"] == {"user": "alice"}


def server_session_id(driver: webdriver.Chrome) -> str:
    cookie = cookies_named(driver, "server_session")["server_session"]
    session_id: str = unsign_json(cookie["value"], SECRET_KEY)["_cssid"]
    return session_id


def test_server_side_login_gets_a_new_id_that_the_browser_keeps(chrome: webdriver.Chrome, port: int) -> None:
    site = origin(port)
    assert visit(chrome, f"{site}/server/count")["session"] == {"count": 1}
    anonymous_cookie = cookies_named(chrome, "server_session")["server_session"]["value"]
    anonymous = server_session_id(chrome)

    visit(chrome, f"{site}/server/form")
    chrome.find_element(By.ID, "user").send_keys("alice")
    shown = click(chrome, "submit")  # POST /server/signin, then 303 to /server/whoami
    assert shown["path"] == "/server/whoami"
    assert shown["session"] == {"count": 1, "user": "alice"}
    logged_in = server_session_id(chrome)
    assert logged_in != anonymous

    for count in (2, 3):
        shown = visit(chrome, f"{site}/server/count")
        assert shown["session"] == {"count": count, "user": "alice"}
        assert server_session_id(chrome) == logged_in, "the browser must keep the new id"

    # The id from before the login opens nothing any more.
    with httpx.Client(timeout=10.0) as client:
        response = client.get(
            f"{site}/server/whoami", headers={"Cookie": f"server_session={anonymous_cookie}"}
        )
    assert state_in(response.text)["session"] == {}

    assert visit(chrome, f"{site}/server/logout")["session"] == {}
    assert cookies_named(chrome, "server_session") == {}
    assert visit(chrome, f"{site}/server/whoami")["session"] == {}


@pytest.fixture
def demo_port(tmp_path: Path) -> Iterator[int]:
    """Serve examples/demo.py with uvicorn, its data (secret, session files) under ``tmp_path``."""
    log_path = tmp_path / "uvicorn.log"
    env = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "SESSION_DIR")}
    env["DEMO_DATA_DIR"] = str(tmp_path / "demo-data")
    with serve_uvicorn("examples.demo:app", log_path, env=env) as chosen:
        yield chosen


def panel(driver: webdriver.Chrome, report_id: str, field: str) -> str:
    """The text of one field (``set-cookie``, ``session-id``...) of a report in the demo's panel."""
    element: WebElement = WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"#{report_id} .{field}"))
    )
    return element.text


def test_demo_panel_shows_the_set_cookie_of_a_change_and_none_on_a_reload(
    chrome: webdriver.Chrome, demo_port: int
) -> None:
    no_change = "none: the session did not change"
    chrome.get(f"{origin(demo_port)}/cart")
    assert panel(chrome, "report-current", "set-cookie") == no_change
    assert cookies_named(chrome, "session") == {}

    chrome.find_element(By.ID, "item").send_keys("apple")
    old_page = chrome.find_element(By.TAG_NAME, "html")
    chrome.find_element(By.ID, "add").click()  # POST /cart, then 303 to GET /cart
    WebDriverWait(chrome, WAIT).until(replaced(old_page))
    sent = panel(chrome, "report-previous", "set-cookie")
    assert sent.startswith("session="), sent
    assert "httponly" in sent
    assert panel(chrome, "report-previous", "session-id").startswith("new: ")
    assert "file.create(" in panel(chrome, "report-previous", "store-calls")
    assert panel(chrome, "report-current", "set-cookie") == no_change
    cookie = cookies_named(chrome, "session")["session"]["value"]
    assert cookie[:6] + "…" in sent
    assert cookie not in chrome.page_source, "the page must not show the session cookie's value"
    assert "<li>apple</li>" in chrome.page_source

    chrome.refresh()  # a plain reload: the session is read, not changed
    assert panel(chrome, "report-current", "set-cookie") == no_change
    assert chrome.find_elements(By.ID, "report-previous") == []
    assert panel(chrome, "report-current", "store-calls").startswith("file.read(")
    assert "<li>apple</li>" in chrome.page_source
    assert cookies_named(chrome, "session")["session"]["value"] == cookie


def test_demo_signs_another_device_out_from_where_youre_signed_in(
    chrome: webdriver.Chrome, demo_port: int
) -> None:
    site = origin(demo_port)
    with httpx.Client(base_url=site, headers={"User-Agent": "Other-Device/1.0"}, timeout=10.0) as other:
        # Another device (outside the browser) logs in as alice.
        assert "Hello, alice." in other.post("/login", data={"user": "alice"}, follow_redirects=True).text
        other_cookie = other.cookies["session"]

        # So does the browser, which then opens the page of its sessions.
        chrome.get(f"{site}/")
        chrome.find_element(By.ID, "user").send_keys("alice")
        old_page = chrome.find_element(By.TAG_NAME, "html")
        chrome.find_element(By.ID, "login").click()
        WebDriverWait(chrome, WAIT).until(replaced(old_page))
        assert "Hello, alice." in chrome.page_source
        old_page = chrome.find_element(By.TAG_NAME, "html")
        chrome.find_element(By.ID, "where").click()
        WebDriverWait(chrome, WAIT).until(replaced(old_page))

        devices = chrome.find_elements(By.CSS_SELECTOR, "#devices tr.device")
        assert len(devices) == 2
        (this,) = chrome.find_elements(By.CSS_SELECTOR, "#devices tr.device.current")
        assert "this device" in this.text
        assert "HeadlessChrome" in this.text
        (row,) = [device for device in devices if "Other-Device/1.0" in device.text]
        assert "this device" not in row.text
        assert other_cookie not in chrome.page_source

        old_page = chrome.find_element(By.TAG_NAME, "html")
        row.find_element(By.CSS_SELECTOR, "button.sign-out").click()  # POST, then 303 to the list
        WebDriverWait(chrome, WAIT).until(replaced(old_page))
        assert chrome.find_element(By.ID, "notice").text == "Signed out of 1 other session(s)."
        remaining = chrome.find_elements(By.CSS_SELECTOR, "#devices tr.device")
        assert [device.get_attribute("class") for device in remaining] == ["device current"]
        assert chrome.find_elements(By.ID, "sign-out-others") == []

        # The other device's next request is anonymous; the browser is still logged in.
        assert "You are not logged in." in other.get("/").text
        chrome.get(f"{site}/")
        assert "Hello, alice." in chrome.page_source
