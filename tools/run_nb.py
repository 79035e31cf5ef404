"""Execute a notebook in place and store its outputs, as the docs site shows them: without a Jupyter kernel, so every view
of `groundsup.widgets` stores its static figure (a still that shows offline) instead of a live widget that needs the
kernel and a CDN. Cells flagged `slow` or `gpu`, and `#| eval: false` cells (as nbdev_test), are not run and keep their
stored outputs; the rest of the file
(metadata, ids) is kept as it is. Run `nbdev_clean` afterwards. Usage: python tools/run_nb.py nbs/<notebook>.ipynb ..."""
import json, os, re, sys
from pathlib import Path

def run(fn: Path):
    from execnb.nbio import read_nb, nb2dict
    from execnb.shell import CaptureShell
    fn = fn.resolve()
    raw = json.loads(fn.read_text())
    nb = read_nb(fn)
    flagged = lambda c: any(re.match(r'#\|\s*(slow|gpu)\b|#\|\s*eval:\s*false\b', l) for l in c.source.splitlines() if l.startswith('#|'))
    cwd = os.getcwd(); os.chdir(fn.parent)
    try: CaptureShell(fn).run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type != 'code' or flagged(c))
    finally: os.chdir(cwd)
    if len(nb.cells) != len(raw['cells']): raise RuntimeError(f"{fn}: the cells changed while running")
    for c, r in zip(nb.cells, raw['cells']):
        if c.cell_type == 'code' and not flagged(c): r['outputs'] = [nb2dict(o) for o in c.get('outputs', [])]
    fn.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    print(f'ran {fn.name}')

if __name__ == '__main__':
    if len(sys.argv) < 2: sys.exit(__doc__)
    for f in sys.argv[1:]: run(Path(f))
