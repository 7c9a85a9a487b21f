"""The web UI in a real headless Chromium (Debian's chromium and chromedriver), against a
running logpipe that holds logpipe-bench data; every check compares what the page shows with
what the native API answers.

    python3 tests/ui/test_ui.py open URL SCREENSHOT_DIR          # a server without tokens
    python3 tests/ui/test_ui.py tokens URL TOKEN APP SCREENSHOT_DIR  # a read token for APP only

Prints "N passed, M failed" last and exits 1 when a check failed.
"""
import json
import os
import sys
import time
import traceback
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def browser(width=1280, height=720):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def api(base, path, params=(), token=None):
    url = f"{base}{path}?{urllib.parse.urlencode(list(params))}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode(), r.headers


def api_logs(base, params, token=None):
    text, headers = api(base, "/api/v1/logs", params, token)
    return [json.loads(l) for l in text.splitlines() if l.strip()], headers


def wait(what, fn, timeout=20):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the page is still changing
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def ready(d):
    return wait("the records", lambda: d.execute_script("return document.body.dataset.ready === '1'"))


def shown(d):
    """(timestamp, app, message) of every record row on the page, in order."""
    return d.execute_script("""
        return [...document.querySelectorAll('#records li')].map(li =>
            [li.dataset.ts, li.querySelector('.app').textContent, li.querySelector('.msg').textContent]);""")


def key(r):
    return [r["timestamp"], r["app"], r["message"]]


def run_query(d, q):
    box = d.find_element(By.ID, "q")
    box.clear()
    box.send_keys(q)
    d.execute_script("delete document.body.dataset.ready")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    ready(d)


checks = []


def check(fn):
    checks.append(fn)
    return fn


