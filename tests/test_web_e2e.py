"""End to end in a real headless Chromium against a real `python -m botlite serve`.

One browser and one server for the module; the tests run in order and build on
each other like a user's first session: log in, create a bot, feed it, chat,
watch the tasks, fix a failed one, change the schedule, embed the widget.
Screenshots of every page go to $BOTLITE_SCREENSHOT_DIR (default
test-artifacts/screenshots/).
"""
import http.server
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

import botlite

from conftest import SERVICES_REQUIRED

CHROMIUM = os.environ.get("BOTLITE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BOTLITE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENSHOTS = os.environ.get("BOTLITE_SCREENSHOT_DIR",
                             os.path.join(ROOT, "test-artifacts", "screenshots"))
WAIT = 20

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None


def _require_browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if webdriver is None:
        missing.append("the selenium package")
    if not missing:
        return
    message = "end-to-end tests need %s (apt-get install chromium chromium-driver)" % \
        ", ".join(missing)
    if SERVICES_REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


class Site:
    """Another web site on another port: a docs page that is down until fixed, and
    a page that embeds the widget."""

    def __init__(self):
        self.docs_up = False
        self.embed_html = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/docs/" and site.docs_up:
                    self._send(200, DOCS_PAGE)
                elif self.path == "/embed.html":
                    self._send(200, site.embed_html)
                else:
                    self._send(404, "<html><body>not found</body></html>")

            def _send(self, status, html):
                body = html.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


DOCS_PAGE = """<html><head><title>Shipping guide</title></head><body><main>
<h1>Shipping</h1><p>Parcels to Norway are shipped with Posten and arrive within four
working days. Express shipping to Norway costs twelve euros.</p></main></body></html>"""

GUIDE = """Opening hours

The Oslo office opens at nine in the morning and closes at five in the afternoon.
On Saturdays the office opens at ten. The office is closed on Sundays.

Parking

Visitors park for free in the garage under the building; ask the front desk for a
parking ticket.
"""


