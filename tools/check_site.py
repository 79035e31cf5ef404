"""Check the built docs site (_docs/) in headless Chromium, as a reader would use it: opened as files and served.

- crawl: from index.html, every page reachable through internal links; every internal link resolves to a file and
  every `#anchor` to an element id of its page; every `.html` page of the site is reached; no image is broken; every
  formula is typeset (MathJax ships with the site); no link sits inside another link (<a> in <a> in the page's HTML,
  which the browser splits into two links); while the site is not published at settings.ini's doc_host + doc_baseurl
  (pass --published once it is), no page links there (such a link leaves the local site for a missing one);
- search: `search.html?q=ground` (from the files and over http) lists the grounding page;
- layout: at phone width (390 px) no page scrolls sideways, nor the API page at 1280 px; at 1280 px no table, output or
  signature on any page is wider than its column (code may scroll); the index's first picture is on its first screen;
- reference: the API index lists every name (at least API_ENTRIES); a search for a RANKED term lists its defining page first;
- menus: at 390 and 800 px the visible menu button opens the site's pages and the contents button the page's sections;
  at 390, 800 and 1280 px one search box or button is visible (screenshots docs_menu_*.png); every code cell of the index
  has a copy button;
- screenshots of the index (at 390, 800 and 1280 px), an API page (also at phone width) and the search results go to tests/artifacts/.
Exit 1 lists every problem. Usage: python tools/check_site.py [_docs] [--artifacts tests/artifacts] [--published]"""
import argparse, configparser, functools, http.server, socketserver, sys, threading, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync']
API_PAGE, SEARCH_TERM, SEARCH_HIT = 'grounding.html', 'ground', 'grounding.html'
RANKED = [('worst group', 'metrics.html', 3)]   # (query, page that defines it, it must be among the first n results)
API_INDEX, API_ENTRIES = 'api.html', 100        # the API index page lists at least this many names
SKIP = {'genindex.html', 'search.html'}   # Sphinx's own pages, reached from the header; checked separately
SETTINGS = Path(__file__).resolve().parents[1]/'settings.ini'

