"""The Airflow and MLflow UIs in a real headless browser (Debian's chromium driven by Playwright), as their
users use them: log in, trigger and watch a DAG, read a task log; find the model, its aliases, its plot;
move the champion alias by hand and see hft notice.

Screenshots go to a temporary folder, or to docs/images (the README's) with HFT_UPDATE_SCREENSHOTS=1
(``make screenshots``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Error as PlaywrightError

from browser import chromium, new_page, screenshot_dir
from hft.data.calendar import is_trading_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]

@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    with new_page(browser) as p:
        yield p


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


def _login(page, url: str, user: str, password: str) -> None:
    page.goto(f"{url}/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("input[type=submit], button[type=submit]")


def test_airflow_ui_login_trigger_watch_and_read_the_task_log(ops_stack, page, shots):
    url = ops_stack.config.airflow_url
    _login(page, url, ops_stack.user, "not-the-password")
    page.get_by_text("Invalid login").wait_for()  # no way in without the password
    _login(page, url, ops_stack.user, ops_stack.password)
    page.goto(f"{url}/dags")
    for dag_id in ("market_data", "model_training"):
        page.get_by_role("link", name=dag_id, exact=True).first.wait_for()

    client = ops_stack.client()
    before = {r["dag_run_id"] for r in client.runs("market_data")}
    page.get_by_role("link", name="market_data", exact=True).first.click()
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    dialog.get_by_text("comma-separated tickers; empty: HFT_TICKERS").wait_for()  # the DAG's params, as a form
    # The form re-renders every second (its default logical date is "now"), which Playwright's click sees as
    # a detached element: click the submit button from inside the page instead, in one step.
    # CI twice saw the dialog close and no run appear: the request the click sends is now awaited and checked
    # (a click that lands while the form re-renders sends none: it is clicked again).
    response = None
    for _ in range(3):
        page.wait_for_function("() => !!document.querySelector('[data-testid=trigger-dag-submit]:not([disabled])')")
        try:
            with page.expect_response(lambda r: r.request.method == "POST" and "/dagRuns" in r.url,
                                      timeout=20_000) as sent:
                page.eval_on_selector("[data-testid=trigger-dag-submit]", "button => button.click()")
            response = sent.value
            break
        except PlaywrightError:  # a timeout, or the button re-rendered (detached) between the wait and the click
            if not dialog.is_visible():
                page.get_by_role("button", name="Trigger").first.click()
                dialog.get_by_text("Run Parameters").wait_for()
    assert response is not None, "three clicks on the trigger form's submit button sent no request"
    assert response.ok, f"the UI's trigger request failed: {response.status} {response.text()[:1000]}"
    dialog.wait_for(state="hidden")
    deadline = time.monotonic() + 90
    while True:
        runs = client.runs("market_data")
        new = [r for r in runs if r["dag_run_id"] not in before and r["run_type"] == "manual"]
        if new:
            break
        assert time.monotonic() < deadline, (
            f"the Trigger button created no run; runs: {[(r['dag_run_id'], r['run_type'], r['state']) for r in runs]}")
        time.sleep(1)
    run_id = new[0]["dag_run_id"]
    assert (new[0]["run_type"], new[0]["triggered_by"], new[0]["triggering_user_name"]) == (
        "manual", "ui", ops_stack.user)
    page.goto(f"{url}/dags/market_data/runs/{quote(run_id, safe='')}")
    # The run's session is its logical date, "now": on a day without a session (a weekend, in UTC) ingest is
    # skipped and so are the tasks after it (CI once ran this on a Saturday 00:07 UTC). Either way the UI must show
    # what the API says happened: the run's badge Success, and each task in its state.
    session = date.fromisoformat(str(new[0]["logical_date"])[:10])
    trading = is_trading_day(session)
    deadline = time.monotonic() + 420
    while client.run("market_data", run_id)["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} did not end"
        time.sleep(2)
    states = Counter(ti["state"] for ti in client.task_instances("market_data", run_id).values())
    assert states == (Counter(success=3) if trading else Counter(skipped=3)), (session, states)
    want = {"Success": 1 + states["success"], "Skipped": states["skipped"]}
    # The page is a single-page app: right after a (re)load its body is still empty while it fetches the run, so
    # each load gets up to 20 s to render before the next reload (CI once checked only freshly reloaded, empty
    # pages for 7 minutes while the run had long succeeded).
    shown = False
    while not shown and time.monotonic() < deadline:
        rendered_by = time.monotonic() + 20
        while time.monotonic() < rendered_by:
            if all(page.get_by_text(label, exact=True).count() >= n for label, n in want.items()) and \
                    page.get_by_text("Failed", exact=True).count() == 0:
                shown = True
                break
            time.sleep(1)
        else:
            page.reload()
    if not shown:
        pytest.fail(f"the UI never showed run {run_id} as the API has it ({want}): {page.inner_text('body')[:2000]}")
    assert client.run("market_data", run_id)["state"] == "success"  # what the UI showed is what happened

    page.get_by_role("button", name=re.compile("Show Graph")).first.click()
    page.locator(".react-flow__node").first.wait_for()  # the graph of ingest -> validate -> features
    assert page.locator(".react-flow__node").count() >= 3
    time.sleep(2)
    page.screenshot(path=str(shots / "airflow-dag-graph.png"))

    page.goto(f"{url}/dags/market_data/runs/{quote(run_id, safe='')}/tasks/ingest")
    said = "staged 780 bars" if trading else f"{session} is not a trading day"
    page.get_by_text(said).first.wait_for(timeout=90_000)  # the task's log, as the UI shows it
    page.screenshot(path=str(shots / "airflow-task-log.png"))
    client.unpause("market_data", paused=True)


@pytest.fixture
def mlflow_page(browser, ops_stack):
    """A page that answers the MLflow server's login (HTTP basic auth) as its admin."""
    from hft.stack.base import mlflow_credentials

    with new_page(browser, credentials=mlflow_credentials(ops_stack.config)) as p:
        yield p


