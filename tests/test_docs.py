"The docs build (tools/docs.py) on small inputs: page layout, relative links, show_doc anchors; the site check on a toy site."
import importlib.util, json, os, re, sys
from pathlib import Path
from urllib.parse import urlparse

import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = 'https://groundsup.github.io/groundsup'

def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT/'tools'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); sys.modules[name] = mod; spec.loader.exec_module(mod)
    return mod

docs = _load('docs')

def test_layout_sections_and_order(tmp_path):
    for f in ['index', '00_core', '08_train', '08a_experiment', '09a_audit', '11_cli', 'tutorials/quickstart', 'tutorials/coming_from_gals',
              'howto/own_dataset', 'experiments/gals_normalize', 'developers/module_map', '_hidden', 'tutorials/.ipynb_checkpoints/x']:
        (tmp_path/f'{f}.ipynb').parent.mkdir(parents=True, exist_ok=True); (tmp_path/f'{f}.ipynb').write_text('{}')
    got = [(name, section) for _, name, section in docs.layout(tmp_path)]
    assert got == [('index', 'Get started'), ('tutorials/quickstart', 'Get started'), ('tutorials/coming_from_gals', 'Tutorials'),
                   ('howto/own_dataset', 'How-to guides'), ('core', 'Library: grounding'), ('train', 'Library: training'),
                   ('experiment', 'Library: training'), ('audit', 'Library: reports and widgets'), ('cli', 'Library: command line'),
                   ('experiments/gals_normalize', 'Experiments'), ('developers/module_map', 'Developers')]
    assert docs.library_section('05_world') == 'Library: grounding' and docs.library_section('10g_all_widgets') == 'Library: reports and widgets'

def test_notebook_links_go_to_pages():
    "A link to another notebook becomes a link to its page (site) or to the notebook in the repository (README)."
    rw = docs.Rewriter(BASE)
    assert docs.nb_page('../08a_experiment.ipynb', 'tutorials/quickstart') == 'experiment.html'
    assert 'href="../experiment.html#seeds"' in rw.links('the [experiment\npage](../08a_experiment.ipynb#seeds)', 'tutorials/quickstart')
    assert 'href="tutorials/quickstart.html"' in rw.links('[start](tutorials/quickstart.ipynb)', 'index')
    assert rw.links('[x](https://example.org/a.ipynb) `[y](z.ipynb)`', 'index').startswith('[x](https://example.org/a.ipynb)')

