"""The key-management page in a real browser: Playwright driving Debian's ``chromium`` package,
headless, against the demo served as ``skaala-auth demo`` serves it (a subprocess on a free
loopback port, the real session path, the real management API).

One walk: sign in → list → create a key with two scopes → copy it → use it (200) → its Last
used changes after a reload → rotate → revoke → the key gets 401; then members and roles, and
the clear page a plain member gets. Screenshots at 1280 and 375 px are written to ``docs/img/``
(``SKAALA_SCREENSHOT_DIR`` for elsewhere), with the plaintext key masked.

Without Playwright or ``/usr/bin/chromium`` the test skips, saying why; under ``CI=true`` it
fails instead (``.ci/run`` installs the ``chromium`` package when it is missing). Playwright's
own browser download is not used.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skaala_auth.keys import display_prefix

CHROMIUM = Path(os.environ.get("SKAALA_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("SKAALA_SCREENSHOT_DIR", ROOT / "docs" / "img"))
KEY = re.compile(r"sk_live_[0-9A-Za-z]{38}")
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 375, "height": 812}


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it: this test must not skip there)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright: the dev extra)")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo, started as `skaala-auth demo` starts it, on a free loopback port."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-m", "skaala_auth", "--db", str(tmp_path / "demo.db"), "demo",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,  # the banner shows the first-start key: not read here
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, f"the demo stopped: {server.communicate()[1]}"
            assert time.monotonic() < deadline, "the demo did not start in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            server.kill()
            raise
    assert server.returncode == 0


def _shot(page: Any, name: str, **options: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), animations="disabled", caret="hide", **options)


#: Shown in the screenshots in place of the new key (not a key: its checksum is wrong).
EXAMPLE_KEY = "sk_live_" + "EXAMPLEnotArealKEYshownINdocsONLY00000"


def _shot_new_key(page: Any, name: str) -> None:
    """The one-time display, with an example in place of the key: the screenshot is committed."""
    page.evaluate(
        """example => {
            document.getElementById("new-key").value = example;
            document.getElementById("new-key-export").value = `export SKAALA_API_KEY=${example}`;
        }""",
        EXAMPLE_KEY,
    )
    _shot(page, name)


def _row(page: Any, key: str) -> Any:
    """The table row of a key, found by its display prefix."""
    return page.locator("#keys-body tr").filter(
        has=page.locator("code.prefix", has_text=display_prefix(key))
    )


@pytest.fixture
def context(browser: Any, demo: str) -> Iterator[Any]:
    """A fresh browser profile on the demo, allowed to use the clipboard."""
    context = browser.new_context(viewport=WIDE, base_url=demo)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo)
    yield context
    context.close()


@pytest.fixture
def api(demo: str) -> Iterator[httpx.Client]:
    """What an integration does with its key: call the demo's API."""
    with httpx.Client(base_url=demo, timeout=5) as client:
        yield client


