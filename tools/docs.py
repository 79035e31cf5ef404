"""Build the docs site into _docs/ and README.md from nbs/index.ipynb.

With quarto on PATH this is plain `nbdev_docs`. Without it (PyPI's quarto-cli is a source package that downloads
quarto from GitHub at build time, which fails on machines that reach only the package registries), nbdev still
processes the notebooks (`proc_nbs`: show_doc tables, directives, front matter), this script turns what quarto
would read into what Sphinx + myst-nb read (front matter -> title, `#| echo/output` -> cell tags, `output: asis`
-> markdown, nbdev's doc links -> relative links), and Sphinx (sphinx-book-theme, config in tools/sphinx/) renders
the stored outputs -- nothing is executed -- into a site with a sidebar, a table of contents per page and a search
that works from the files. The index notebook becomes README.md through nbconvert, as before."""
import ast, html, io, json, os, posixpath, re, shutil, subprocess, sys, time, tokenize
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

def doc_base(cfg) -> str:
    "Where the site is to be published (settings.ini's doc_host + doc_baseurl): nbdev's doc links point there."
    return cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/')

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
    # nbdev's links to API names point at the docs host, which may not be published: link the notebook in the repository
    doclink = re.compile(r'\[([^\]\n]*)\]\(' + re.escape(doc_base(cfg)) + r'/?([^)#\s]*)(#[^)\s]*)?\)')
    notebook_of = {f'{name}.html': posixpath.join(cfg.nbs_path.name, p.relative_to(cache).as_posix()) for p, name, _ in layout(cache)}
    for cell in nb.cells:      # a link to a notebook: the notebook in the repository (the README sits at the root)
        if cell.cell_type == 'markdown':
            cell.source = _NBLINK.sub(lambda l: f"[{l.group(1)}]({posixpath.normpath(posixpath.join(cfg.nbs_path.name, nb_dir, l.group(2)))}{l.group(3) or ''})", cell.source)
            cell.source = doclink.sub(lambda l: f"[{l.group(1)}]({notebook_of[l.group(2)]})" if l.group(2) in notebook_of else l.group(1), cell.source)
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
LIBRARY = [(5, 'Library: grounding'), (8, 'Library: training'), (10, 'Library: reports and widgets'), (99, 'Library: command line')]
FOLDERS = {'tutorials': 'Tutorials', 'howto': 'How-to guides', 'experiments': 'Experiments', 'developers': 'Developers'}
SECTIONS = ['Get started', 'Tutorials', 'How-to guides'] + [s for _, s in LIBRARY] + ['Experiments', 'Reference', 'Developers']

def library_section(stem: str) -> str:
    "The sidebar section of a numbered notebook, by its number: `02b_grounding` -> 'Library: grounding'."
    n = int(re.match(r'\d+', stem).group(0))
    return next(s for last, s in LIBRARY if n <= last)

def layout(cache: Path) -> list[tuple[Path, str, str]]:
    """(processed notebook, page path without suffix, sidebar section) in sidebar order: the index and the quickstart
    (Get started), nbs/tutorials/ (Tutorials), nbs/howto/ (How-to guides), the numbered notebooks in notebook order in the
    library's sections (`LIBRARY`, by number), nbs/experiments/ (Experiments), nbs/developers/; another folder becomes a
    section of its own name. Page paths are nbdev's (`02b_grounding` -> `grounding`)."""
    pages = []
    for p in sorted(cache.rglob('*.ipynb')):
        rel = p.relative_to(cache)
        if any(part.startswith(('.', '_')) for part in rel.parts): continue
        folder = rel.parent.as_posix()
        name = posixpath.join(folder, page_name(p)[:-5]) if folder != '.' else page_name(p)[:-5]
        if rel == Path('index.ipynb'): name, section = 'index', 'Get started'
        elif folder == '.' and re.match(r'\d', rel.stem): section = library_section(rel.stem)
        elif folder == '.': section = 'Reference'
        elif rel.stem == 'quickstart': section = 'Get started'
        else: section = FOLDERS.get(folder, folder.replace('_', ' ').capitalize())
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