PAGE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return {
  ids: [...document.querySelectorAll('[id]')].map(e => e.id).concat([...document.querySelectorAll('a[name]')].map(e => e.name)),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  srcs: [...document.querySelectorAll('img[src], script[src]')].map(e => e.src)
        .concat([...document.querySelectorAll('link[rel=stylesheet][href]')].map(e => e.href)),
  broken: [...document.querySelectorAll('img')].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  math: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 40)),
  wide: [...document.querySelectorAll('.bd-article table, .bd-article .cell_output pre, .bd-article .gs-signature pre')].filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => `${e.tagName.toLowerCase()} ${e.scrollWidth - e.clientWidth} px too wide: ${e.textContent.trim().replace(/\s+/g, ' ').slice(0, 60)}`),
}}"""

def _local(url: str, root: Path):
    "The file under `root` a file:// URL points at (None for other URLs), and its fragment."
    u = urlparse(url)
    if u.scheme != 'file': return None, None
    path = Path(unquote(u.path))
    if path.is_dir(): path = path/'index.html'
    return path, unquote(u.fragment)

def doc_base(settings: Path = SETTINGS) -> str | None:
    "Where the site is to be published: settings.ini's doc_host + doc_baseurl (None without a doc_host)."
    cp = configparser.ConfigParser(interpolation=None); cp.read(settings)
    host = cp['DEFAULT'].get('doc_host', '').strip().rstrip('/')
    return f"{host}/{cp['DEFAULT'].get('doc_baseurl', '').strip().strip('/')}".rstrip('/') if host else None

def _under(url: str, base: str) -> bool:
    "Whether `url` (absolute, http(s) or scheme-relative) points at `base` or below it."
    u, b = urlparse(url.strip()), urlparse(base)
    if u.scheme not in ('http', 'https', '') or not u.netloc or u.netloc.lower() != b.netloc.lower(): return False
    path = b.path.rstrip('/')
    return u.path.rstrip('/') == path or u.path.startswith(path + '/')

class _Anchors(HTMLParser):
    "The <a> elements of a page as written (the browser's DOM has no nested links: its parser splits them)."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs, self.nested, self.open = [], [], []
    def handle_starttag(self, tag, attrs):
        if tag != 'a': return
        href = dict(attrs).get('href')
        if href is not None: self.hrefs.append(href)
        if self.open: self.nested.append((self.open[-1], href))
        self.open.append(href)
    def handle_endtag(self, tag):
        if tag == 'a' and self.open: self.open.pop()

def link_problems(html: str, rel: str, unpublished: str | None = None) -> list[str]:
    """Problems in the links of page `rel` (its HTML source `html`): a link inside a link, and, when `unpublished` (the URL
    the site will be published at) is given, a link to it."""
    p = _Anchors(); p.feed(html); p.close()
    out = [f"{rel}: link inside a link: {inner!r} in {outer!r}" for outer, inner in p.nested]
    if unpublished:
        out += [f"{rel}: link to the unpublished site {unpublished}: {h}" for h in p.hrefs if _under(h, unpublished)]
    return out

@functools.cache
def _server(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(root))
    srv = socketserver.ThreadingTCPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{srv.server_address[1]}'

def crawl(page, root: Path, unpublished: str | None = None) -> tuple[list[str], dict]:
    """Visit every page reachable from index.html; returns (problems, {page: info}). `unpublished`: the URL the site will be
    published at (links to it are problems), None to allow them."""
    problems, seen, todo, anchors = [], {}, [root/'index.html'], []
    while todo:
        f = todo.pop()
        if f in seen: continue
        page.goto(f.as_uri(), wait_until='load')
        info = seen[f] = page.evaluate(PAGE_JS)
        rel = f.relative_to(root).as_posix()
        problems += link_problems(f.read_text(encoding='utf-8', errors='replace'), rel, unpublished)
        problems += [f"{rel}: broken image {src}" for src in info['broken']]
        problems += [f"{rel}: formula not rendered: {m}" for m in info['math']]
        problems += [f"{rel} at 1280 px: {w}" for w in info['wide']]    # tables, outputs and signatures fit their column (code may scroll)
        for url in info['links'] + info['srcs']:
            target, frag = _local(url, root)
            if target is None: continue            # external (https:, mailto:): not checked offline
            if root not in target.parents and target != root:
                problems.append(f"{rel}: link leaves the site: {url}"); continue
            if not target.exists(): problems.append(f"{rel}: missing file {target.relative_to(root)} ({url})"); continue
            if target.suffix == '.html':
                if target.name not in SKIP: todo.append(target)
                if frag: anchors.append((rel, target, frag))
    for rel, target, frag in anchors:
        if target in seen and frag not in seen[target]['ids']:
            problems.append(f"{rel}: no anchor #{frag} in {target.relative_to(root).as_posix()}")
    pages = {p for p in root.rglob('*.html') if p.name not in SKIP and not any(s.startswith(('_', '.')) for s in p.relative_to(root).parts)}
    problems += [f"page not reachable from index.html: {p.relative_to(root)}" for p in sorted(pages - set(seen))]
    return problems, {f.relative_to(root).as_posix(): i for f, i in seen.items()}

def _hits(page, base: str, term: str, want: str) -> list[str]:
    "The result pages of a search for `term` at `base`, once `want` is among them or the results stop changing."
    page.goto(f'{base}/search.html?q={term}', wait_until='load')
    hits, last, deadline = [], None, time.time() + 30
    while time.time() < deadline:
        hits = [h.split('#')[0].split('?')[0] for h in page.evaluate("() => [...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))")]
        if any(h.endswith(want) for h in hits) or (hits and hits == last and page.evaluate("() => !!document.querySelector('#search-results p.search-summary')")): break
        last = hits; time.sleep(0.3)
    return hits

def search(page, base: str, shot: Path | None = None) -> list[str]:
    """Search for SEARCH_TERM at `base` (file:// or http:// URL of the site root); SEARCH_HIT must be among the results.
    Each RANKED query lists the page that defines it among its first results."""
    hits = _hits(page, base, SEARCH_TERM, SEARCH_HIT)
    if shot: page.screenshot(path=str(shot))
    problems = [] if any(h.endswith(SEARCH_HIT) for h in hits) else [f"search for {SEARCH_TERM!r} at {base} does not list {SEARCH_HIT} (results: {hits[:10]})"]
    for term, want, first in RANKED:
        hits = _hits(page, base, term, want)
        pages = list(dict.fromkeys(hits))
        if not any(h.endswith(want) for h in pages[:first]):
            problems.append(f"search for {term!r} at {base}: {want} is not among the first {first} pages ({pages[:first + 2]})")
    return problems

MENU_JS = """(sel) => {
  const vis = e => { const r = e.getBoundingClientRect(); const st = getComputedStyle(e);
                     return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none' && r.right > 0 && r.left < window.innerWidth; };
  const d = document.querySelector(sel);
  return d ? {open: d.open === true, visible: vis(d), links: [...d.querySelectorAll('a[href]')].filter(vis).map(a => a.getAttribute('href'))}
           : {open: false, visible: false, links: []};
}"""
VISIBLE_JS = """(sel) => [...document.querySelectorAll(sel)].filter(e => { const r = e.getBoundingClientRect(); const st = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none'; }).length"""

def menus(browser, root: Path, artifacts: Path | None = None) -> list[str]:
    """On phone (390 px) and tablet (800 px) widths the visible menu button opens the site's pages and the contents button
    the page's sections; at every width one search box or button is visible, not two."""
    problems = []
    for width, height in ((390, 844), (800, 1000), (1280, 900)):
        small = width < 992
        page = browser.new_page(viewport={'width': width, 'height': height}, is_mobile=width < 500, has_touch=small)
        for name, toggle, dialog, least in (('index.html', '.primary-toggle', '#pst-primary-sidebar-modal', 10),
                                            (API_PAGE, '.secondary-toggle', '#pst-secondary-sidebar-modal', 3)):
            page.goto((root/name).as_uri(), wait_until='load')
            n = page.evaluate(VISIBLE_JS, '.search-button, .search-button-field')
            if n != 1: problems.append(f"{name} at {width} px: {n} search boxes/buttons visible (expected 1)")
            if not small: continue
            buttons = [b for b in page.query_selector_all(toggle) if b.is_visible()]
            if len(buttons) != 1: problems.append(f"{name} at {width} px: {len(buttons)} visible {toggle} buttons (expected 1)"); continue
            (buttons[0].tap if width < 500 else buttons[0].click)()
            page.wait_for_timeout(400)
            m = page.evaluate(MENU_JS, dialog)
            if not (m['open'] and m['visible'] and len(m['links']) >= least):
                problems.append(f"{name} at {width} px: the {toggle} button does not open a menu with links "
                                f"(open {m['open']}, on screen {m['visible']}, {len(m['links'])} links)")
            if artifacts is not None and toggle == '.primary-toggle': page.screenshot(path=str(artifacts/f'docs_menu_{width}.png'))
        if artifacts is not None:           # the landing page as a newcomer first sees it, at this width
            page.goto((root/'index.html').as_uri(), wait_until='load'); page.screenshot(path=str(artifacts/f'docs_index_{width}.png'))
        page.close()
    return problems

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('site', nargs='?', default='_docs', type=Path)
    ap.add_argument('--artifacts', default=Path('tests/artifacts'), type=Path)
    ap.add_argument('--published', action='store_true', help="the site is published at settings.ini's doc_host: links there are fine")
    args = ap.parse_args(argv)
    root = args.site.resolve()
    if not (root/'index.html').exists(): sys.exit(f"no site at {root} (build it with `make docs`)")
    unpublished = None if args.published else doc_base()
    args.artifacts.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright
    t = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        problems, info = crawl(page, root, unpublished)
        n_links = sum(len(i['links']) for i in info.values())
        for name, width in [(API_PAGE, 1280)]:
            if info.get(name, {}).get('overflow', 0) > 1: problems.append(f"{name} scrolls sideways at {width} px")
        page.goto((root/'index.html').as_uri()); page.screenshot(path=str(args.artifacts/'docs_index.png'))
        first = page.evaluate("() => { const i = document.querySelector('.bd-article img'); return i ? i.getBoundingClientRect().top : null; }")
        if first is None or first > 900 * 0.6: problems.append(f"index.html: the first picture starts at {first} px, not in the first screen (900 px)")
        page.goto((root/API_INDEX).as_uri())
        n = page.evaluate("() => document.querySelectorAll('.bd-article table tbody tr').length")
        if n < API_ENTRIES: problems.append(f"{API_INDEX}: the API index lists {n} names (expected at least {API_ENTRIES})")
        code, buttons = page.evaluate("() => [document.querySelectorAll('div.cell_input div.highlight pre').length, document.querySelectorAll('button.copybtn').length]")
        if code and buttons < code: problems.append(f"index.html: {code} code cells, {buttons} copy buttons")
        page.goto((root/API_PAGE).as_uri() + '#ground'); page.screenshot(path=str(args.artifacts/'docs_api_grounding.png'))
        problems += search(page, root.as_uri(), args.artifacts/'docs_search_ground.png')
        problems += search(page, _server(root))
        problems += menus(browser, root, args.artifacts)
        phone = browser.new_page(viewport={'width': 390, 'height': 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
        for name in sorted(info):                                         # every page, at phone width
            phone.goto((root/name).as_uri(), wait_until='load')
            over = phone.evaluate(PAGE_JS)['overflow']
            if over > 1: problems.append(f"{name} scrolls sideways by {over} px at phone width (390 px)")
        phone.goto((root/API_PAGE).as_uri() + '#load_clip'); phone.screenshot(path=str(args.artifacts/'docs_api_phone.png'))
        browser.close()
    print(f"site check: {len(info)} pages, {n_links} links" + (f" (none may go to the unpublished {unpublished})" if unpublished else '')
          + f", searched {SEARCH_TERM!r} from files and over http, {time.time() - t:.0f} s; screenshots in {args.artifacts}/docs_*.png")
    if problems:
        print(f"FAIL: {len(problems)} problems in {root}:"); print('\n'.join(f"  {p}" for p in problems[:200])); sys.exit(1)
    print("site check ok")

if __name__ == '__main__': main()
