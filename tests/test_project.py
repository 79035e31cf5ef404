"Project-level invariants: dependency lists in step, CI runs the README's test command, notebook layering."
import ast, configparser, json, re, shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {'pytorch': 'torch'}  # conda-forge names that differ from PyPI's

def _norm(req: str):
    "('name', 'spec') with PyPI-style normalized name and whitespace-free spec."
    m = re.match(r'\s*([A-Za-z0-9_.\-]+)\s*(.*)$', req)
    name = m.group(1).lower().replace('_', '-')
    return CONDA_TO_PYPI.get(name, name), m.group(2).replace(' ', '')

def _settings():
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    return cfg['DEFAULT']

def test_environment_yml_mirrors_settings_ini():
    cfg = _settings()
    wanted = {_norm(r) for r in shlex.split(cfg['requirements']) + shlex.split(cfg['dev_requirements'])}
    env = yaml.safe_load((ROOT/'environment.yml').read_text())
    deps = env['dependencies']
    conda = [d for d in deps if isinstance(d, str)]
    pip = [p for d in deps if isinstance(d, dict) for p in d.get('pip', [])]
    python = [d for d in conda if d.startswith('python=')]
    assert python == [f"python={cfg['min_python']}"], f"environment.yml pins {python}, settings.ini min_python={cfg['min_python']}"
    have = {_norm(d) for d in conda + pip if not d.startswith(('python=', '-')) and d != 'pip'}
    assert have == wanted, (f"only in environment.yml: {sorted(have - wanted)}; "
                            f"only in settings.ini: {sorted(wanted - have)}")
    assert '-e .' in pip, "environment.yml should install groundsup itself (pip: -e .)"

def _readme_commands():
    "Shell commands of the README's 'Try it' code block(s), after the clone line."
    text = (ROOT/'README.md').read_text()
    assert '\n## Try it' in text, "README: no '## Try it' section (the commands a newcomer runs first)"
    quick = text.split('\n## Try it', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```(?:sh|bash)?\n(.*?)```', quick, flags=re.S)
    return [l.strip() for b in blocks for l in b.splitlines() if l.strip() and not l.strip().startswith(('#', 'git clone'))]

def test_ci_runs_readme_test_command_verbatim():
    cmds = _readme_commands()
    assert 1 <= len(cmds) <= 2, f"'Try it' should list one or two commands after the clone, found {cmds}"
    ci = [l.strip() for l in (ROOT/'.ci'/'run').read_text().splitlines()]
    test_cmds = [c for c in cmds if 'test' in c]
    assert test_cmds, f"no test command in 'Try it': {cmds}"
    for c in test_cmds: assert c in ci, f"README test command {c!r} is not a line of .ci/run"

def test_readme_main_job_is_the_demo():
    main = [c for c in _readme_commands() if 'test' not in c]
    assert main == ['make demo'], f"'Try it's main-job command should be `make demo`, found {main}"
    mk = (ROOT/'Makefile').read_text()
    assert re.search(r'^demo: \$\(STAMP\)\n\t@\$\(VENV\)/bin/groundsup demo', mk, flags=re.M), "Makefile: `demo` should install, then run `groundsup demo`"

def _notebooks():
    return sorted(p for p in (ROOT/'nbs').glob('[0-9][0-9]*_*.ipynb'))

def _rank(nb: Path):
    "Order of a notebook: `08_train` -> (8, ''), `08a_experiment` -> (8, 'a'), which comes after it."
    m = re.match(r'(\d+)([a-z]?)_', nb.name)
    return int(m.group(1)), m.group(2)

def _exported_module(nb: Path):
    for cell in json.loads(nb.read_text())['cells']:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(cell['source']), flags=re.M)
        if m: return m.group(1)

def test_every_numbered_notebook_exports_a_module():
    nbs = _notebooks()
    assert nbs, "no numbered notebooks in nbs/"
    for nb in nbs:
        mod = _exported_module(nb)
        assert mod, f"{nb.name} has no `#| default_exp`"
        assert (ROOT/'groundsup'/(mod.replace('.', '/') + '.py')).exists(), f"{nb.name}: groundsup/{mod}.py missing (run nbdev_export)"

