"""``./reproduce.sh lab``: the notebooks open as notebooks, saving keeps their ``.py`` as it is, a hand run writes
beside the recorded results, and nothing is written to the user's home. The browser test drives a headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs) against the started server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from avlib.notebooks import discover, run_notebook
from avlib.report.results import INTERACTIVE, ResultWriter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = discover()


def _jupytext_manager(root: Path):
    """jupytext's contents manager as JupyterLab runs it (the server extension), on a folder with the checkout's
    jupytext.toml."""
    pytest.importorskip("jupyter_server")
    import jupytext

    shutil.copy(ROOT / "jupytext.toml", root / "jupytext.toml")
    return jupytext.TextFileContentsManager(root_dir=str(root))


def _sync(value):
    return asyncio.run(value) if asyncio.iscoroutine(value) else value


def _as_jupyterlab_saves(notebook) -> None:
    """What a session in JupyterLab adds before it saves: the running kernel's spec (our kernel.json), language
    info, outputs, execution counts and cell metadata the UI sets."""
    spec = json.loads((ROOT / "jupyter" / "share" / "kernels" / "python3" / "kernel.json").read_text())
    notebook.metadata["kernelspec"] = {"display_name": spec["display_name"], "language": spec["language"], "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python"}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    for count, cell in enumerate(cell for cell in notebook.cells if cell.cell_type == "code"):
        cell.execution_count = count + 1
        cell.outputs = [{"output_type": "stream", "name": "stdout", "text": f"output {count}\n"}]
        cell.metadata.update({"collapsed": False, "scrolled": True, "execution": {"iopub.status.idle": "2026-01-01"},
                              "jupyter": {"outputs_hidden": False}})


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_saving_from_jupyterlab_keeps_the_py_and_pairs_an_ipynb_with_the_outputs(source, tmp_path):
    manager = _jupytext_manager(tmp_path)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(source, tmp_path / "notebooks" / source.name)
    path = f"notebooks/{source.name}"
    model = _sync(manager.get(path))
    notebook = model["content"]
    _as_jupyterlab_saves(notebook)
    _sync(manager.save({"type": "notebook", "content": notebook, "format": "json"}, path))
    assert (tmp_path / path).read_text() == source.read_text(), "saving changed the tracked .py"
    paired = json.loads((tmp_path / path).with_suffix(".ipynb").read_text())
    assert [cell["outputs"] for cell in paired["cells"] if cell["cell_type"] == "code"][0][0]["text"] == ["output 0\n"]
    # reopened, the notebook has its outputs back (from the paired .ipynb)
    reopened = _sync(manager.get(path))["content"]
    assert any(cell.get("outputs") for cell in reopened.cells if cell.cell_type == "code")


def test_a_users_edit_is_the_only_change_saved(tmp_path):
    manager = _jupytext_manager(tmp_path)
    (tmp_path / "notebooks").mkdir()
    source = NOTEBOOKS[0]
    shutil.copy(source, tmp_path / "notebooks" / source.name)
    path = f"notebooks/{source.name}"
    notebook = _sync(manager.get(path))["content"]
    _as_jupyterlab_saves(notebook)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source = parameters.source.replace("seed = 0", "seed = 3")
    _sync(manager.save({"type": "notebook", "content": notebook, "format": "json"}, path))
    before, after = source.read_text().splitlines(), (tmp_path / path).read_text().splitlines()
    assert len(before) == len(after)
    assert [(old, new) for old, new in zip(before, after) if old != new] == [("seed = 0", "seed = 3")]


def test_a_hand_run_writes_beside_the_recorded_results(tmp_path, monkeypatch):
    table = pd.DataFrame({"a": [1]})
    monkeypatch.setenv(INTERACTIVE, "1")
    ResultWriter(profile="smoke", seed=0, notebook="00_x", root=tmp_path).table(table, "hand")
    assert (tmp_path / "smoke-interactive" / "tables" / "hand.csv").exists()
    assert not (tmp_path / "smoke").exists()
    monkeypatch.setenv(INTERACTIVE, "0")
    ResultWriter(profile="smoke", seed=0, notebook="00_x", root=tmp_path).table(table, "recorded")
    assert (tmp_path / "smoke" / "tables" / "recorded.csv").exists()


def test_the_headless_runner_records_into_the_profile_even_from_the_lab_terminal(tmp_path, monkeypatch):
    """A terminal inside JupyterLab has AVLIB_INTERACTIVE set; ./reproduce.sh run from it still records normally."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "00_write.py").write_text(
        '# %% tags=["parameters"]\nprofile = "synth"\nseed = 0\ndata_root = ""\ndevice = "auto"\nresults_root = "."\n'
        "# %%\nimport pandas as pd\nfrom avlib.report.results import ResultWriter\n"
        "ResultWriter(profile=profile, seed=seed, notebook='00_write', root=results_root).table(pd.DataFrame({'a': [1]}), 't')\n")
    monkeypatch.setenv(INTERACTIVE, "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run_notebook(notebooks / "00_write.py", profile="smoke", results_root=tmp_path / "results")
    assert (tmp_path / "results" / "smoke" / "tables" / "t.csv").exists()
    assert not (tmp_path / "results" / "smoke-interactive").exists()


def test_bad_options_get_a_clear_message():
    for arguments, message in [(["--profile"], "--profile needs a value"), (["--only", "--force"], "--only needs a value"),
                               (["--profile", "big"], "--profile must be smoke, synth or paper"),
                               (["--seed", "x"], "--seed must be a whole number"), (["--device", "tpu"], "--device must be"),
                               (["--only", "1a"], "--only takes notebook numbers"), (["--nope"], "unknown option --nope")]:
        done = subprocess.run([str(ROOT / "reproduce.sh"), *arguments], capture_output=True, text=True,
                              env={**os.environ, "AVLIB_PYTHON": sys.executable})
        assert done.returncode == 2, (arguments, done.stderr)
        assert message in done.stderr and "unbound variable" not in done.stderr, (arguments, done.stderr)


# ----------------------------------------------------------------------------------------------------------------
# the browser test

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _browser() -> tuple[str, str]:
    """Chromium and its driver, or a skip that says how to get them (on CI, where AVLIB_BROWSER_TEST=1, a failure)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    reason = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        reason = "selenium is not installed (requirements.txt)"
    if not chromium or not driver:
        reason = ("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver; "
                  ".ci/run installs them)")
    if reason:
        if os.environ.get("AVLIB_BROWSER_TEST") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium, driver


def _texts(page, selector: str) -> list[str]:
    """The text of every element matching ``selector``, read in one go (JupyterLab re-renders outputs as they come)."""
    return page.execute_script("return [...document.querySelectorAll(arguments[0])].map(element => element.innerText)", selector)


#: what ./reproduce.sh lab needs of a checkout (the copy the browser test runs it in)
LAB_FILES = ("reproduce.sh", "requirements.txt", "pyproject.toml", "jupytext.toml", "jupyter", "notebooks", "avlib")


@pytest.fixture
def lab(tmp_path):
    """``./reproduce.sh lab`` on a copy of the checkout's files, with HOME pointed at an empty folder; yields
    (url, token, home, checkout)."""
    _browser()
    home = tmp_path / "home"
    home.mkdir()
    checkout = tmp_path / "checkout"
    for name in LAB_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb", ".ipynb_checkpoints"))
        else:
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    port, token = _free_port(), "avlib-test-token"
    log = (tmp_path / "lab.log").open("w")
    environment = {**os.environ, "HOME": str(home), "AVLIB_PYTHON": sys.executable}
    for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_PATH", "IPYTHONDIR", "JUPYTERLAB_SETTINGS_DIR"):
        environment.pop(variable, None)
    server = subprocess.Popen([str(checkout / "reproduce.sh"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"],
                              env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"./reproduce.sh lab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(1)
        yield url, token, home, checkout
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.mark.slow
def test_lab_opens_a_notebook_runs_its_first_cells_and_saves_the_py_unchanged(lab, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as when
    from selenium.webdriver.support.ui import WebDriverWait

    url, token, home, checkout = lab
    chromium, driver_path = _browser()
    source = checkout / "notebooks" / "01_pretrain.py"
    paired = source.with_suffix(".ipynb")
    text_before = source.read_bytes()
    started = time.time()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"{url}/lab/tree/notebooks/{source.name}?token={token}")
        wait = WebDriverWait(browser, 180)
        # opened by jupytext's notebook view, not as a text file
        wait.until(when.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
        assert not browser.find_elements(By.CSS_SELECTOR, ".jp-FileEditor")
        # keys go to the notebook once its kernel is up and it has the focus, with its first cell active
        wait.until(when.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")))
        wait.until(lambda page: "jp-mod-active" in (page.switch_to.active_element.get_attribute("class") or ""))
        time.sleep(3)
        keys = ActionChains(browser)
        # the notebook opens with its first cell selected: run the title, the parameters and the set-up cell
        # (which prints the profile's description and shows its settings)
        for _ in range(3):
            keys.key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).pause(0.5)
        keys.perform()
        try:
            output = WebDriverWait(browser, 300).until(
                lambda page: [text for text in _texts(page, ".jp-OutputArea-output") if text.strip()])
        except Exception:
            browser.save_screenshot(str(tmp_path / "no-output.png"))
            raise AssertionError(f"no output after running the first cells; the page is in {tmp_path / 'no-output.png'}") from None
        assert any("ShiftConfig(" in text for text in output), output
        assert not [text for text in _texts(browser, ".jp-OutputArea-output") if "Traceback" in text]
        ActionChains(browser).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        WebDriverWait(browser, 60).until(lambda page: paired.exists() and paired.stat().st_mtime > started)
        time.sleep(2)
    finally:
        browser.quit()
    assert source.read_bytes() == text_before, "saving from JupyterLab changed the tracked .py"
    outputs = [cell.get("outputs") for cell in json.loads(paired.read_text())["cells"] if cell["cell_type"] == "code"]
    assert any(outputs), "the paired .ipynb keeps the outputs"
    assert sorted(path.relative_to(home).as_posix() for path in home.rglob("*")) == [], "nothing is written to the home folder"