class Server:
    def __init__(self, data_dir, log_path):
        self.log = open(log_path, "w")
        env = dict(os.environ, BOTLITE_ALLOW_PRIVATE_URLS="1", BOTLITE_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "botlite", "serve", "--port", "0", "--data-dir", data_dir],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout],
                         daemon=True).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                match = re.search(r"is ready: (http://\S+)", lines.get(timeout=0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError("serve exited: %s" % open(log_path).read())
                continue
            if match:
                self.login_url = match.group(1)
                self.base, self.token = re.match(r"(http://[^/]+)/\?token=(\S+)$",
                                                 self.login_url).groups()
                return
        raise AssertionError("serve printed no URL")

    def api(self, method, path, **kwargs):
        response = requests.request(method, self.base + path, timeout=10, headers={
            "Authorization": "Bearer " + self.token}, **kwargs)
        response.raise_for_status()
        return response.json()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    folder = tmp_path_factory.mktemp("e2e")
    data_dir = folder / "data"
    data_dir.mkdir()
    running = Server(str(data_dir), str(folder / "serve.log"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def site():
    other = Site()
    yield other
    other.close()


@pytest.fixture(scope="module")
def browser(server):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--disable-extensions",
                     "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def evidence_of_failure(request, browser):
    """After a failing test: the page as the browser had it, its source and console."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        name = "FAILED-" + request.node.name
        browser.save_screenshot(os.path.join(SCREENSHOTS, name + ".png"))
        with open(os.path.join(SCREENSHOTS, name + ".txt"), "w") as handle:
            handle.write("URL: %s\n\n%s\n\nconsole:\n%s\n" % (
                browser.current_url, browser.page_source,
                "\n".join(str(entry) for entry in browser.get_log("browser"))))


def shot(driver, name):
    """A full-page screenshot: the window grows to the page's height first."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height + 140, 700), 4000))
    driver.save_screenshot(os.path.join(SCREENSHOTS, name + ".png"))
    driver.set_window_size(width, 900)


def wait(driver, condition, message, timeout=WAIT):
    # A page being replaced makes chromedriver raise about elements it just had
    # (stale elements, "node does not belong to the document"): poll again.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[WebDriverException]).until(
        lambda d: condition(d), message=message)


def click_and_wait_for_reload(driver, element, message):
    """Click something that reloads the page, and wait for the new page: a mark
    left on the old page's window is gone, and the new one has loaded."""
    driver.execute_script("window.botliteOldPage = true")
    element.click()

    def reloaded(d):
        try:
            return d.execute_script("return !window.botliteOldPage && "
                                    "document.readyState === 'complete'")
        except WebDriverException:  # mid-navigation: no page to ask yet
            return False
    wait(driver, reloaded, message)


def find(driver, css):
    """The first element matching ``css``, once there is one (pages may still load)."""
    return wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, css), "an element " + css)[0]


def text_of(driver, css):
    return find(driver, css).text


def no_alert(driver):
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_log_in_with_the_printed_token_url(server, browser):
    browser.get(server.base + "/tasks")
    assert browser.current_url.startswith(server.base + "/login")
    shot(browser, "00-login")
    browser.get(server.login_url)
    assert browser.current_url == server.base + "/"
    assert text_of(browser, "h1") == "Chatbots"
    assert "Default bot" in text_of(browser, "table")
    cookie = browser.get_cookie("botlite_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_create_a_bot(server, browser):
    browser.get(server.base + "/")
    find(browser, "#new-bot-name").send_keys("Help Desk")
    find(browser, "#new-bot-greeting").send_keys("Hi! Ask me about the office.")
    shot(browser, "01-home")
    find(browser, "#new-bot button[type=submit]").click()
    wait(browser, lambda d: d.current_url == server.base + "/bots/help-desk",
         "the new bot's page")
    assert "No sources yet" in text_of(browser, "#sources-table")


def test_upload_a_file_and_watch_its_progress_bar_reach_ready(server, browser, tmp_path):
    guide = tmp_path / "office-guide.txt"
    guide.write_text(GUIDE)
    find(browser, "#upload-file").send_keys(str(guide))
    row = "#sources-table tr[data-status]"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the source's row")
    wait(browser, lambda d: find(d, row).get_attribute("data-status") == "ready",
         "the source to become ready without a reload")
    progress = find(browser, row + " progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")
    assert "ready" in text_of(browser, row)
    assert "office-guide" in text_of(browser, row)
    assert "Uploaded office-guide.txt" in text_of(browser, ".upload-status")
    shot(browser, "02-bot-knowledge")


def test_drop_a_file_onto_the_page(server, browser):
    browser.execute_script("""
        var zone = document.querySelector('.dropzone');
        var data = new DataTransfer();
        data.items.add(new File(['Lost property is kept at the front desk for a month.'],
                                'lost-property.txt', {type: 'text/plain'}));
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
    """)
    ready = '#sources-table tr[data-status="ready"]'
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ready)) == 2,
         "the dropped file to become ready")
    assert "lost-property.txt" in text_of(browser, "#sources-table")


def test_ask_a_question_and_follow_the_citation(server, browser):
    browser.get(server.base + "/bots/help-desk/playground")
    assert "Hi! Ask me about the office." in text_of(browser, "#playground .log")
    find(browser, "#message").send_keys("When does the Oslo office open on Saturdays?")
    find(browser, "form.ask button").click()
    answer = "#playground li.msg.bot:last-child"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, answer + " .citations a"),
         "an answer with a citation")
    reply = text_of(browser, answer)
    assert "ten" in reply
    assert "source knowledge" in reply and "confidence" in reply and "intent" in reply
    shot(browser, "03-playground")
    find(browser, answer + " .citations a").click()
    wait(browser, lambda d: "/bots/help-desk/sources/" in d.current_url, "the cited source")
    assert "Saturdays the office opens at ten" in text_of(browser, "ol.chunks")
    shot(browser, "04-source")


def test_the_conversation_is_listed_with_its_transcript(server, browser):
    browser.get(server.base + "/bots/help-desk/conversations")
    shot(browser, "05-conversations")
    find(browser, "table tbody a").click()
    assert "When does the Oslo office open on Saturdays?" in text_of(browser, "ol.log")
    shot(browser, "06-transcript")


def test_analytics_charts(server, browser):
    browser.get(server.base + "/bots/help-desk/analytics?period=7d")
    assert text_of(browser, "#total-messages") == "1"
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 5 and all(chart.is_displayed() for chart in charts)
    assert "knowledge" in text_of(browser, "main")  # the answer source
    assert "When does the Oslo office open on Saturdays?" in text_of(browser, "main")
    shot(browser, "19-analytics")