def open_server(base, shots):
    d = browser()
    try:
        @check
        def first_screen_shows_the_newest_records():
            d.get(base + "/")
            ready(d)
            want, _ = api_logs(base, [("limit", "200")])
            got = shown(d)
            assert got == [key(r) for r in want], f"{got[:2]} ... against {[key(r) for r in want][:2]} ..."
            d.save_screenshot(os.path.join(shots, "ui-first-screen.png"))

        @check
        def the_histogram_total_is_the_count():
            total = wait("the histogram", lambda: d.find_element(By.ID, "hist").get_attribute("data-total"))
            text, _ = api(base, "/api/v1/count")
            assert int(total) == json.loads(text)["count"], f"{total} against {text}"

        @check
        def the_facets_are_the_top_values_the_api_counts():
            groups = wait("the facets", lambda: d.find_elements(By.CSS_SELECTOR, "#facets .facet"))
            assert groups[0].get_attribute("data-key") == "level"
            for g in groups:
                k = g.get_attribute("data-key")
                text, _ = api(base, "/api/v1/query", [("q", f"* | count by ({k}) | limit 5")])
                want = [(v["value"], v["count"]) for v in json.loads(text)["values"] if v["value"]]
                got = [(c.get_attribute("data-value"), int(c.get_attribute("data-count")))
                       for c in g.find_elements(By.CSS_SELECTOR, ".chip")]
                assert got == want, f"{k}: {got} against {want}"
            chip = groups[0].find_element(By.CSS_SELECTOR, ".chip")
            value = chip.get_attribute("data-value")
            d.execute_script("delete document.body.dataset.ready")
            ActionChains(d).key_down(Keys.ALT).click(chip).key_up(Keys.ALT).perform()
            ready(d)
            q = d.find_element(By.ID, "q").get_attribute("value")
            assert q == f"-level={value}", q
            want, _ = api_logs(base, [("q", q), ("limit", "200")])
            assert shown(d) == [key(r) for r in want]
            assert all(f"level={value}" not in r["tags"] for r in want)

        @check
        def the_chart_stacks_by_a_chosen_tag_key():
            from selenium.webdriver.support.ui import Select
            run_query(d, "")
            Select(d.find_element(By.ID, "by")).select_by_value("env")
            wait("by=env in the URL", lambda: "by=env" in d.current_url)
            text, _ = api(base, "/api/v1/query", [("q", "* | count by (env)")])
            want = {v["value"] for v in json.loads(text)["values"]}
            count, _ = api(base, "/api/v1/count")
            count = json.loads(count)["count"]

            def legend_and_total():
                legend = {e.text.rsplit(" ", 1)[0] for e in d.find_elements(By.CSS_SELECTOR, "#legend span")}
                total = d.find_element(By.ID, "hist").get_attribute("data-total")
                return (legend, total) if legend == want and total == str(count) else None
            wait(f"a legend of {want} and a total of {count}", legend_and_total)
            Select(d.find_element(By.ID, "by")).select_by_value("level")

        @check
        def a_query_narrows_to_what_the_api_answers():
            q = "level=ERROR app:(api OR web)"
            run_query(d, q)
            want, _ = api_logs(base, [("q", q), ("limit", "200")])
            assert want, "the query matches something"
            assert shown(d) == [key(r) for r in want]
            assert "q=" in d.current_url and "level%3DERROR" in d.current_url, d.current_url
            total = wait("the histogram", lambda: d.find_element(By.ID, "hist").get_attribute("data-total"))
            text, _ = api(base, "/api/v1/count", [("q", q)])
            assert int(total) == json.loads(text)["count"], f"{total} against {text}"
            d.save_screenshot(os.path.join(shots, "ui-query.png"))

        @check
        def scrolling_pages_through_the_cursor_without_gaps_or_repeats():
            run_query(d, "")
            want, headers = api_logs(base, [("limit", "200")])
            nxt, _ = api_logs(base, [("limit", "200"), ("cursor", headers["Logpipe-Next-Cursor"])])
            for _ in range(50):
                d.execute_script("document.getElementById('more').scrollIntoView()")
                if len(shown(d)) >= 400:
                    break
                time.sleep(0.1)
            assert shown(d)[:400] == [key(r) for r in want + nxt]

        @check
        def clicking_a_tag_chip_adds_it_to_the_query():
            run_query(d, "")
            chip = d.find_element(By.CSS_SELECTOR, "#records li .chip")
            tag = chip.text
            d.execute_script("delete document.body.dataset.ready")
            chip.click()
            ready(d)
            q = d.find_element(By.ID, "q").get_attribute("value")
            k, _, v = tag.partition("=")
            assert q.startswith(k), f"{q!r} for chip {tag!r}"
            want, _ = api_logs(base, [("q", q), ("limit", "200")])
            assert shown(d) == [key(r) for r in want]
            assert all(tag in r["tags"] for r in want)

        @check
        def dragging_on_the_histogram_sets_the_range_in_the_url():
            run_query(d, "")
            svg = d.find_element(By.ID, "hist")
            w = svg.size["width"]
            # across the middle of where the bars are (offsets from the chart's centre)
            lo, hi = d.execute_script("""
                const xs = [...document.querySelectorAll('#hist rect')].map(r => +r.getAttribute('x'));
                return [Math.min(...xs), Math.max(...xs)];""")
            x0, x1 = lo + (hi - lo) * 0.25, lo + (hi - lo) * 0.6
            d.execute_script("delete document.body.dataset.ready")
            ActionChains(d).move_to_element_with_offset(svg, int(x0 - w / 2), 0).click_and_hold() \
                .move_by_offset(int(x1 - x0), 0).release().perform()
            ready(d)
            url = urllib.parse.urlparse(d.current_url)
            p = dict(urllib.parse.parse_qsl(url.query))
            assert "from" in p and "to" in p, d.current_url
            want, _ = api_logs(base, [("from", p["from"]), ("to", p["to"]), ("limit", "200")])
            assert want and shown(d) == [key(r) for r in want]

        @check
        def a_bad_query_shows_the_error_at_its_column():
            d.get(base + "/")
            ready(d)
            box = d.find_element(By.ID, "q")
            box.clear()
            box.send_keys("level=ERROR (timeout")
            box.send_keys(Keys.CONTROL, Keys.ENTER)
            err = wait("the error", lambda: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
            text, column = err.text, err.get_attribute("data-column")
            try:
                api(base, "/api/v1/logs", [("q", "level=ERROR (timeout")])
                raise AssertionError("the API accepted the bad query")
            except urllib.error.HTTPError as e:
                want = json.loads(e.read())["error"]["column"]
            assert column == str(want), f"column {column} against {want}"
            lines = text.split("\n")
            assert lines[1].index("^") == want - 1, text
            d.save_screenshot(os.path.join(shots, "ui-bad-query.png"))

        @check
        def the_tail_shows_a_record_ingested_after_the_page_opened():
            d.get(base + "/?q=app:ui-tail")
            ready(d)
            d.find_element(By.ID, "tail").click()
            body = json.dumps({"app": "ui-tail", "message": "tailed into the page", "tags": ["level=INFO"]})

            def sent_and_shown():
                # sent again each second: the first may come before the tail is subscribed
                urllib.request.urlopen(urllib.request.Request(base + "/api/v1/logs", data=body.encode(), method="POST"))
                time.sleep(1)
                return any(m == "tailed into the page" for _, _, m in shown(d))
            wait("the tailed record", sent_and_shown)

        @check
        def a_phone_width_shows_the_records():
            d.set_window_size(390, 844)
            d.get(base + "/")
            ready(d)
            assert shown(d)
            d.save_screenshot(os.path.join(shots, "ui-phone.png"))
            d.set_window_size(1280, 720)

        return run_checks()
    finally:
        d.quit()


def token_server(base, token, app, shots):
    d = browser()
    try:
        @check
        def a_token_is_asked_for_and_a_read_token_sees_only_its_apps():
            d.get(base + "/")
            dlg = wait("the token dialog", lambda: d.find_element(By.ID, "token-dialog").is_displayed() and d.find_element(By.ID, "token-dialog"))
            d.save_screenshot(os.path.join(shots, "ui-token.png"))
            dlg.find_element(By.ID, "token").send_keys(token + Keys.ENTER)
            ready(d)
            got = shown(d)
            want, _ = api_logs(base, [("limit", "200")], token)
            assert got and got == [key(r) for r in want]
            assert {a for _, a, _ in got} == {app}, {a for _, a, _ in got}

        return run_checks()
    finally:
        d.quit()


def run_checks():
    passed = failed = 0
    for fn in checks:
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return failed == 0


if __name__ == "__main__":
    mode = sys.argv[1]
    ok = open_server(*sys.argv[2:4]) if mode == "open" else token_server(*sys.argv[2:6])
    sys.exit(0 if ok else 1)