# --- show_doc signatures: a short signature and a parameter table -----------------------------------------------------
_FACTORY = '<factory>'

def _cell(s: str) -> str:
    "Text for a markdown table cell: pipes escaped, no line breaks."
    return s.replace('|', r'\|').replace('\n', ' ').strip()

def parse_signature(code: str):
    """nbdev's docments signature (`def f(\\n    a:int=1, # doc\\n)->T: # doc`) -> (params, returns): params a list of
    (name, type, default, doc) with '' where absent (`*args`/`**kw` keep their stars), returns (type, doc). None when
    `code` is not one signature."""
    src = code.replace(_FACTORY, '__gs_factory__')
    comments, cols = {}, {}       # line -> comment text, and the column its '#' starts at
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT: comments[tok.start[0]], cols[tok.start[0]] = tok.string[1:].strip(), tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError): return None
    lines = src.splitlines()
    bare = '\n'.join(l[:cols[i + 1]] if i + 1 in cols else l for i, l in enumerate(lines))
    try: tree = ast.parse(bare.rstrip() + '\n    ...\n')
    except SyntaxError: return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)): return None
    fn, seg = tree.body[0], lambda n: '' if n is None else ast.get_source_segment(bare, n).replace('__gs_factory__', _FACTORY)
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + a.defaults
    per_line = {}
    for arg in pos + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]: per_line[arg.lineno] = per_line.get(arg.lineno, 0) + 1
    doc = lambda arg: comments.get(arg.lineno, '') if per_line[arg.lineno] == 1 else ''
    params = [(arg.arg, seg(arg.annotation), seg(d), doc(arg)) for arg, d in zip(pos, defaults)]
    if a.vararg: params.append(('*' + a.vararg.arg, seg(a.vararg.annotation), '', doc(a.vararg)))
    elif a.kwonlyargs: params.append(('*', '', '', ''))
    params += [(arg.arg, seg(arg.annotation), seg(d), doc(arg)) for arg, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg: params.append(('**' + a.kwarg.arg, seg(a.kwarg.annotation), '', doc(a.kwarg)))
    ret_line = fn.returns.end_lineno if fn.returns is not None else len(lines)
    returns = (seg(fn.returns), comments.get(ret_line, '') if ret_line not in per_line else '')
    return params, returns


def short_signature(name: str, params, returns, width: int = 64) -> str:
    "`name(a, b=1, *, c=None) -> T`, wrapped after commas at `width` with a 4-space hanging indent."
    parts = [p if not d else f'{p}={d}' for p, t, d, _ in params]
    ret = f' -> {returns[0]}' if returns[0] and returns[0] != 'None' else ''
    lines, cur = [], f'{name}('
    for i, part in enumerate(parts):
        piece = part + (', ' if i < len(parts) - 1 else '')
        if len(cur) + len(piece.rstrip()) > width and cur != f'{name}(':
            lines.append(cur.rstrip()); cur = '    '
        cur += piece
    cur += ')' + ret
    lines.append(cur)
    return '\n'.join(lines)

def param_table(params, returns) -> str:
    "A markdown table: Parameter, Type, Default, Details (and a Returns row); '' without parameters or return doc."
    rows = [(f'`{p}`', f'`{_cell(t)}`' if t and t != 'NoneType' else '', f'`{_cell(d)}`' if d else '', _cell(doc)) for p, t, d, doc in params if p != '*']
    if returns[1] or (rows and returns[0] and returns[0] != 'None'):
        rows.append(('**Returns**', f'`{_cell(returns[0])}`' if returns[0] else '', '', _cell(returns[1])))
    if not rows: return ''
    return '\n'.join(['| Parameter | Type | Default | Details |', '|---|---|---|---|'] + ['| ' + ' | '.join(r) + ' |' for r in rows])

def split_signature(md: str, name: str) -> str:
    """show_doc markdown with its docments signature (one line per parameter, each with its comment) replaced by a short
    signature, and the parameters as a table at the end (Parameter, Type, Default, Details); unchanged when the signature
    cannot be parsed."""
    m = _FENCE.search(md)
    if not m or m.group(1) != 'python': return md
    parsed = parse_signature(m.group(2))
    if parsed is None: return md
    table = param_table(*parsed)
    md = md[:m.start()] + f"```{{code-block}} python\n:class: gs-signature\n\n{short_signature(name, *parsed)}\n```" + md[m.end():]
    return md.rstrip() + ('\n\n{.gs-params}\n' + table + '\n' if table else '\n')

# --- checks in example cells: collapsed on the site -------------------------------------------------------------------
def _is_check(node) -> bool:
    "An `assert`, a fastcore `test_*` call, or a `with`/`for` block made only of those."
    if isinstance(node, ast.Assert): return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        f = node.value.func
        return (f.id if isinstance(f, ast.Name) else getattr(f, 'attr', '')).startswith('test_')
    if isinstance(node, (ast.With, ast.For)): return all(_is_check(b) for b in node.body)
    return False

def split_checks(source: str) -> tuple[str, str]:
    """(example, checks): a cell's top-level checks (`assert`, `test_eq(...)`, ...) moved out of its code, each kept whole
    with its lines; ('source', '') when there are none, or when a check shares a line with other code."""
    try: tree = ast.parse(source)
    except SyntaxError: return source, ''
    lines = source.splitlines()
    checks = [n for n in tree.body if _is_check(n)]
    if not checks: return source, ''
    taken = {i for n in checks for i in range(n.lineno - 1, n.end_lineno)}
    if any(i in taken for n in tree.body if not _is_check(n) for i in range(n.lineno - 1, n.end_lineno)): return source, ''
    # a comment line right above a check belongs to it
    for n in checks:
        i = n.lineno - 2
        while i >= 0 and i not in taken and lines[i].lstrip().startswith('#'): taken.add(i); i -= 1
    example = '\n'.join(l for i, l in enumerate(lines) if i not in taken).strip('\n')
    return example, '\n'.join(l for i, l in enumerate(lines) if i in taken)


class Rewriter:
    "Markdown as nbdev leaves it -> markdown for myst: relative doc links, source links, show_doc anchors."
    def __init__(self, doc_base: str, anchors: dict | None = None):
        "`anchors`: {'grounding.html': {'ground', ...}} the show_doc entries of each page (a link to another anchor goes to the page)."
        self.doclink = re.compile(r'\[([^\]\n]*)\]\(' + re.escape(doc_base.rstrip('/')) + r'/?([^)\s]*)\)')
        self.anchors, self.missing = anchors or {}, set()
        self.entries = []     # (name, page, anchor, summary) of every show_doc entry seen: the API index

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
            name = h.group(2).strip('`')
            md = md[:h.end()] + split_signature(md[h.end():], name)
            anchors.add(name.lower())
            doc = re.search(r'^\*(.+?)\*\s*$', md[h.end():], re.M)
            self.entries.append((name, here, name.lower(), doc.group(1).strip() if doc else ''))
            if src:
                link = f'<p class="gs-source"><a class="reference external" href="{html.escape(src.group(1))}" target="_blank" rel="noopener">source</a></p>'
                md = md[:h.end()] + '\n\n' + link + '\n' + md[h.end():]
        return self.links(_PANDOC_ATTRS.sub('', md), here)

def _text(x) -> str: return x if isinstance(x, str) else ''.join(x)

def to_myst(nb, here: str, rw: Rewriter, anchors: set, module: str | None = None) -> str:
    """Rewrite processed notebook `nb` (page `here`) in place for myst-nb; returns its title, adds its show_doc anchors to
    `anchors`. `module`: the line under the title that names the page's module, with its source link (markdown)."""
    title, cells = None, []
    for cell in nb.cells:
        if cell.cell_type == 'raw' and cell.source.startswith('---'):
            fm = yaml.safe_load(cell.source.strip().strip('-')) or {}
            title = str(fm.get('title') or Path(here).name)
            text = f"# {title}\n"
            if fm.get('description'): text += f"\n{{.gs-description}}\n{fm['description']}\n"
            if module: text += f"\n{{.gs-module}}\n{module}\n"
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
        example, checks = split_checks(cell.source) if echo else (cell.source, '')
        if checks:      # the example first, its checks (assertions a reader rarely needs) in a collapsed cell below it
            cell.source = example
            if example.strip() or cell.get('outputs'): cells.append(cell)
            cells.append(nbformat.v4.new_code_cell(checks, metadata={'tags': ['hide-input']})); continue
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

def _first_sentence(text: str, limit: int = 160) -> str:
    m = re.match(r'(.+?\.)(\s|$)', text)
    text = m.group(1) if m else text
    return text if len(text) <= limit else text[:limit].rsplit(' ', 1)[0] + ' …'

def api_index(entries, titles: dict) -> str:
    "The API index page (markdown): every show_doc entry A-Z with its page and the first sentence of its docstring."
    rows, seen = [], set()
    for name, page, anchor, summary in sorted(entries, key=lambda e: (e[0].lower().lstrip('_'), e[1])):
        if (name, page) in seen: continue
        seen.add((name, page))
        rows.append(f"| [`{name}`]({page}.ipynb#{anchor}) | [{titles.get(page, page)}]({page}.ipynb) | {_cell(_first_sentence(summary))} |")
    return ("# API index\n\n{.gs-description}\nEvery public function and class of groundsup, A to Z, with the page that documents it.\n\n"
            f"{len(rows)} entries.\n\n| Name | Page | What it does |\n|---|---|---|\n" + '\n'.join(rows) + '\n')

def changelog(root: Path) -> str | None:
    "CHANGELOG.md at the repository root, as a page (None without one)."
    f = root/'CHANGELOG.md'
    return f.read_text(encoding='utf-8') if f.exists() else None

def module_line(nb_file: Path, cfg) -> str | None:
    "'Module `groundsup.x` (source)' for a notebook that exports with `#| default_exp x`, else None."
    if not nb_file.exists(): return None
    for c in json.loads(nb_file.read_text(encoding='utf-8'))['cells']:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M) if c['cell_type'] == 'code' else None
        if m:
            mod, path = f"{cfg.lib_name}.{m.group(1)}", f"{cfg.lib_path.name}/{m.group(1).replace('.', '/')}.py"
            url = f"{cfg.git_url.rstrip('/')}/blob/{cfg.get('branch', 'main')}/{path}"
            return f"Module `{mod}` ([source]({url}))"
    return None

