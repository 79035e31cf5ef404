"The comparer, its yes/no answers and region answers (a box dragged, a click) in a real browser: JupyterLab on 127.0.0.1, a notebook that builds them on the shipped world, headless Chromium via playwright."
import json, os, secrets, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
ARTIFACTS = ROOT/'tests'/'artifacts'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync']

pytestmark = pytest.mark.slow

NOTEBOOK_CODE = """\
import torch
from groundsup.world import make_world, load_world_clip, OBJECT_PROMPT
from groundsup.data import WaterbirdsDataset
from groundsup.train import toy_net
from groundsup.widgets import Comparer, FeedbackView
root = make_world('world', n_train=0, n_val=0, n_test=8, size=112, progress=False)
torch.manual_seed(0)
cmp = Comparer(WaterbirdsDataset(root, 'test'), load_world_clip(device='cpu'), toy_net(2), prompts=[OBJECT_PROMPT],
               classes=['round', 'angular'], group_names=['round on land', 'round on water', 'angular on land', 'angular on water'],
               threads=1)
fv = FeedbackView(cmp, 'answers.jsonl')
fv
"""

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _importable(name: str) -> bool:
    import importlib.util
    try: return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError: return False

def _notebook(path: Path):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': 'comparer', 'metadata': {}, 'outputs': [],
                     'source': NOTEBOOK_CODE.splitlines(keepends=True)}],
          'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))

@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 (random free port, random token) serving `tmp_path`; yields its base URL and token."
    missing = [why for ok, why in ((CHROMIUM.exists(), f"{CHROMIUM} is not installed (apt-get install chromium; CI installs it)"),
                                   (_importable('playwright.sync_api'), "the playwright package is not installed (pip install playwright)"),
                                   (_importable('jupyterlab'), "jupyterlab is not installed"))
               if not ok]
    if missing:   # CI sets GROUNDSUP_REQUIRE_BROWSER=1: there a missing piece fails the test instead of skipping it
        (pytest.fail if os.environ.get('GROUNDSUP_REQUIRE_BROWSER') == '1' else pytest.skip)('; '.join(missing))
    _notebook(tmp_path/'comparer.ipynb')
    news = tmp_path/'.settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True); news.write_text(json.dumps({'fetchNews': 'false'}))   # no "Jupyter news?" toast over the screenshots
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path/'.config'), JUPYTERLAB_SETTINGS_DIR=str(tmp_path/'.settings'),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path/'.workspaces'), JUPYTER_RUNTIME_DIR=str(tmp_path/'.runtime'),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={tmp_path}',
           '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')   # CI containers often run as root
    log = open(tmp_path/'lab.log', 'w')
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None: pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{(tmp_path/'lab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.time() > deadline: pytest.fail(f"JupyterLab did not answer in 120 s:\n{(tmp_path/'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token, tmp_path
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

def _src(page, cls):
    return page.eval_on_selector(f'img.{cls}', 'e => e.src')

def _wait_src_change(page, cls, old, t, timeout=120_000):
    "Wait until the panel's image is replaced; returns the seconds since `t` (a `time.perf_counter()` taken before the action)."
    page.wait_for_function("([c, old]) => { const e = document.querySelector('img.' + c); return e && e.src && e.src !== old; }",
                           arg=[cls, old], timeout=timeout)
    return time.perf_counter() - t

def _wait_ready(page, timeout=120_000):
    page.wait_for_function("() => { const s = document.querySelector('.groundsup-status'); "
                           "return s && s.textContent.includes('ready') && !document.querySelector('.groundsup-comparer.groundsup-busy'); }",
                           timeout=timeout)

def _wait_text(page, sel, text, timeout=120_000):
    "Wait until the element `sel` contains `text`."
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.textContent.includes(t); }",
                           arg=[sel, text], timeout=timeout)