def test_faqs_and_intents_can_be_added(server, browser):
    browser.get(server.base + "/bots/help-desk/faqs")
    find(browser, "#faq-question").send_keys("Is there parking?")
    find(browser, "#faq-answer").send_keys("Yes, free parking in the garage.")
    find(browser, "#new-faq button[type=submit]").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "ul.faqs li"), "the FAQ")
    find(browser, "#intent-name").send_keys("wifi")
    find(browser, "#intent-examples").send_keys("what is the wifi password\nwifi code")
    find(browser, "#intent-responses").send_keys("The wifi password is on the front desk.")
    find(browser, "#new-intent button[type=submit]").click()
    wait(browser, lambda d: "wifi" in text_of(d, "main"), "the intent")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[id^=intent-]"), "the intent")
    shot(browser, "07-faqs")


def test_the_task_shows_in_the_monitor(server, browser):
    browser.get(server.base + "/tasks")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-name="process_document"]')
    assert row.get_attribute("data-status") == "SUCCESS"
    assert "documents" in text_of(browser, "table.queues")
    assert find(browser, "svg.chart").is_displayed()
    shot(browser, "08-tasks")
    row.find_element(By.CSS_SELECTOR, "a").click()
    wait(browser, lambda d: "/tasks/" in d.current_url, "the task's page")
    assert "process_document" in text_of(browser, "h1") and "SUCCESS" in text_of(browser, "h1")
    shot(browser, "09-task")


def test_retry_a_failed_task_after_fixing_its_cause(server, browser, site):
    browser.get(server.base + "/bots/help-desk")
    find(browser, "#url").send_keys(site.base + "/docs/")
    depth = find(browser, "#max-depth")
    depth.clear()
    depth.send_keys("0")
    find(browser, "#add-url button[type=submit]").click()
    failed = '#sources-table tr[data-status="failed"]'
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, failed), "the crawl to fail")
    assert "HTTP 404" in text_of(browser, failed)

    browser.get(server.base + "/tasks?status=FAILURE")
    item = find(browser, "ul.failed li")
    assert "scrape_website" in item.text and "HTTP 404" in item.text
    item.find_element(By.CSS_SELECTOR, "summary").click()
    assert "Traceback" in item.find_element(By.CSS_SELECTOR, "pre").text
    shot(browser, "10-tasks-failed")
    task_id = item.get_attribute("id").split("-", 1)[1]

    site.docs_up = True
    item.find_element(By.CSS_SELECTOR, "button").click()
    wait(browser, lambda d: server.api("GET", "/api/tasks/" + task_id)["status"] == "SUCCESS",
         "the retried task to succeed")
    browser.get(server.base + "/tasks/" + task_id)
    assert "SUCCESS" in text_of(browser, "h1")
    browser.get(server.base + "/bots/help-desk")
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, failed) and
         "Shipping guide" in text_of(d, "#sources-table"), "the website source to be ready")


def test_edit_a_crontab_with_its_preview_and_disable_a_job(server, browser):
    browser.get(server.base + "/schedule")
    job, runs = "#job-resync_websites", "#runs-resync_websites li"
    cron = find(browser, "#cron-resync_websites")
    cron.clear()
    cron.send_keys("61 * * * *")
    wait(browser, lambda d: "not a valid crontab" in text_of(d, "#runs-resync_websites"),
         "the preview to explain the mistake")
    cron.clear()
    cron.send_keys("15 */6 * * *")

    def previewed(d):
        times = [li.text for li in d.find_elements(By.CSS_SELECTOR, runs)]
        return len(times) == 5 and all(re.search(r"T(00|06|12|18):15:00Z$", t) for t in times)
    wait(browser, previewed, "five next runs at :15 every 6 hours")
    shot(browser, "17-schedule-preview")
    click_and_wait_for_reload(browser, find(browser, job + " button[type=submit]"),
                              "the crontab to be saved")
    assert server.api("GET", "/api/schedule/resync_websites")["crontab"] == "15 */6 * * *"
    assert find(browser, "#cron-resync_websites").get_attribute("value") == "15 */6 * * *"
    click_and_wait_for_reload(browser, find(browser, job + " button.danger"),
                              "the job to be disabled")
    assert find(browser, job).get_attribute("data-enabled") == "false"
    assert server.api("GET", "/api/schedule/resync_websites")["enabled"] is False
    assert "never (disabled)" in text_of(browser, job)
    assert find(browser, "#job-health_check").get_attribute("data-enabled") == "true"
    shot(browser, "18-schedule")


