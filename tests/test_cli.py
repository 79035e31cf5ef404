"The `groundsup` command: dispatch, help, and a tiny `groundsup demo` end to end (cached on the second run)."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest
from groundsup.cli import main

def test_unknown_command_and_usage(capsys):
    assert main(['nope']) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert main(['--help']) == 0 and 'groundsup {demo}' in capsys.readouterr().out

def test_demo_help_lists_options(capsys):
    with pytest.raises(SystemExit) as e: main(['demo', '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ('--out', '--n_train', '--device', '--quiet'): assert opt in out

def test_console_script_is_installed():
    exe = shutil.which('groundsup') or str(Path(sys.executable).parent / 'groundsup')
    if not Path(exe).exists(): pytest.skip('groundsup console script not installed (run make install)')
    r = subprocess.run([exe, '--help'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'demo' in r.stdout

def test_tiny_demo_writes_report_and_reuses_caches(tmp_path, capsys):
    args = ['demo', '--out', str(tmp_path / 'd'), '--n_train', '8', '--n_val', '4', '--n_test', '8', '--quiet', '--device', 'cpu']
    assert main(args) == 0
    out = capsys.readouterr().out
    report = tmp_path / 'd' / 'report.md'
    assert f'Report: {report}' in out and 'Stopped after grounding' in out
    text = report.read_text()
    assert 'pointing game' in text and '![grounding](grounding.png)' in text and (tmp_path / 'd' / 'grounding.png').stat().st_size > 1000
    m = json.loads((tmp_path / 'd' / 'metrics.json').read_text())
    assert 0 <= m['grounding']['pointing_game'] <= 1 and 0 < m['grounding']['mask_area'] < 1
    maps = tmp_path / 'd' / 'grounding' / 'maps-00000.safetensors'
    mtime = maps.stat().st_mtime_ns
    assert main(args) == 0
    assert maps.stat().st_mtime_ns == mtime          # grounding reused from the cache
