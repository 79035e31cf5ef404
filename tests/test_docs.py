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
    for f in ['index', '00_core', '08_train', '08a_experiment', '11_cli', 'tutorials/quickstart', 'tutorials/coming_from_gals',
              'experiments/gals_normalize', '_hidden', 'tutorials/.ipynb_checkpoints/x']:
        (tmp_path/f'{f}.ipynb').parent.mkdir(parents=True, exist_ok=True); (tmp_path/f'{f}.ipynb').write_text('{}')
    got = [(name, section) for _, name, section in docs.layout(tmp_path)]
    assert got == [('index', 'Get started'), ('tutorials/quickstart', 'Get started'), ('tutorials/coming_from_gals', 'Tutorials'),
                   ('core', 'Library'), ('train', 'Library'), ('experiment', 'Library'), ('cli', 'Library'),
                   ('experiments/gals_normalize', 'Experiments')]

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
    assert '<a class="reference internal" href="grounding.html#ground">ground</a>' in rest   # a link inside the highlighted signature
    block = rest[rest.index('<div class="highlight-python'):rest.index('</pre></div></div>')]
    assert '\n\n' not in block                                                    # a blank line would end the raw HTML block

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
