"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against a 2-node devnet of
real processes. The page loads without console errors, goes live on the event stream, a client registered and a
job submitted through the forms appear, the job reaches ``verified`` on the page without a reload, its result is
drawn, and a screenshot is kept under ``test-artifacts/``.

Needs ``apt-get install chromium`` and ``pip install playwright`` (Playwright drives the system Chromium; its own
browser download is never used). Skips, saying which is missing, otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.netkit import running_devnet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def _playwright() -> Any:
    return pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives /usr/bin/chromium)")


def test_dashboard_submits_a_job_that_turns_verified_live(tmp_path: Path) -> None:
    sync_api = _playwright()
    with running_devnet(tmp_path / "net", 2, timeout=120) as nodes:
        url = nodes[0].api_url
        api = nodes[0].client(timeout=30)
        errors: list[str] = []
        with sync_api.sync_playwright() as p:
            # Playwright gives every launch a fresh temporary profile (its own --user-data-dir).
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
                page.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}")
                        if r.status >= 400 else None)

                # pre: the page loads from / (a browser is sent the link) and goes live on /events
                page.goto(f"{url}/", wait_until="load")
                page.click("a[href='/dashboard']")
                page.wait_for_selector("#live.live", timeout=20_000)
                page.wait_for_function("document.getElementById('c-height').textContent !== '–'", timeout=20_000)
                assert int(page.text_content("#c-workers").replace(",", "")) == 2  # the devnet's staked nodes
                assert int(page.text_content("#c-peers")) == 1
                assert page.locator("#peers tbody tr").count() == 1

                # operation: register a client, then submit a k-means job through the form
                page.fill("#f-client input[name=client_address]", "alice")
                page.fill("#f-client input[name=initial_balance]", "1000")
                page.click("#f-client button[type=submit]")
                page.wait_for_selector(".toast.ok >> text=client alice", timeout=60_000)
                assert page.input_value("#f-job input[name=client_address]") == "alice"
                page.select_option("#model", "kmeans")
                page.fill("#params", '{"k": 3}')
                page.fill("#f-job input[name=n_samples]", "300")
                page.fill("#f-job input[name=n_features]", "2")
                page.click("#f-job button[type=submit]")
                row = page.locator("#jobs-table tbody tr").first
                row.wait_for(timeout=20_000)
                job_id = row.get_attribute("data-job")
                assert job_id is not None and len(job_id) == 64

                # post: the row turns verified by itself (events, no reload), and the clusters are drawn
                page.wait_for_selector(f"tr[data-job='{job_id}'] td[data-status=verified]", timeout=150_000)
                page.wait_for_selector("#result-charts canvas[data-chart=scatter]", timeout=20_000)
                page.wait_for_function("document.getElementById('c-jobs-sub').textContent === 'completed 1'",
                                       timeout=20_000)
                timeline_done = page.locator(f"tr[data-job='{job_id}'] .timeline .step.done").count()
                assert timeline_done >= 6  # submitted, bids, assigned, committed, revealed, verified
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                browser.close()
        # the page told the truth: the node agrees the job is verified
        assert api.get(f"/job/{job_id}/status")["status"] == "verified"
        assert errors == [], errors
