"""Build the docs site into _docs/ and README.md from nbs/index.ipynb.

With quarto on PATH this is plain `nbdev_docs`. Without it (PyPI's quarto-cli is a source package that downloads
quarto from GitHub at build time, which fails on machines that reach only the package registries), nbdev still
processes the notebooks (`proc_nbs`: show_doc tables, directives, front matter), this script turns what quarto
would read into what Sphinx + myst-nb read (front matter -> title, `#| echo/output` -> cell tags, `output: asis`
-> markdown, nbdev's doc links -> relative links), and Sphinx (sphinx-book-theme, config in tools/sphinx/) renders
the stored outputs -- nothing is executed -- into a site with a sidebar, a table of contents per page and a search
that works from the files. The index notebook becomes README.md through nbconvert, as before."""
import html, json, os, posixpath, re, shutil, subprocess, sys, time
from pathlib import Path

import nbformat, yaml
from nbdev.config import get_config

_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$')
_PANDOC_ATTRS = re.compile(r'\{target="_blank"[^}]*\}')  # quarto link attributes in show_doc output
_SOURCE_LINK = re.compile(r'^\[source\]\((\S+?)\)\{[^}]*\}\s*$', re.M)
_HEADING = re.compile(r'^(#{1,6})\s+(.+?)\s*$', re.M)
_NBLINK = re.compile(r'\[([^\]]*)\]\((?![a-z]+:|#|/)([^)\s]+?\.ipynb)(#[^)\s]*)?\)')   # [text](08a_experiment.ipynb#x): a link to another notebook
_FENCE = re.compile(r'^```(\w*)\n(.*?)^```[ \t]*$', re.M | re.S)
SPHINX_CONF = Path(__file__).resolve().parent/'sphinx'

def page_name(nb: Path) -> str:
    "nbdev's page name: `00_core.ipynb` -> `core.html`."
    return re.sub(r'^\d+[a-z]?_', '', nb.stem) + '.html'

# --- README (nbconvert, as before) --------------------------------------------------------------------------------
def prepare(nb):
    "Turn nbdev's front matter and cell directives into what nbconvert understands; returns the title."
    title, cells = None, []
    for cell in nb.cells:
        if cell.cell_type == 'raw' and cell.source.startswith('---'):
            fm = yaml.safe_load(cell.source.strip().strip('-')) or {}
            title = fm.get('title')
            text = f"# {title}\n\n" + (f"> {fm['description']}\n" if fm.get('description') else '')
            cells.append(nbformat.v4.new_markdown_cell(text)); continue
        if cell.cell_type == 'code':
            lines, tags = cell.source.splitlines(), set(cell.metadata.get('tags', []))
            directives = {}
            while lines and _DIRECTIVE.match(lines[0]):
                k, v = _DIRECTIVE.match(lines.pop(0)).groups(); directives[k] = v.strip()
            if directives.get('echo') == 'false': tags.add('remove_input')
            if directives.get('output') == 'false': tags.add('remove_output')
            cell.source, cell.metadata['tags'] = '\n'.join(lines), sorted(tags)
            for o in cell.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md: o['data']['text/markdown'] = _PANDOC_ATTRS.sub('', md if isinstance(md, str) else ''.join(md))
        cells.append(cell)
    nb.cells = cells
    return title

def _tag_remover():
    from nbconvert.preprocessors import TagRemovePreprocessor
    return TagRemovePreprocessor(remove_input_tags={'remove_input'}, remove_all_outputs_tags={'remove_output'}, enabled=True)