def test_comparer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright
    url, token, tmp = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={'width': 1500, 'height': 1100})
            page.goto(f'{url}/lab/tree/comparer.ipynb?token={token}', timeout=120_000)
            page.wait_for_selector('.jp-NotebookPanel .jp-Cell', timeout=120_000)
            # once the kernel is idle, run the cell with Shift+Enter
            page.wait_for_function("() => /\\|\\s*Idle/.test(document.body.innerText)", timeout=120_000)
            no = page.locator('.jp-Notification-Toast button', has_text='No')
            if no.count(): no.first.click()                  # the "Jupyter news?" question, if asked
            page.locator('.jp-Cell .jp-InputArea-editor').first.click()
            t = time.perf_counter()
            page.keyboard.press('Shift+Enter')
            page.wait_for_selector('.groundsup-comparer', timeout=180_000)
            _wait_ready(page, 180_000)
            timings['run_cell_to_ready_s'] = time.perf_counter() - t
            # the controls and the four panels rendered
            for sel in ('.groundsup-prompts input', '.groundsup-slider', 'button.groundsup-next', 'button.groundsup-prev', '.groundsup-jump input'):
                assert page.locator(sel).count() == 1 and page.locator(sel).is_visible(), sel
            assert page.locator('.groundsup-comparer select').count() >= 7      # filters, methods, target, colormap
            panels = ['groundsup-panel-image', 'groundsup-panel-grounding', 'groundsup-panel-attention', 'groundsup-panel-agreement']
            for c in panels:
                size = page.eval_on_selector(f'img.{c}', 'e => [e.naturalWidth, e.naturalHeight]')
                assert size == [224, 224], (c, size)
            assert 'pred' in page.inner_text('.groundsup-comparer')
            page.screenshot(path=str(ARTIFACTS/'comparer_initial.png'), full_page=True)
            before = {c: _src(page, c) for c in panels}
            shot_g = page.locator('img.groundsup-panel-grounding').screenshot()

            # a new prompt: the grounding (and agreement) panels change, the image panel does not
            box = page.locator('.groundsup-prompts input')
            box.fill('a photo of water')
            t = time.perf_counter(); box.press('Enter')
            timings['prompt_change_s'] = _wait_src_change(page, 'groundsup-panel-grounding', before['groundsup-panel-grounding'], t)
            _wait_ready(page)
            timings['prompt_change_kernel_status'] = page.inner_text('.groundsup-status')
            assert page.locator('img.groundsup-panel-grounding').screenshot() != shot_g
            assert _src(page, 'groundsup-panel-image') == before['groundsup-panel-image']
            assert 'water' in page.inner_text('.groundsup-comparer')
            page.screenshot(path=str(ARTIFACTS/'comparer_prompt_water.png'), full_page=True)

            # the next image: every panel changes
            after_prompt = {c: _src(page, c) for c in panels}
            shot_i = page.locator('img.groundsup-panel-image').screenshot()
            t = time.perf_counter(); page.locator('button.groundsup-next').click()
            timings['image_change_s'] = _wait_src_change(page, 'groundsup-panel-image', after_prompt['groundsup-panel-image'], t)
            _wait_ready(page)
            timings['image_change_kernel_status'] = page.inner_text('.groundsup-status')
            for c in panels: assert _src(page, c) != after_prompt[c], c
            assert page.locator('img.groundsup-panel-image').screenshot() != shot_i
            assert page.input_value('.groundsup-jump input') == '1'
            assert '#1' in page.inner_text('.groundsup-comparer')
            page.screenshot(path=str(ARTIFACTS/'comparer_next_image.png'), full_page=True)

            # jump to an index
            old = _src(page, 'groundsup-panel-image')
            jump = page.locator('.groundsup-jump input')
            jump.fill('5'); t = time.perf_counter(); jump.press('Enter')
            timings['jump_s'] = _wait_src_change(page, 'groundsup-panel-image', old, t)
            _wait_ready(page)
            assert '#5' in page.inner_text('.groundsup-comparer')
            page.screenshot(path=str(ARTIFACTS/'comparer_jump_5.png'), full_page=True)

            # yes/no answers: a click answers about the shown map, saves it and moves to the next image
            answers = tmp/'answers.jsonl'
            old = _src(page, 'groundsup-panel-image')
            t = time.perf_counter(); page.locator('button.groundsup-wrong').click()
            _wait_text(page, '.groundsup-answer-count', '1 answered: 1 wrong, 0 right, 0 region · 7 left')
            timings['answer_s'] = _wait_src_change(page, 'groundsup-panel-image', old, t)
            _wait_ready(page)
            timings['answer_kernel_status'] = page.inner_text('.groundsup-status')
            recs = [json.loads(l) for l in answers.read_text().splitlines()[1:-1]]   # between the header and the end line
            assert [r['answer'] for r in recs] == ['wrong'] and page.input_value('.groundsup-jump input') == '6'
            assert 'not answered' in page.inner_text('.groundsup-answer')
            # ... and a key (ipyevents: while the pointer is over the view), which JupyterLab does not also take
            page.hover('img.groundsup-panel-attention')
            cells = page.locator('.jp-Cell').count()
            old = _src(page, 'groundsup-panel-image')
            t = time.perf_counter(); page.keyboard.press('y')
            _wait_text(page, '.groundsup-answer-count', '2 answered: 1 wrong, 1 right, 0 region · 6 left')
            timings['key_answer_s'] = _wait_src_change(page, 'groundsup-panel-image', old, t)
            _wait_ready(page)
            assert [json.loads(l)['answer'] for l in answers.read_text().splitlines()[1:-1]] == ['wrong', 'right']
            assert page.locator('.jp-Cell').count() == page.locator('.jp-CodeCell').count() == cells   # the key did not reach JupyterLab
            page.screenshot(path=str(ARTIFACTS/'feedback_answered.png'), full_page=True)

            # the filter: only the images answered "wrong"
            t = time.perf_counter(); page.select_option('.groundsup-answer-filter select', 'wrong')
            _wait_text(page, '.groundsup-count', 'image 1 of 1 (of 8)')
            timings['filter_s'] = time.perf_counter() - t
            _wait_text(page, '.groundsup-answer', 'answered wrong')
            _wait_ready(page)
            assert page.input_value('.groundsup-jump input') == '5'
            page.screenshot(path=str(ARTIFACTS/'feedback_filter_wrong.png'), full_page=True)
            page.select_option('.groundsup-answer-filter select', 'all')
            _wait_text(page, '.groundsup-count', 'image 6 of 8')

            # region answers on an unanswered image (7), with the object prompt shown again: drag a box around the shape, then click on it
            for k in (6, 7):
                old = _src(page, 'groundsup-panel-image')
                page.locator('button.groundsup-next').click()
                _wait_src_change(page, 'groundsup-panel-image', old, time.perf_counter())
                _wait_ready(page)
            assert page.input_value('.groundsup-jump input') == '7' and 'not answered' in page.inner_text('.groundsup-answer')
            old = _src(page, 'groundsup-panel-grounding')
            prompt = page.locator('.groundsup-prompts input')
            prompt.fill('a photo of a shape'); prompt.press('Enter')
            _wait_src_change(page, 'groundsup-panel-grounding', old, time.perf_counter())
            _wait_ready(page)
            from groundsup.data import WaterbirdsDataset                   # where the shape is: the world's true mask of image 7
            mask = WaterbirdsDataset(tmp/'world', 'test', masks=True)[7]['mask'][0] > 0
            ys, xs = mask.nonzero(as_tuple=True)
            H, W = mask.shape
            tight = [float(xs.min()) / W, float(ys.min()) / H, float(xs.max() + 1) / W, float(ys.max() + 1) / H]
            centre = (float(xs.float().mean() + 0.5) / W, float(ys.float().mean() + 0.5) / H)
            assert mask[int(centre[1] * H), int(centre[0] * W)], 'the centre of this shape is not on it'
            img = page.locator('img.groundsup-panel-image')
            bb = img.bounding_box()
            at = lambda fx, fy: (bb['x'] + fx * bb['width'], bb['y'] + fy * bb['height'])
            drawn = [max(tight[0] - 0.03, 0.01), max(tight[1] - 0.03, 0.01), min(tight[2] + 0.03, 0.99), min(tight[3] + 0.03, 0.99)]
            old = _src(page, 'groundsup-panel-image')
            page.mouse.move(*at(drawn[0], drawn[1])); page.mouse.down()
            for k in range(1, 9): page.mouse.move(*at(drawn[0] + k / 8 * (drawn[2] - drawn[0]), drawn[1] + k / 8 * (drawn[3] - drawn[1])))
            t = time.perf_counter(); page.mouse.up()
            _wait_text(page, '.groundsup-answer-count', '3 answered: 1 wrong, 1 right, 1 region · 5 left')
            timings['region_box_s'] = _wait_src_change(page, 'groundsup-panel-image', old, t)   # the outline drawn
            _wait_text(page, '.groundsup-answer', 'answered region (1 box, 0 clicks)')
            rec = json.loads(answers.read_text().splitlines()[-2])             # the last record, before the end line
            assert rec['answer'] == 'region' and len(rec['boxes']) == 1 and rec['clicks'] == [], rec
            assert all(abs(a - b) <= 0.02 for a, b in zip(rec['boxes'][0], drawn)), (rec['boxes'], drawn)   # in the image's fractions
            assert page.locator('.jp-Cell').count() == cells                  # the drag did not reach JupyterLab
            page.screenshot(path=str(ARTIFACTS/'feedback_region_box.png'), full_page=True)
            old = _src(page, 'groundsup-panel-image')
            t = time.perf_counter(); page.mouse.click(*at(*centre))
            _wait_text(page, '.groundsup-answer', 'answered region (1 box, 1 click)')
            timings['region_click_s'] = _wait_src_change(page, 'groundsup-panel-image', old, t)
            rec = json.loads(answers.read_text().splitlines()[-2])
            assert rec['answer'] == 'region' and len(rec['boxes']) == 1 and len(rec['clicks']) == 1, rec
            assert all(abs(a - b) <= 0.02 for a, b in zip(rec['clicks'][0], centre)), (rec['clicks'], centre)
            assert [json.loads(l)['answer'] for l in answers.read_text().splitlines()[1:-1]] == ['wrong', 'right', 'region']
            _wait_text(page, '.groundsup-answer-count', '3 answered: 1 wrong, 1 right, 1 region · 5 left')
            page.screenshot(path=str(ARTIFACTS/'feedback_region.png'), full_page=True)
            img.screenshot(path=str(ARTIFACTS/'feedback_region_panel.png'))

            # restart the kernel, run the cell again: the answers are reloaded from the file
            page.evaluate("() => document.querySelectorAll('.groundsup-feedback-view').forEach(e => e.classList.add('groundsup-old'))")
            page.locator('.jp-Cell .jp-InputArea-editor').first.click()
            page.keyboard.press('Escape'); page.keyboard.press('0'); page.keyboard.press('0')      # command mode: restart the kernel
            page.locator('.jp-Dialog button', has_text='Restart').click()
            time.sleep(2)
            page.wait_for_function("() => /\\|\\s*Idle/.test(document.body.innerText)", timeout=120_000)
            time.sleep(1)
            page.locator('.jp-Cell .jp-InputArea-editor').first.click()
            t = time.perf_counter(); page.keyboard.press('Shift+Enter')
            page.wait_for_selector('.groundsup-feedback-view:not(.groundsup-old)', timeout=180_000)
            _wait_text(page, '.groundsup-feedback-view:not(.groundsup-old) .groundsup-answer-count', '3 answered: 1 wrong, 1 right, 1 region · 5 left', 180_000)
            _wait_ready(page, 180_000)
            timings['reload_after_restart_s'] = time.perf_counter() - t
            page.select_option('.groundsup-answer-filter select', 'right')
            _wait_text(page, '.groundsup-count', 'image 1 of 1 (of 8)')
            _wait_text(page, '.groundsup-answer', 'answered right')          # set once the image is shown
            assert page.input_value('.groundsup-jump input') == '6'
            page.screenshot(path=str(ARTIFACTS/'feedback_reloaded.png'), full_page=True)
            old = _src(page, 'groundsup-panel-image')
            page.select_option('.groundsup-answer-filter select', 'region')    # the region came back too, outlined
            _wait_src_change(page, 'groundsup-panel-image', old, time.perf_counter())
            _wait_text(page, '.groundsup-answer', 'answered region (1 box, 1 click)')
            _wait_text(page, '.groundsup-count', 'image 1 of 1 (of 8)')
            assert page.input_value('.groundsup-jump input') == '7'
            page.screenshot(path=str(ARTIFACTS/'feedback_reloaded_region.png'), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS/'failure.png'), full_page=True); raise
        finally:
            browser.close()
    (ARTIFACTS/'timings.json').write_text(json.dumps(timings, indent=1))
    print(json.dumps(timings, indent=1))