def test_mlflow_ui_model_page_aliases_plot_and_a_champion_moved_by_hand(ops_stack, training_run, ops_login, page,
                                                                        mlflow_page, shots):
    from hft.model import registry
    from hft.model.report import gate_status

    uri = ops_stack.config.mlflow_uri
    # no login, no UI (a browser without credentials shows Chromium's error page: ask as its HTTP client does)
    assert page.request.get(f"{uri}/").status == 401
    page = mlflow_page
    c = registry.client(uri)
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name='{registry.MODEL_NAME}'"))
    newest = str(versions[-1])
    page.goto(f"{uri}/#/models/{registry.MODEL_NAME}")
    page.get_by_text("Recent promotions" if registry.alias_version(c, registry.CHAMPION) else "No champion yet").first.wait_for()
    page.get_by_text("@ challenger").first.wait_for()
    with_close = page.get_by_role("button", name="Close")
    if with_close.count():
        with_close.first.click()  # the assistant side panel
    page.screenshot(path=str(shots / "mlflow-model.png"))

    # The version page tells the story: holdout metrics, the re-scored report, the gate's verdict.
    page.goto(f"{uri}/#/models/{registry.MODEL_NAME}/versions/{newest}")
    page.get_by_text("Re-scored with the registered weights").first.wait_for()
    page.get_by_text(f"Gate: {gate_status(c, newest).upper()}").first.wait_for()

    # The run's calibration plot, rendered by the UI.
    mv = c.get_model_version(registry.MODEL_NAME, newest)
    experiment = c.get_run(mv.run_id).info.experiment_id
    page.goto(f"{uri}/#/experiments/{experiment}/runs/{mv.run_id}/artifacts")
    page.get_by_text("calibration.png", exact=True).first.click()
    image = page.locator("img[src*='calibration.png'], img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle())

    # Move `champion` by hand, as anyone with the UI can: onto a version the gate has not approved (a rejected
    # one, else one registered by hand from the same run, which the gate never saw).
    target = next((str(v) for v in reversed(versions) if gate_status(c, str(v)) == "rejected"), None)
    if target is None:
        target = str(c.create_model_version(registry.MODEL_NAME, mv.source, mv.run_id).version)
    page.goto(f"{uri}/#/models/{registry.MODEL_NAME}/versions/{target}")
    page.get_by_title("Edit aliases").first.click()
    dialog = page.get_by_role("dialog")
    field = dialog.get_by_role("combobox").first
    field.click()
    field.type(registry.CHAMPION)
    page.keyboard.press("Enter")
    dialog.get_by_role("button", name="Save aliases").click()
    deadline = time.monotonic() + 30
    while registry.alias_version(c, registry.CHAMPION) != target and time.monotonic() < deadline:
        time.sleep(0.5)
    assert registry.alias_version(c, registry.CHAMPION) == target
    # hft notices: recorded in the champion history with who moved it and the version's gate verdict.
    moved = registry.audit_champion(uri)
    assert moved is not None and moved["version"] == target and moved["by"] == registry.OUTSIDE
    assert moved["gate"] == gate_status(c, target) != "approved"
    assert registry.champion_history(c)[-1] == moved
    page.goto(f"{uri}/#/models/{registry.MODEL_NAME}")
    page.get_by_text(f"Champion: version {target}, gate {moved['gate']}").first.wait_for()