def readme(cache: Path, cfg):
    from nbconvert import MarkdownExporter
    nb = nbformat.read(cache/cfg.readme_nb, as_version=4)
    prepare(nb)
    nb_dir = posixpath.dirname(Path(cfg.readme_nb).as_posix())
    for cell in nb.cells:      # a link to a notebook: the notebook in the repository (the README sits at the root)
        if cell.cell_type == 'markdown':
            cell.source = _NBLINK.sub(lambda l: f"[{l.group(1)}]({posixpath.normpath(posixpath.join(cfg.nbs_path.name, nb_dir, l.group(2)))}{l.group(3) or ''})", cell.source)
    exporter = MarkdownExporter()
    exporter.register_preprocessor(_tag_remover(), enabled=True)
    stem = Path(cfg.readme_nb).stem
    body, res = exporter.from_notebook_node(nb, resources={'output_files_dir': f'{stem}_files'})
    root = cfg.config_path
    shutil.rmtree(root/f'{stem}_files', ignore_errors=True)
    for fname, data in res.get('outputs', {}).items():
        (root/fname).parent.mkdir(parents=True, exist_ok=True); (root/fname).write_bytes(data)
    (root/'README.md').write_text(body.rstrip() + '\n', encoding='utf-8')
    print(f"wrote {root/'README.md'}")

# --- the site (Sphinx + myst-nb over nbdev's processed notebooks) ---------------------------------------------------
SECTIONS = ['Get started', 'Tutorials', 'Library', 'Experiments']

def layout(cache: Path) -> list[tuple[Path, str, str]]:
    """(processed notebook, page path without suffix, sidebar section) in sidebar order: the index and the quickstart
    (Get started), nbs/tutorials/ (Tutorials), the numbered notebooks in notebook order (Library), nbs/experiments/
    (Experiments); another folder becomes a section of its own name. Page paths are nbdev's (`02b_grounding` -> `grounding`)."""
    pages = []
    for p in sorted(cache.rglob('*.ipynb')):
        rel = p.relative_to(cache)
        if any(part.startswith(('.', '_')) for part in rel.parts): continue
        folder = rel.parent.as_posix()
        name = posixpath.join(folder, page_name(p)[:-5]) if folder != '.' else page_name(p)[:-5]
        if rel == Path('index.ipynb'): name, section = 'index', 'Get started'
        elif folder == '.': section = 'Library'
        elif rel.stem == 'quickstart': section = 'Get started'
        else: section = {'tutorials': 'Tutorials', 'experiments': 'Experiments'}.get(folder, folder.replace('_', ' ').capitalize())
        pages.append((p, name, section))
    order = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(pages, key=lambda t: (order.get(t[2], len(SECTIONS)), t[1] != 'index', t[1] != 'tutorials/quickstart', str(t[0])))

def _rel(target: str, here: str) -> str:
    "Relative URL from page `here` (e.g. 'tutorials/quickstart') to `target` (e.g. 'grounding.html#ground')."
    path, _, anchor = target.partition('#')
    path = path or 'index.html'
    if path.endswith('/'): path += 'index.html'
    url = posixpath.relpath(path, posixpath.dirname(here) or '.')
    return url + (f'#{anchor}' if anchor else '')

def nb_page(target: str, here: str) -> str:
    "The page of a notebook linked from page `here`: `../08a_experiment.ipynb` from 'tutorials/quickstart' -> 'experiment.html'."
    rel = posixpath.normpath(posixpath.join(posixpath.dirname(here), target))
    folder, name = posixpath.split(rel)
    return posixpath.join(folder, page_name(Path(name)))

def _link_html(text: str, url: str) -> str:
    inner = (f'<code class="docutils literal notranslate"><span class="pre">{html.escape(text[1:-1])}</span></code>'
             if len(text) > 1 and text[0] == text[-1] == '`' else html.escape(text))
    return f'<a class="reference internal" href="{html.escape(url)}">{inner}</a>'

def _highlight(code: str, lang: str, links: list[tuple[str, str]]) -> str:
    "A code block as Sphinx writes it (pygments), with `links` [(name, url)] in place of placeholder names."
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
    try: lexer = get_lexer_by_name(lang or 'text')
    except ClassNotFound: lexer = get_lexer_by_name('text')
    out = highlight(code, lexer, HtmlFormatter(nowrap=True))
    for i, (name, url) in enumerate(links):
        out = re.sub(rf'(<span class="\w+">)?GsLink{i}x(</span>)?', lambda m: f'<a class="reference internal" href="{html.escape(url)}">{html.escape(name)}</a>', out, count=1)
    out = re.sub(r'\n(?=\n)', '\n<span></span>', out)   # a blank line would end the raw HTML block in markdown
    return f'<div class="highlight-{lang or "text"} notranslate"><div class="highlight"><pre><span></span>{out}</pre></div></div>'

