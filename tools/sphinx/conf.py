"""Sphinx configuration of the docs site (used by tools/docs.py when quarto is not installed).

The sources are nbdev's processed notebooks as tools/docs.py rewrites them; myst-nb renders their stored outputs
and executes nothing. Title, author and repository come from settings.ini."""
import configparser, json, os, shutil, sysconfig
from pathlib import Path

ROOT = Path(os.environ.get('GROUNDSUP_ROOT', Path(__file__).resolve().parents[2]))
_cfg = configparser.ConfigParser(); _cfg.read(ROOT/'settings.ini')
cfg = _cfg['DEFAULT']

project = cfg['title']
author = cfg['author']
copyright = cfg['copyright']
release = version = cfg['version']

extensions = ['myst_nb', 'sphinx_copybutton']
copybutton_selector = 'div.cell_input div.highlight pre, div.highlight-sh pre, div.highlight-bash pre, div.highlight-python pre, div.highlight-default pre'   # code, not outputs
copybutton_exclude = '.linenos, .gp, .go'
myst_enable_extensions = ['attrs_block', 'attrs_inline', 'dollarmath', 'amsmath', 'colon_fence', 'deflist']
nb_execution_mode = 'off'                # outputs as stored in the notebooks
nb_render_markdown_format = 'myst'       # show_doc tables and links in markdown outputs
nb_merge_streams = True
nb_code_prompt_show, nb_code_prompt_hide = 'Show the checks', 'Hide the checks'   # hide-input: only the cells of checks that tools/docs.py moves out of examples
# a stored live widget needs a Jupyter kernel and scripts from a CDN: never render one (outputs are made without a kernel by
# tools/run_nb.py, so every view stores its static figure; tests/test_docs.py checks it)
nb_mime_priority_overrides = [('html', 'application/vnd.jupyter.widget-view+json', None), ('html', 'application/vnd.jupyter.widget-state+json', None)]
exclude_patterns = ['_*', '.*', '**/.ipynb_checkpoints']
suppress_warnings = ['myst.header', 'misc.highlighting_failure', 'mystnb.unknown_mime_type']

html_theme = 'sphinx_book_theme'
html_title = f"{cfg['title']} {cfg['version']}"   # the version, visible in the sidebar
html_static_path = [str(Path(__file__).parent/'_static')]
templates_path = [str(Path(__file__).parent/'_templates')]   # layout.html: no second (hidden) site header
html_css_files = ['groundsup.css']
html_copy_source = False
html_use_index = False      # no empty general index: the API index page (tools/docs.py) lists every name
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    'repository_url': cfg['git_url'],
    'repository_branch': cfg.get('branch', 'main'),
    'use_repository_button': True,
    'use_download_button': False,
    'use_fullscreen_button': False,
    'home_page_in_toc': False,
    'show_toc_level': 2,
    'navigation_with_keys': False,
}

def _nbdev_anchors(app, doctree):
    """show_doc headings get nbdev's anchors (`#load_clip`, `#clipbundle.from_model`: what quarto makes and nbdev's
    doc links point at) as their first id; docutils alone would make `#load-clip`. The list comes from tools/docs.py."""
    from docutils import nodes
    path = Path(app.srcdir)/'_anchors.json'
    wanted = set(json.loads(path.read_text()).get(app.env.docname, [])) if path.exists() else set()
    for sec in doctree.findall(nodes.section):
        anchor = sec[0].astext().strip().lower() if sec.children and isinstance(sec[0], nodes.title) else None
        if anchor not in wanted or (sec['ids'] and sec['ids'][0] == anchor): continue
        other = doctree.ids.get(anchor)
        if other is not None and other is not sec:     # an earlier heading took the id: the symbol keeps it
            other['ids'].remove(anchor)
            if not other['ids']: other['ids'].append(f'{anchor}-1'); doctree.ids[f'{anchor}-1'] = other
        if anchor in sec['ids']: sec['ids'].remove(anchor)
        sec['ids'].insert(0, anchor); doctree.ids[anchor] = sec
        wanted.discard(anchor)

# MathJax from the sphinx-mathjax-offline package (only the files a page needs), so formulas render without a network
_MATHJAX = Path(sysconfig.get_paths()['purelib'])/'sphinx-mathjax-offline'/'static'/'mathjax'
if (_MATHJAX/'tex-chtml.js').exists(): mathjax_path = 'mathjax/tex-chtml.js'

def _copy_mathjax(app, exc):
    if exc is not None or not (_MATHJAX/'tex-chtml.js').exists(): return
    dest = Path(app.outdir)/'_static'/'mathjax'
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_MATHJAX/'tex-chtml.js', dest/'tex-chtml.js')
    shutil.copytree(_MATHJAX/'output'/'chtml'/'fonts'/'woff-v2', dest/'output'/'chtml'/'fonts'/'woff-v2', dirs_exist_ok=True)

def setup(app):
    app.connect('build-finished', _copy_mathjax)
    app.connect('doctree-read', _nbdev_anchors, priority=100)   # before the table of contents is collected
