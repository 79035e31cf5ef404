"""Check that the library is what `nbdev_export` makes of the notebooks, and that the notebooks are what
`nbdev_clean` leaves. Both tools run on a scratch copy, so the working tree is never modified here.
Exit 1 lists every file that differs, with the command that fixes it."""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path


def diff_tree(a: Path, b: Path, rel=Path()):
    "Relative paths that differ between directory trees `a` (ours) and `b` (regenerated)."
    c, out = filecmp.dircmp(a, b, ignore=['__pycache__', '.ipynb_checkpoints']), []
    out += [rel/f for f in c.left_only + c.right_only + c.diff_files + c.funny_files]
    # dircmp compares shallowly (size+mtime); re-check "same" files byte for byte
    out += [rel/f for f in c.same_files if not filecmp.cmp(a/f, b/f, shallow=False)]
    for d in c.common_dirs: out += diff_tree(a/d, b/d, rel/d)
    return out

def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")

def main(root: Path = Path(__file__).resolve().parents[1]):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ['settings.ini', 'nbs', 'groundsup']:
            src = root/name
            (shutil.copytree(src, tmp/name, ignore=shutil.ignore_patterns('__pycache__'))
             if src.is_dir() else shutil.copy2(src, tmp/name))
        run(['nbdev_export'], tmp)
        stale = diff_tree(root/'groundsup', tmp/'groundsup')
        if stale: problems.append(("library out of sync with the notebooks; run `nbdev_export` and commit both",
                                   [Path('groundsup')/p for p in stale]))
        run(['nbdev_clean'], tmp)
        dirty = diff_tree(root/'nbs', tmp/'nbs')
        if dirty: problems.append(("notebooks not clean; run `nbdev_clean` and commit", [Path('nbs')/p for p in dirty]))
    # a generated module that exists here but was never committed would be missing from a clean clone
    if (root/'.git').exists():
        r = subprocess.run(['git', 'ls-files', '--others', '--exclude-standard', 'groundsup', 'nbs'],
                           cwd=root, capture_output=True, text=True)
        untracked = [Path(p) for p in r.stdout.split()]
        if untracked: problems.append(("untracked files under groundsup/ or nbs/; `git add` them (or ignore them)", untracked))
    for msg, paths in problems:
        print(f"FAIL: {msg}:")
        for p in paths: print(f"    {p}")
    if problems: sys.exit(1)
    print("ok: groundsup/ matches nbdev_export, nbs/ matches nbdev_clean, nothing untracked")

if __name__ == '__main__': main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