def site(cache: Path, out: Path, cfg):
    "Sphinx + myst-nb site from the processed notebooks in `cache` into `out`."
    src = cache/'_site'
    shutil.rmtree(src, ignore_errors=True); src.mkdir(parents=True)
    pages = layout(cache)
    if not pages: sys.exit(f"no processed notebooks in {cache}")
    base = doc_base(cfg)
    nbs = {name: nbformat.read(p, as_version=4) for p, name, _ in pages}
    found = {}                                   # first pass: the show_doc entries of every page
    for name, nb in nbs.items(): to_myst(nbformat.from_dict(json.loads(json.dumps(nb))), name, Rewriter(base), found.setdefault(f'{name}.html', set()))
    rw, titles, anchors = Rewriter(base, found), {}, {}
    for p, name, _ in pages:
        a = set(); titles[name] = to_myst(nbs[name], name, rw, a, module_line(cfg.nbs_path/p.relative_to(cache), cfg)); anchors[name] = sorted(a)
    # generated pages (Reference): the API index, and the changelog when the repository has one
    extra = {'api': ('API index', api_index(rw.entries, titles)), 'changelog': ('Changelog', changelog(cfg.config_path))}
    for name, (title, md) in extra.items():
        if md is None: continue
        nbs[name], titles[name] = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(rw.links(md, name))]), title
        pages.append((None, name, 'Reference'))
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