class Rewriter:
    "Markdown as nbdev leaves it -> markdown for myst: relative doc links, source links, show_doc anchors."
    def __init__(self, doc_base: str, anchors: dict | None = None):
        "`anchors`: {'grounding.html': {'ground', ...}} the show_doc entries of each page (a link to another anchor goes to the page)."
        self.doclink = re.compile(r'\[([^\]\n]*)\]\(' + re.escape(doc_base.rstrip('/')) + r'/?([^)\s]*)\)')
        self.anchors, self.missing = anchors or {}, set()

    def url(self, target: str, here: str) -> str:
        path, _, anchor = target.partition('#')
        if anchor and path in self.anchors and anchor not in self.anchors[path]:
            self.missing.add(f'{path}#{anchor}'); target = path
        return _rel(target, here)

    def links(self, md: str, here: str) -> str:
        def fence(m):
            lang, code = m.group(1), m.group(2)
            if not self.doclink.search(code): return m.group(0)
            links = []
            def sub(l):
                links.append((l.group(1).strip('`'), self.url(l.group(2), here))); return f'GsLink{len(links) - 1}x'
            return '\n' + _highlight(self.doclink.sub(sub, code), lang, links) + '\n'
        md = _FENCE.sub(fence, md)
        # a heading keeps the name, not the link: the page's table of contents wraps each heading in a link of its own
        md = _HEADING.sub(lambda h: self.doclink.sub(lambda l: l.group(1), h.group(0)), md)
        md = _NBLINK.sub(lambda l: _link_html(l.group(1), _rel(nb_page(l.group(2), here) + (l.group(3) or ''), here)), md)
        return self.doclink.sub(lambda l: _link_html(l.group(1), self.url(l.group(2), here)), md)

    def show_doc(self, md: str, here: str, anchors: set) -> str:
        "A show_doc output (markdown that quarto inserts as is): source link under the heading, heading anchor as nbdev's."
        md = md.replace('\r\n', '\n')
        src = _SOURCE_LINK.search(md)
        md = _SOURCE_LINK.sub('', md)
        md = re.sub(r'^---\s*$', '', md, count=1, flags=re.M)   # a rule before a heading ends a section in docutils
        h = _HEADING.search(md)
        if h:
            anchors.add(h.group(2).strip('`').lower())
            if src:
                link = f'<p class="gs-source"><a class="reference external" href="{html.escape(src.group(1))}" target="_blank" rel="noopener">source</a></p>'
                md = md[:h.end()] + '\n\n' + link + '\n' + md[h.end():]
        return self.links(_PANDOC_ATTRS.sub('', md), here)

def _text(x) -> str: return x if isinstance(x, str) else ''.join(x)

def to_myst(nb, here: str, rw: Rewriter, anchors: set) -> str:
    "Rewrite processed notebook `nb` (page `here`) in place for myst-nb; returns its title, adds its show_doc anchors to `anchors`."
    title, cells = None, []
    for cell in nb.cells:
        if cell.cell_type == 'raw' and cell.source.startswith('---'):
            fm = yaml.safe_load(cell.source.strip().strip('-')) or {}
            title = str(fm.get('title') or Path(here).name)
            text = f"# {title}\n"
            if fm.get('description'): text += f"\n{{.gs-description}}\n{fm['description']}\n"
            cells.append(nbformat.v4.new_markdown_cell(rw.links(text, here))); continue
        if cell.cell_type == 'markdown':
            if cell.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            cell.source = rw.links(cell.source, here); cells.append(cell); continue
        if cell.cell_type != 'code': cells.append(cell); continue
        lines, tags, directives = cell.source.splitlines(), set(cell.metadata.get('tags', [])), {}
        while lines and _DIRECTIVE.match(lines[0]):
            k, v = _DIRECTIVE.match(lines.pop(0)).groups(); directives[k] = v.strip()
        if directives.get('include') == 'false': continue
        echo = directives.get('echo') != 'false'
        if directives.get('output') == 'false': tags.add('remove-output')
        cell.source, cell.metadata['tags'] = '\n'.join(lines), sorted(tags)
        if directives.get('output') == 'asis':   # quarto puts the markdown output into the page itself
            mds = [rw.show_doc(_text(o['data']['text/markdown']), here, anchors) for o in cell.get('outputs', [])
                   if 'text/markdown' in o.get('data', {})]
            if echo: cell.outputs = []; cells.append(cell)
            cells += [nbformat.v4.new_markdown_cell(m) for m in mds]; continue
        if not echo: cell.metadata['tags'] = sorted(tags | {'remove-input'})
        for o in cell.get('outputs', []):
            if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = rw.links(_PANDOC_ATTRS.sub('', _text(o['data']['text/markdown'])), here)
        cells.append(cell)
    nb.cells = cells
    return title or Path(here).name