def test_notifications_inbox_and_mark_read(server, browser):
    browser.get(server.base + "/notifications")
    unread = "ul.inbox li.unread"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, unread) or d.refresh(),
         "a notification about the ready sources")
    assert "office-guide" in text_of(browser, "ul.inbox")
    shot(browser, "15-notifications")
    count = len(browser.find_elements(By.CSS_SELECTOR, unread))
    find(browser, unread + " button").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, unread)) == count - 1,
         "one notification fewer unread")


def test_system_page_and_a_backup(server, browser):
    browser.get(server.base + "/system")
    find(browser, "#backups ~ button, section button[data-body*=backup_data]").click()
    wait(browser, lambda d: "/tasks/" in d.current_url, "the backup task's page")
    wait(browser, lambda d: "SUCCESS" in (d.refresh() or text_of(d, "h1")), "the backup")
    browser.get(server.base + "/system")
    assert "app-" in text_of(browser, "#backups")
    assert text_of(browser, "#health-status") == "ok"
    versions = text_of(browser, "main")
    assert "huey" in versions and "SQLite" in versions and "Dead letters" in versions
    assert text_of(browser, "header .version") == botlite.__version__
    shot(browser, "16-system")


def test_settings_and_the_widget_on_another_site(server, browser, site):
    browser.get(server.base + "/bots/help-desk/settings")
    domains = find(browser, "#bot-domains")
    domains.send_keys("127.0.0.1:%d" % site.port)
    rate = find(browser, "#bot-rate")
    rate.clear()
    rate.send_keys("3")
    click_and_wait_for_reload(browser, find(browser, "#bot-settings button[type=submit]"),
                              "the settings to be saved")
    assert server.api("GET", "/api/chatbots/help-desk")["rate_limit_per_minute"] == 3
    assert find(browser, "#bot-rate").get_attribute("value") == "3"
    snippet = text_of(browser, "#embed-snippet")
    assert snippet == '<script src="%s/widget.js" data-bot="help-desk"></script>' % server.base
    shot(browser, "11-settings")

    site.embed_html = ("<!doctype html><html><head><title>Acme</title></head><body>"
                       "<h1>Acme shop</h1><p>Our own page.</p>%s</body></html>" % snippet)
    browser.get(site.base + "/embed.html")
    host = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-botlite-widget]"),
                "the widget")[0]
    root = host.shadow_root
    root.find_element(By.CSS_SELECTOR, "button.bubble").click()
    wait(browser, lambda d: "Hi! Ask me about the office." in
         root.find_element(By.CSS_SELECTOR, "ol.log").text, "the greeting")
    assert root.find_element(By.CSS_SELECTOR, "h2").text == "Help Desk"

    def ask(question):
        count = len(root.find_elements(By.CSS_SELECTOR, "li.msg"))
        root.find_element(By.CSS_SELECTOR, "input").send_keys(question)
        root.find_element(By.CSS_SELECTOR, "form button").click()
        wait(browser, lambda d: len(root.find_elements(By.CSS_SELECTOR, "li.msg")) >= count + 2,
             "the widget's answer")
        return root.find_elements(By.CSS_SELECTOR, "li.msg")[-1]

    answer = ask("When do parcels to Norway arrive?")
    assert "four working days" in answer.text
    link = answer.find_element(By.CSS_SELECTOR, "ol.cites a")
    assert link.get_attribute("href") == site.base + "/docs/"
    assert link.text == "Shipping guide"
    session_id = browser.execute_script(
        "return window.localStorage.getItem('botlite:help-desk:session')")
    assert session_id
    shot(browser, "12-widget")

    browser.refresh()  # the session survives a reload
    root = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-botlite-widget]"),
                "the widget")[0].shadow_root
    root.find_element(By.CSS_SELECTOR, "button.bubble").click()
    ask("Is parking free?")
    ask("What does express shipping cost?")
    notice = ask("And on Sundays?")
    assert "class" in notice.get_attribute("outerHTML") and "notice" in \
        notice.get_attribute("class")
    assert "wait" in notice.text and "try again" in notice.text
    shot(browser, "13-widget-rate-limited")
    conversations = server.api("GET", "/api/chatbots/help-desk/conversations")["conversations"]
    mine = [c for c in conversations if c["session_id"] == session_id]
    assert mine and mine[0]["message_count"] == 6


