"""Build the docs site into _docs/ and README.md from nbs/index.ipynb.

With quarto on PATH this is plain `nbdev_docs`. Without it (PyPI's quarto-cli is a source package that downloads
quarto from GitHub at build time, which fails on machines that reach only the package registries), nbdev still
processes the notebooks (`proc_nbs`: show_doc tables, directives, front matter) and nbconvert renders the
processed notebooks to HTML pages and the index notebook to README.md."""
import re, shutil, subprocess, sys
from pathlib import Path

import nbformat, yaml
from nbconvert import HTMLExporter, MarkdownExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from nbdev.config import get_config

_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$')
_PANDOC_ATTRS = re.compile(r'\{target="_blank"[^}]*\}')  # quarto link attributes in show_doc output

def page_name(nb: Path) -> str:
    "nbdev's page name: `00_core.ipynb` -> `core.html`."
    return re.sub(r'^\d+[a-z]?_', '', nb.stem) + '.html'

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
    return TagRemovePreprocessor(remove_input_tags={'remove_input'}, remove_all_outputs_tags={'remove_output'}, enabled=True)

def html_site(cache: Path, out: Path):
    pages = sorted(p for p in cache.rglob('*.ipynb') if not any(part.startswith(('.', '_')) for part in p.relative_to(cache).parts))
    if not pages: sys.exit(f"no processed notebooks in {cache}")
    out.mkdir(parents=True, exist_ok=True)
    nbs, titles = {}, {}
    for p in pages:
        nb = nbformat.read(p, as_version=4)
        titles[p] = prepare(nb) or p.stem
        nbs[p] = nb
    order = sorted(pages, key=lambda p: (p.stem != 'index', str(p.relative_to(cache))))
    for p in order:
        rel = p.relative_to(cache).parent
        name = 'index.html' if p.stem == 'index' and rel == Path() else page_name(p)
        up = '../' * len(rel.parts)
        nav = ' | '.join(f'<a href="{up}{q.relative_to(cache).parent.as_posix() + "/" if q.relative_to(cache).parent != Path() else ""}'
                         f'{"index.html" if q.stem == "index" and q.parent == cache else page_name(q)}">{titles[q]}</a>' for q in order)
        exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
        exporter.register_preprocessor(_tag_remover(), enabled=True)
        body, _ = exporter.from_notebook_node(nbs[p], resources={'metadata': {'name': titles[p]}})
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + f'<nav style="padding:8px 16px;border-bottom:1px solid #ddd;font-family:sans-serif">{nav}</nav>', body, count=1)
        (out/rel).mkdir(parents=True, exist_ok=True)
        (out/rel/name).write_text(body, encoding='utf-8')
        print(f"wrote {out/rel/name}")
    for img in cache.rglob('*'):  # images referenced from markdown cells
        if img.suffix.lower() in {'.png', '.jpg', '.jpeg', '.svg', '.gif'} and not img.relative_to(cache).parts[0].startswith(('.', '_')):
            dest = out/img.relative_to(cache); dest.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(img, dest)

def readme(cache: Path, cfg):
    nb = nbformat.read(cache/cfg.readme_nb, as_version=4)
    prepare(nb)
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

def main():
    cfg = get_config()
    if shutil.which('quarto'):
        subprocess.run(['nbdev_docs'], check=True); return
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.serve import proc_nbs
    import nbdev.doclinks
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    cache = proc_nbs(cfg.nbs_path, force=True)
    out = cfg.config_path/cfg.doc_path.name
    shutil.rmtree(out, ignore_errors=True)
    html_site(cache, out)
    readme(cache, cfg)

if __name__ == '__main__': main()