def toctree(pages, titles) -> str:
    "The sidebar: one hidden toctree per section, added to the index page."
    out = []
    for section in dict.fromkeys(s for _, _, s in pages):
        entries = ['Overview <self>' if name == 'index' else f'{titles[name]} <{name}>' for _, name, s in pages if s == section]
        out.append(f"```{{toctree}}\n:hidden:\n:caption: {section}\n\n" + '\n'.join(entries) + '\n```\n')
    return '\n'.join(out)

def site(cache: Path, out: Path, cfg):
    "Sphinx + myst-nb site from the processed notebooks in `cache` into `out`."
    src = cache/'_site'
    shutil.rmtree(src, ignore_errors=True); src.mkdir(parents=True)
    pages = layout(cache)
    if not pages: sys.exit(f"no processed notebooks in {cache}")
    doc_base = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')
    nbs = {name: nbformat.read(p, as_version=4) for p, name, _ in pages}
    found = {}                                   # first pass: the show_doc entries of every page
    for name, nb in nbs.items(): to_myst(nbformat.from_dict(json.loads(json.dumps(nb))), name, Rewriter(doc_base), found.setdefault(f'{name}.html', set()))
    rw, titles, anchors = Rewriter(doc_base, found), {}, {}
    for name, nb in nbs.items():
        a = set(); titles[name] = to_myst(nb, name, rw, a); anchors[name] = sorted(a)
    for m in sorted(rw.missing): print(f"note: nbdev links {m}, which has no show_doc entry: the link goes to the page")
    nbs['index'].cells.append(nbformat.v4.new_markdown_cell(toctree(pages, titles)))
    for name, nb in nbs.items():
        (src/name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, src/f'{name}.ipynb')
    for f in cache.rglob('*'):  # files next to the notebooks (images referenced from markdown)
        rel = f.relative_to(cache)
        if f.is_file() and f.suffix.lower() in {'.png', '.jpg', '.jpeg', '.svg', '.gif'} and not rel.parts[0].startswith(('.', '_')):
            (src/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, src/rel)
    (src/'_anchors.json').write_text(json.dumps(anchors, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    t = time.time()
    html_dir = cache/'_html'          # myst-nb writes images to jupyter_execute/ next to the output folder: keep that in _proc/
    shutil.rmtree(html_dir, ignore_errors=True)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-c', str(SPHINX_CONF), '-d', str(cache/'_doctrees'), str(src), str(html_dir)]
    subprocess.run(cmd, check=True, env=dict(os.environ, GROUNDSUP_ROOT=str(cfg.config_path)))
    shutil.move(html_dir, out)
    (out/'.nojekyll').touch()   # GitHub Pages: serve _static/ and _images/
    print(f"wrote {out}/ ({len(pages)} pages) with sphinx in {time.time() - t:.0f} s")

def main():
    cfg = get_config()
    if shutil.which('quarto'):
        subprocess.run(['nbdev_docs'], check=True); return
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    t = time.time()
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    cache = proc_nbs(cfg.nbs_path, force=True)
    print(f"nbdev processed the notebooks in {time.time() - t:.0f} s")
    site(cache, cfg.config_path/cfg.doc_path.name, cfg)
    readme(cache, cfg)

if __name__ == '__main__': main()