def test_if_an_owner_walks_the_page_then_keys_are_created_used_rotated_and_revoked(
    context: Any, api: httpx.Client
) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Signed out: a clear page with the demo's sign-in, never a broken one.
    page.goto("/dashboard?team=team_demo")
    page.get_by_role("heading", name="Sign in to manage keys").wait_for()
    page.get_by_role("link", name="Sign in").click()
    page.get_by_role("heading", name="Sign in to the demo dashboard").wait_for()
    assert page.get_by_text("DEMO sign-in — not Stack Auth").first.is_visible()
    page.get_by_role("button", name="Sign in as user_demo (demo owner)").click()

    # The list: the demo's first key, never used.
    page.wait_for_url(re.compile(r"/dashboard\?team=team_demo$"))
    page.get_by_role("heading", name="Keys", exact=True).wait_for()
    assert page.locator("#keys-body tr").count() == 1
    first = page.locator("#keys-body tr").first
    assert first.locator(".last-used").inner_text() == "never"
    assert first.get_by_text("never used").is_visible()

    # Create a key with two scopes.
    page.get_by_label("Name", exact=True).fill("CI")
    page.get_by_label("read:bookings").check()
    page.get_by_label("write:bookings").check()
    assert page.get_by_label("Expires after (days)").input_value() == "365"
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Key “CI” created")
    dialog.wait_for()
    key = page.locator("#new-key").input_value()
    assert KEY.fullmatch(key)
    assert page.locator("#new-key-export").input_value() == f"export SKAALA_API_KEY={key}"
    assert dialog.get_by_text("it will not be shown again").is_visible()

    # Copy it: the clipboard holds the key.
    dialog.get_by_role("button", name="Copy").first.click()
    page.get_by_text("The key is copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    _shot_new_key(page, "dashboard-new-key-1280.png")
    dialog.get_by_role("button", name="I have stored it").click()
    assert page.locator("#new-key").input_value() == ""  # wiped from the page
    row = _row(page, key)
    assert row.locator(".last-used").inner_text() == "never"
    assert row.locator(".scope-list li").all_inner_texts() == ["read:bookings", "write:bookings"]

    # Use it against the API: 200. Its Last used changes after a reload.
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/v1/bookings", headers=bearer).status_code == 200
    deadline = time.monotonic() + 20
    while (used := _row(page, key).locator(".last-used").inner_text()) == "never":
        assert time.monotonic() < deadline, "Last used did not change"
        time.sleep(1)
        page.reload()
        page.get_by_role("heading", name="Keys", exact=True).wait_for()
    assert used.startswith("just now"), used
    title = _row(page, key).locator(".last-used time").get_attribute("title")
    assert title and re.search(r"\d{4}", title)  # the exact time on hover
    _shot(page, "dashboard-1280.png", full_page=True)

    # From 360 px to desktop: no sideways scrolling.
    for width in (360, 768, 1024, NARROW["width"]):
        page.set_viewport_size({"width": width, "height": 812})
        assert page.evaluate("document.documentElement.scrollWidth") <= width, width
    _shot(page, "dashboard-375.png", full_page=True)

    # Rotate, behind a confirmation with the grace period (default 24 hours).
    _row(page, key).get_by_role("button", name="Rotate key CI").click()
    confirm = page.get_by_role("dialog", name="Rotate “CI”?")
    confirm.wait_for()
    assert confirm.get_by_label("The current key keeps working for").input_value() == "86400"
    confirm.get_by_role("button", name="Rotate key").click()
    page.get_by_role("dialog", name="New key for “CI”").wait_for()
    rotated = page.locator("#new-key").input_value()
    assert KEY.fullmatch(rotated) and rotated != key
    _shot_new_key(page, "dashboard-new-key-375.png")
    page.get_by_role("button", name="I have stored it").click()
    _row(page, key).get_by_text("replaced: works until it expires").wait_for()  # list reloaded
    assert api.get("/api/v1/bookings", headers=bearer).status_code == 200  # in its grace
    renewed = {"Authorization": f"Bearer {rotated}"}
    assert api.get("/api/v1/bookings", headers=renewed).status_code == 200

    # Revoke the old key, behind a confirmation: it now gets 401.
    _row(page, key).get_by_role("button", name="Revoke key CI").click()
    confirm = page.get_by_role("dialog", name="Revoke “CI”?")
    cancel = confirm.get_by_role("button", name="Cancel")
    assert cancel.evaluate("button => button === document.activeElement")  # the safe choice
    confirm.get_by_role("button", name="Revoke key").click()
    page.get_by_role("alert").filter(has_text="is revoked").wait_for()
    assert _row(page, key).locator(".badge.revoked").is_visible()
    refused = api.get("/api/v1/bookings", headers=bearer)
    assert refused.status_code == 401
    assert refused.json() == {"error": "unauthorized", "message": "Invalid API key"}
    assert api.get("/api/v1/bookings", headers=renewed).status_code == 200

    # Members and roles: an error from the API in words, then a new owner, then stepping down.
    page.get_by_role("button", name="Remove user_demo").click()
    page.get_by_role("dialog", name="Remove user_demo from the team?").get_by_role(
        "button", name="Remove member"
    ).click()
    refusal = page.locator("#confirm-error")
    refusal.wait_for()
    assert "owner" in refusal.inner_text().lower()  # the last owner cannot leave: 409 in words
    page.get_by_role("button", name="Cancel").click()
    page.get_by_label("User id").fill("user_helper")
    page.locator("#member-role").select_option("owner")
    page.get_by_role("button", name="Add member").click()
    page.locator("#members-body .key-name", has_text="user_helper").wait_for()
    page.get_by_label("Role of user_demo").select_option("member")
    page.get_by_role("button", name="Save role of user_demo").click()
    page.get_by_role("alert").filter(has_text="user_demo is now a member").wait_for()

    # A plain member: a clear page, not a broken one.
    page.reload()
    page.get_by_role("heading", name="You cannot manage this team's keys").wait_for()
    assert page.get_by_text("Only team owners and admins can manage keys").is_visible()
    assert page.locator("#manage").is_hidden()
    _shot(page, "dashboard-member-375.png", full_page=True)

    # Only the expected refusals reached the console (the 401 before signing in, the 409, the
    # 403s of a plain member); no script error.
    assert not [e for e in errors if "Failed to load resource" not in e], errors


_FOCUSED = """() => {
    const e = document.activeElement;
    const label = e.labels && e.labels.length ? e.labels[0].innerText : "";
    const style = getComputedStyle(e);
    const text = label ? label.split("\\n")[0] : (e.textContent || "").replace(/\\s+/g, " ");
    return {id: e.id, tag: e.tagName, text: text.trim(),
            outline: style.outlineStyle, shown: e.getBoundingClientRect().width > 0};
}"""


def test_if_only_the_keyboard_is_used_then_a_key_is_created_in_a_sensible_focus_order(
    context: Any,
) -> None:
    page = context.new_page()
    page.goto("/demo/sign-in")
    page.get_by_role("heading", name="Sign in to the demo dashboard").wait_for()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate(_FOCUSED)["text"].startswith("Sign in as"):
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Keys", exact=True).wait_for()

    page.keyboard.press("Tab")
    assert page.evaluate(_FOCUSED)["text"] == "Skip to the content"
    order: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        assert focused["shown"], focused  # never on something hidden
        assert focused["outline"] != "none", focused  # a visible focus ring
        order.append(focused["text"])
        if focused["id"] == "key-name":
            page.keyboard.type("Keyboard")
        elif focused["text"].startswith("read:bookings"):
            page.keyboard.press("Space")
        elif focused["text"] == "Create key":
            break
    assert order[:7] == [
        "Name", "Created", "Expires", "Last used", "Status", "Rotate key demo", "Revoke key demo"
    ]  # fmt: skip
    assert order[7] == "Name" and order[-2:] == ["Expires after (days)", "Create key"]
    scopes = [text.split()[0] for text in order[8:-2]]
    assert scopes == sorted(scopes[:5]) + sorted(scopes[5:8]) + ["webhooks:manage"]
    page.keyboard.press("Enter")

    page.get_by_role("dialog", name="Key “Keyboard” created").wait_for()
    assert page.evaluate(_FOCUSED)["id"] == "new-key"
    page.keyboard.press("Escape")  # does not close it unseen
    assert page.get_by_role("dialog").is_visible()
    page.get_by_text("Copy the key first").wait_for()
    for _ in range(4):
        page.keyboard.press("Tab")
    assert page.evaluate(_FOCUSED)["text"] == "I have stored it"
    page.keyboard.press("Enter")
    assert page.get_by_role("dialog").count() == 0 or not page.get_by_role("dialog").is_visible()
    assert page.evaluate(_FOCUSED)["id"] == "keys-title"
    page.locator("#keys-body tr").nth(1).wait_for()  # the list reloads behind the dialog
