"The test command's first gate really catches a notebook edited without `nbdev_export`, and an unclean notebook."
import json, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _copy(tmp: Path):
    for name in ['settings.ini', 'nbs', 'groundsup']:
        src = ROOT/name
        shutil.copytree(src, tmp/name, ignore=shutil.ignore_patterns('__pycache__')) if src.is_dir() else shutil.copy2(src, tmp/name)
    return tmp

def _check(root):
    return subprocess.run([sys.executable, str(ROOT/'tools'/'check_sync.py'), str(root)], capture_output=True, text=True)

def _edit_core(root, fn):
    p = root/'nbs'/'00_core.ipynb'
    nb = json.loads(p.read_text())
    fn(nb)
    p.write_text(json.dumps(nb, indent=1) + '\n')

def test_in_sync_copy_passes(tmp_path):
    r = _check(_copy(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr

def test_unexported_edit_fails(tmp_path):
    root = _copy(tmp_path)
    def edit(nb):
        cell = next(c for c in nb['cells'] if ''.join(c['source']).startswith('#| export') and 'def seed_everything' in ''.join(c['source']))
        cell['source'] = ''.join(cell['source']).replace('return seed', 'return seed + 0')
    _edit_core(root, edit)
    r = _check(root)
    assert r.returncode == 1 and 'groundsup/core.py' in r.stdout, r.stdout + r.stderr

def test_unclean_notebook_fails(tmp_path):
    root = _copy(tmp_path)
    _edit_core(root, lambda nb: nb['cells'][0]['metadata'].update(collapsed=True, scrolled=True))
    r = _check(root)
    assert r.returncode == 1 and 'nbs/00_core.ipynb' in r.stdout, r.stdout + r.stderr