def test_page_mentions_are_links():
    "'the experiment page' and the like, in any notebook's text, link to that page (a newcomer should not have to search for it)."
    pages = '|'.join(docs.page_name(p)[:-5] for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))
    mention = re.compile(rf"\b[Tt]he\s+`?({pages})`?\s+page\b(?!\]\()")
    bad = []
    for f in sorted((ROOT/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in f.parts: continue
        for c in json.loads(f.read_text())['cells']:
            if c['cell_type'] != 'markdown': continue
            text = re.sub(r'```.*?```', '', ''.join(c['source']), flags=re.S)
            bad += [f"{f.relative_to(ROOT)}: {m.group(0)!r}" for m in mention.finditer(text)
                    if not (f.stem.endswith('_' + m.group(1)) or text[max(0, m.start() - 1)] == '[')]
    assert not bad, 'unlinked page mentions:\n' + '\n'.join(bad)

def test_no_live_widget_is_stored():
    "Every stored output shows offline: no live widget (it needs a kernel and a CDN, and is blank on the site), no widget state."
    bad = []
    for f in sorted((ROOT/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in f.parts: continue
        nb = json.loads(f.read_text())
        if 'widgets' in nb.get('metadata', {}): bad.append(f"{f.relative_to(ROOT)}: widget state in the notebook's metadata")
        for i, c in enumerate(nb['cells']):
            for o in c.get('outputs', []):
                if 'application/vnd.jupyter.widget-view+json' in o.get('data', {}):
                    bad.append(f"{f.relative_to(ROOT)}: cell {i} stores a live widget")
    assert not bad, ('make the outputs without a kernel, `python tools/run_nb.py <notebook>` then `nbdev_clean` '
                     '(each view then stores its static figure):\n' + '\n'.join(bad))

def test_relative_links():
    assert docs._rel('grounding.html#ground', 'tutorials/quickstart') == '../grounding.html#ground'
    assert docs._rel('grounding.html#ground', 'data') == 'grounding.html#ground'
    assert docs._rel('tutorials/quickstart.html', 'tutorials/coming_from_gals') == 'quickstart.html'
    assert docs._rel('', 'tutorials/quickstart') == '../index.html'

def test_doc_links_become_relative_and_unknown_anchors_go_to_the_page():
    rw = docs.Rewriter(BASE, {'grounding.html': {'ground', 'load_clip'}})
    md = f"see [`ground`]({BASE}/grounding.html#ground) and [`_helper`]({BASE}/grounding.html#_helper), [torch](https://pytorch.org)"
    out = rw.links(md, 'tutorials/quickstart')
    assert 'href="../grounding.html#ground"' in out and '<code' in out
    assert 'href="../grounding.html"' in out and rw.missing == {'grounding.html#_helper'}
    assert '[torch](https://pytorch.org)' in out and BASE not in out

def test_headings_keep_names_not_links():
    "The page's table of contents links each heading: a link in the heading would be a link inside a link."
    md = f"## [`attribute`]({BASE}/attribution.html#attribute)\n\nsee [`ground`]({BASE}/grounding.html#ground)"
    out = docs.Rewriter(BASE).links(md, 'attribution')
    assert out.startswith('## `attribute`\n') and 'href="grounding.html#ground"' in out and BASE not in out

def test_show_doc_output_signature_links_and_anchor():
    md = (f"---\n\n[source](https://github.com/groundsup/groundsup/blob/main/groundsup/grounding.py#L137)"
          '{target="_blank" style="float:right; font-size:smaller"}\n\n### load_clip\n\n```python\ndef load_clip(\n'
          f"    precision:str='fp32', # fp32 or amp ([`ground`]({BASE}/grounding.html#ground) runs under autocast)\n\n"
          ")->CLIPBundle:\n```\n\n*Load an open_clip model.*")
    anchors = set()
    out = docs.Rewriter(BASE, {'grounding.html': {'ground'}}).show_doc(md, 'grounding', anchors)
    assert anchors == {'load_clip'}
    assert not out.lstrip().startswith('---') and '{target=' not in out and BASE not in out
    head, rest = out.split('### load_clip', 1)
    assert 'grounding.py#L137' in rest and 'grounding.py#L137' not in head       # the source link sits under its heading
    assert "python\n:class: gs-signature\n\nload_clip(precision='fp32') -> CLIPBundle\n```" in rest   # a short signature ...
    table = rest[rest.index('| Parameter |'):]                                       # ... and its parameters in a table below the docstring
    assert rest.index('*Load an open_clip model.*') < rest.index('| Parameter |')
    assert "| `precision` | `str` | `'fp32'` | fp32 or amp (" in table
    assert '<a class="reference internal" href="grounding.html#ground"><code' in table   # the doc link, relative, in the table
    assert '{.gs-params}' in rest

def test_signature_table():
    "nbdev's docments signature -> a short signature (wrapped at 64) and a parameter table; other text is left alone."
    code = ("def f(\n    a:int, # the # count\n    b:str | None=None, # pipes | escaped\n    *args,\n    c:list=<factory>,\n"
            "    **kw, # passed on\n)->torch.Tensor: # maps\n")
    params, ret = docs.parse_signature(code)
    assert params == [('a', 'int', '', 'the # count'), ('b', 'str | None', 'None', 'pipes | escaped'), ('*args', '', '', ''),
                      ('c', 'list', '<factory>', ''), ('**kw', '', '', 'passed on')]
    assert ret == ('torch.Tensor', 'maps')
    assert docs.short_signature('f', params, ret) == "f(a, b=None, *args, c=<factory>, **kw) -> torch.Tensor"
    long = docs.short_signature('g', [(f'p{i}', '', repr('x' * 8), '') for i in range(8)], ('', ''))
    assert len(long.splitlines()) == 2 and all(len(l) <= 64 for l in long.splitlines()) and long.splitlines()[1].startswith('    ')
    table = docs.param_table(params, ret).splitlines()
    assert table[0] == '| Parameter | Type | Default | Details |' and len(table) == 2 + 5 + 1
    assert table[3] == r"| `b` | `str \| None` | `None` | pipes \| escaped |" and table[-1] == '| **Returns** | `torch.Tensor` |  | maps |'
    assert docs.parse_signature('x = 1') is None and docs.split_signature('no code here', 'f') == 'no code here'
    assert docs.param_table([], ('None', '')) == ''

def test_checks_are_split_from_examples():
    "A cell's top-level assertions go to a collapsed cell below the example (with their comment lines); mixed lines stay."
    ex, checks = docs.split_checks("x = f(1)\n# the shape\ntest_eq(x.shape, (2,))\ny = g(x)\nassert y > 0\nfor v in x:\n    test_close(v, 1)\ny")
    assert ex == "x = f(1)\ny = g(x)\ny"
    assert checks == "# the shape\ntest_eq(x.shape, (2,))\nassert y > 0\nfor v in x:\n    test_close(v, 1)"
    assert docs.split_checks("x = 1; test_eq(x, 1)") == ("x = 1; test_eq(x, 1)", '')
    assert docs.split_checks("plot(x)") == ("plot(x)", '')
    nb = _nb(nbformat.v4.new_code_cell("m = f()\ntest_eq(m, 1)"), nbformat.v4.new_code_cell("test_eq(1, 1)"))
    docs.to_myst(nb, 'grounding', docs.Rewriter(BASE), set())
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert [(c.source, c.metadata['tags']) for c in code] == [('m = f()', []), ('test_eq(m, 1)', ['hide-input']), ('test_eq(1, 1)', ['hide-input'])]

def test_api_index_and_module_line(tmp_path):
    rw = docs.Rewriter(BASE)
    md = "---\n\n### ground\n\n```python\ndef ground(\n    x:int, # an x\n)->int:\n```\n\n*Ground it. More words.*"
    rw.show_doc(md, 'grounding', set())
    assert rw.entries == [('ground', 'grounding', 'ground', 'Ground it. More words.')]
    page = docs.api_index(rw.entries + [('_helper', 'core', '_helper', '')], {'grounding': 'Grounding'})
    assert '| [`ground`](grounding.ipynb#ground) | [Grounding](grounding.ipynb) | Ground it. |' in page and '2 entries' in page
    assert page.index('`ground`') < page.index('`_helper`')      # A-Z, ignoring leading underscores
    nb = tmp_path/'00_x.ipynb'; nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': ['#| default_exp sub.mod']}]}))
    cfg = type('C', (), {'lib_name': 'groundsup', 'lib_path': Path('groundsup'), 'git_url': 'https://github.com/o/r', 'get': lambda self, k, d=None: d})()
    assert docs.module_line(nb, cfg) == "Module `groundsup.sub.mod` ([source](https://github.com/o/r/blob/main/groundsup/sub/mod.py))"

def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_raw_cell("---\ntitle: grounding\ndescription: 'Ground words.'\n---")] + list(cells)
    return nb

def test_to_myst_directives():
    shown = nbformat.v4.new_code_cell('#| echo: false\n#| output: asis\nshow_doc(ground)')
    shown.outputs = [nbformat.v4.new_output('execute_result', {'text/markdown': '### ground\n\ntext', 'text/plain': 'x'})]
    hidden_out = nbformat.v4.new_code_cell('#| output: false\nx = 1')
    no_echo = nbformat.v4.new_code_cell('#| echo: false\nprint(1)')
    dropped = nbformat.v4.new_code_cell('#| include: false\nsecret = 1')
    nb, anchors = _nb(shown, hidden_out, no_echo, dropped), set()
    assert docs.to_myst(nb, 'grounding', docs.Rewriter(BASE), anchors) == 'grounding'
    assert anchors == {'ground'}
    kinds = [(c.cell_type, c.source.splitlines()[0] if c.source else '', c.metadata.get('tags', [])) for c in nb.cells]
    assert kinds == [('markdown', '# grounding', []), ('markdown', '### ground', []), ('code', 'x = 1', ['remove-output']),
                     ('code', 'print(1)', ['remove-input'])]

def test_toctree_sections():
    pages = [(None, 'index', 'Get started'), (None, 'tutorials/quickstart', 'Get started'), (None, 'core', 'Library')]
    t = docs.toctree(pages, {'index': 'groundsup', 'tutorials/quickstart': 'Quickstart', 'core': 'core'})
    assert t.count('```{toctree}') == 2 and ':caption: Get started' in t and ':caption: Library' in t
    assert 'Overview <self>' in t and 'Quickstart <tutorials/quickstart>' in t and 'core <core>' in t

def test_one_show_doc_per_cell_and_last():
    "Jupyter (and nbdev's doc build) displays only a cell's last expression: `show_doc(a)\\nshow_doc(b)` documents only b."
    bad = []
    for f in sorted((ROOT/'nbs').rglob('*.ipynb')):
        for c in json.loads(f.read_text())['cells']:
            if c['cell_type'] != 'code': continue
            lines = [l for l in ''.join(c['source']).splitlines() if l.strip() and not l.lstrip().startswith('#')]
            calls = [i for i, l in enumerate(lines) if re.match(r'show_doc\(', l)]
            if calls and (len(calls) > 1 or calls[-1] != len(lines) - 1): bad.append(f"{f.relative_to(ROOT)}: {c.get('id')}")
    assert not bad, f"cells whose show_doc output is not shown (one show_doc per cell, as its last line): {bad}"

def test_site_check_link_problems():
    "Links to the site's unpublished host (settings.ini's doc_host + doc_baseurl) and a link nested in a link are problems; others are not."
    check = _load('check_site')
    base = check.doc_base(ROOT/'settings.ini')
    assert base == BASE
    ok = ('<a href="../experiment.html#run_grounding"><code>run_grounding</code></a> <a href="https://pytorch.org">torch</a> '
          '<a href="https://github.com/groundsup/groundsup">repo</a> <a href="https://groundsup.github.io/other/x.html">other</a> <a id="x">x</a>')
    assert check.link_problems(ok, 'tutorials/t.html', base) == []
    nested = f'<p><a class="reference external" href="{BASE}/experiment.html#run_grounding"><a class="reference internal" href="../experiment.html#run_grounding"><code>run_grounding</code></a></a></p>'
    got = check.link_problems(nested, 'tutorials/t.html', base)
    assert len(got) == 2 and all(g.startswith('tutorials/t.html: ') for g in got)
    assert 'link inside a link' in got[0] and "'../experiment.html#run_grounding'" in got[0]
    assert 'unpublished' in got[1] and got[1].endswith(f'{BASE}/experiment.html#run_grounding')
    for url in [BASE, f'{BASE}/', f'{BASE}/losses.html#supervision_maps', 'http://groundsup.github.io/groundsup/x.html',
                '//GroundsUp.github.io/groundsup/models.html']:
        assert len(check.link_problems(f'<a href="{url}">x</a>', 'index.html', base)) == 1, url
    assert check.link_problems(f'<a href="{BASE}/losses.html">x</a>', 'index.html', None) == []   # the site is published there

def test_notebooks_do_not_link_the_unpublished_site():
    "Notebooks link API names as plain `name` (nbdev links them, tools/docs.py makes the links relative), never by doc_host's URL."
    host = urlparse(_load('check_site').doc_base(ROOT/'settings.ini')).netloc
    bad = []
    for f in sorted((ROOT/'nbs').rglob('*.ipynb')):
        if any(part.startswith('.') for part in f.relative_to(ROOT/'nbs').parts): continue   # .ipynb_checkpoints
        for c in json.loads(f.read_text(encoding='utf-8'))['cells']:
            if host in ''.join(c['source']): bad.append(f"{f.relative_to(ROOT).as_posix()}: {c.get('id')}")
    assert not bad, f"cells that link {host} (not published; write `name` and let nbdev link it): {bad}"

def test_site_check_finds_broken_links(tmp_path):
    "The crawler itself, on a toy site with one of each problem (a few seconds; needs Chromium, which CI installs)."
    check = _load('check_site')
    if not Path(check.CHROMIUM).exists() or importlib.util.find_spec('playwright') is None:
        (pytest.fail if os.environ.get('GROUNDSUP_REQUIRE_BROWSER') == '1' else pytest.skip)('no chromium or playwright')
    (tmp_path/'index.html').write_text('<a href="grounding.html#ground">g</a> <a href="grounding.html#nope">n</a> '
                                       '<a href="gone.html">x</a> <img src="missing.png"> <a href="tutorials/t.html">t</a>')
    (tmp_path/'grounding.html').write_text('<h2 id="ground">ground</h2>')
    (tmp_path/'tutorials').mkdir()
    (tmp_path/'tutorials'/'t.html').write_text(f'<a href="{BASE}/grounding.html#ground"><a href="../grounding.html#ground">ground</a></a>')
    (tmp_path/'orphan.html').write_text('alone')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=check.CHROMIUM, args=check.CHROMIUM_ARGS)
        problems, seen = check.crawl(browser.new_page(), tmp_path, BASE)
        browser.close()
    assert set(seen) == {'index.html', 'grounding.html', 'tutorials/t.html'}
    text = '\n'.join(problems)
    for what in ['no anchor #nope in grounding.html', 'missing file gone.html', 'broken image missing.png', 'not reachable from index.html: orphan.html',
                 'tutorials/t.html: link inside a link', f'tutorials/t.html: link to the unpublished site {BASE}: {BASE}/grounding.html#ground']:
        assert what in text, (what, problems)
    assert 'no anchor #ground' not in text