def test_a_site_that_is_not_allowed_gets_no_answer(server, browser, site):
    server.api("PATCH", "/api/chatbots/help-desk", json={"allowed_domains": ["example.com"]})
    browser.get(site.base + "/embed.html")
    root = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-botlite-widget]"),
                "the widget")[0].shadow_root
    root.find_element(By.CSS_SELECTOR, "button.bubble").click()
    root.find_element(By.CSS_SELECTOR, "input").send_keys("hello")
    root.find_element(By.CSS_SELECTOR, "form button").click()
    wait(browser, lambda d: root.find_elements(By.CSS_SELECTOR, "li.notice"), "a notice")
    assert "cannot be reached" in root.find_element(By.CSS_SELECTOR, "li.notice").text
    assert not root.find_elements(By.CSS_SELECTOR, "li.bot")  # not even the greeting


def test_script_in_names_titles_and_messages_is_shown_as_text(server, browser, tmp_path):
    evil = '<script>alert("xss")</script>'
    browser.get(server.base + "/")
    find(browser, "#new-bot-name").send_keys(evil)
    find(browser, "#new-bot button[type=submit]").click()
    wait(browser, lambda d: "/bots/script-alert-xss-script" in d.current_url, "the bot page")
    assert evil in text_of(browser, ".crumbs")
    page = tmp_path / "evil.html"
    page.write_text("<html><head><title>&lt;script&gt;alert(&quot;doc&quot;)&lt;/script&gt;"
                    "</title></head><body><p>Refunds take five days.</p></body></html>")
    find(browser, "#upload-file").send_keys(str(page))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                            '#sources-table tr[data-status="ready"]'),
         "the document")
    assert '<script>alert("doc")</script>' in text_of(browser, "#sources-table")
    browser.get(server.base + "/bots/script-alert-xss-script/playground")
    find(browser, "#message").send_keys(evil + " how long do refunds take?")
    find(browser, "form.ask button").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "li.msg.bot .meta"), "the answer")
    assert evil in text_of(browser, "li.msg.user")
    browser.get(server.base + "/bots/script-alert-xss-script/conversations")
    find(browser, "table tbody a").click()
    assert evil in text_of(browser, "ol.log")
    browser.get(server.base + "/")
    assert evil in text_of(browser, "table")
    assert no_alert(browser)
    shot(browser, "14-escaped")


def test_delete_a_bot_after_confirming(server, browser):
    browser.get(server.base + "/bots/script-alert-xss-script/settings")
    find(browser, ".danger-zone button").click()
    alert = wait(browser, lambda d: not no_alert(d) and d.switch_to.alert, "the confirmation")
    assert "Delete the chatbot" in alert.text
    alert.accept()
    wait(browser, lambda d: d.current_url == server.base + "/", "the bot list")
    assert "xss" not in text_of(browser, "table")


def test_phone_width_pages_fit_the_screen(server, browser):
    browser.set_window_size(390, 844)
    try:
        for path, name in (("/", "20-phone-home"), ("/bots/help-desk", "21-phone-bot"),
                           ("/tasks", "22-phone-tasks")):
            browser.get(server.base + path)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            wide = browser.execute_script(
                "return Array.from(document.querySelectorAll('body *')).filter(e => "
                "e.getBoundingClientRect().right > window.innerWidth + 1 && "
                "!e.closest('.scroll')).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)")
            assert overflow <= 0, (path, wide)
            shot(browser, name)
    finally:
        browser.set_window_size(1280, 900)


def test_our_pages_log_no_errors_and_break_no_csp_rule(server, browser):
    browser.get_log("browser")  # forget the earlier pages' messages
    for path in ("/", "/bots/help-desk", "/bots/help-desk/playground", "/bots/help-desk/faqs",
                 "/bots/help-desk/settings", "/tasks", "/notifications", "/system"):
        browser.get(server.base + path)
        find(browser, "main")
    problems = [entry["message"] for entry in browser.get_log("browser")
                if entry["level"] in ("SEVERE", "WARNING")]
    assert problems == []