def test_modules_import_only_lower_numbered_notebooks():
    "Each notebook is one room: its module may import groundsup modules of lower-numbered notebooks only."
    rank = {_exported_module(nb): _rank(nb) for nb in _notebooks()}
    def owner(name):   # 'groundsup.widgets.core.x' -> 'widgets.core', the longest exported module it names
        parts = name.split('.')[1:]
        for k in range(len(parts), 0, -1):
            m = '.'.join(parts[:k])
            if m in rank: return m
            if f'{m}.__init__' in rank: return f'{m}.__init__'
    for mod, r in rank.items():
        package = ['groundsup'] + mod.split('.')[:-1]        # what a relative import starts from
        tree = ast.parse((ROOT/'groundsup'/(mod.replace('.', '/') + '.py')).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import): names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0: names = [node.module or '']
            elif isinstance(node, ast.ImportFrom):
                base = '.'.join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                names = [base] if node.module else [f'{base}.{a.name}' for a in node.names]
            else: continue
            for n in names:
                if not n.startswith('groundsup.'): continue
                dep = owner(n)
                if dep and dep != mod: assert rank[dep] < r, f"groundsup.{mod} (notebook {r}) imports groundsup.{dep} (notebook {rank[dep]})"
def test_module_map_page_matches_the_code():
    "The developers' module map (nbs/developers/module_map.ipynb) stores a table computed from the imports: it must match the code now."
    nb = json.loads((ROOT/'nbs'/'developers'/'module_map.ipynb').read_text())
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and 'def module_map' in ''.join(c['source']))
    stored = ''.join(next(o for o in cell['outputs'] if 'text/markdown' in o.get('data', {}))['data']['text/markdown'])
    tree = ast.parse(''.join(cell['source']))
    ns = {}
    exec(compile(ast.Module(body=tree.body[:-1], type_ignores=[]), 'module_map', 'exec'), ns)
    now = eval(compile(ast.Expression(tree.body[-1].value), 'module_map', 'eval'), ns).data
    assert stored == now, "the module map page is stale: rerun nbs/developers/module_map.ipynb (jupyter nbconvert --execute --inplace, then nbdev_clean)"
    floors = {m: f for f, m, _, _ in ns['rows']}
    assert floors['core'] == 1 and all(floors[d] < f for f, m, deps, _ in ns['rows'] for d in deps)

# Private imports that stay until a notebook another worker edits catches up; each names its fix. An entry whose import
# is gone fails the test below, so that the list only ever shrinks.
PRIVATE_IMPORTS_ALLOWED = {
}

def _private_imports(source: str, package: list[str]) -> set[tuple[str, str]]:
    "(groundsup module, name) of every private name (`_x`, not `__x__`) that `source` imports from groundsup; `package`: where its relative imports start."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom): continue
        if node.level == 0: base = node.module or ''
        else: base = '.'.join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
        if base != 'groundsup' and not base.startswith('groundsup.'): continue
        for a in node.names:
            if a.name.startswith('_') and not (a.name.startswith('__') and a.name.endswith('__')):
                found.add((base.removeprefix('groundsup').lstrip('.') or 'groundsup', a.name))
    return found

def test_private_import_finder():
    src = ("from .world import sample_scenes, _seed\nfrom groundsup.core import _check_maps\nfrom captum._utils.common import _run_forward\n"
           "from groundsup import __version__\ndef f():\n    from ..core import _SEAL\n")
    assert _private_imports(src, ['groundsup', 'widgets']) == {('widgets.world', '_seed'), ('core', '_check_maps'), ('core', '_SEAL')}

def test_no_private_names_imported_across_modules():
    "A `_name` belongs to its module: no other module of groundsup, and no script of experiments/, imports it."
    pkg = ROOT/'groundsup'
    files = {p.relative_to(pkg).with_suffix('').as_posix().replace('/', '.'): p for p in pkg.rglob('*.py') if p.name != '_modidx.py'}
    files.update({f'experiments/{p.name}': p for p in (ROOT/'experiments').glob('*.py')})
    found = set()
    for mod, path in files.items():
        package = [] if mod.startswith('experiments/') else ['groundsup'] + mod.split('.')[:-1]   # a package's __init__ starts from itself
        found |= {(mod, m, n) for m, n in _private_imports(path.read_text(), package) if m != mod}
    stale = set(PRIVATE_IMPORTS_ALLOWED) - found
    assert not stale, f"fixed, so remove from PRIVATE_IMPORTS_ALLOWED: {sorted(stale)}"
    bad = sorted(found - set(PRIVATE_IMPORTS_ALLOWED))
    assert not bad, ("private names imported from another module (make each public, with docments and a test, or keep it in its module): "
                     + '; '.join(f'{m} imports {n} from groundsup.{b}' for m, b, n in bad))
