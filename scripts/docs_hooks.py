"""MkDocs hooks: the documents that live beside the code become pages of the docs site.

``flash_wrap/ALGORITHMS.md`` ships with the package, the demo bundle's model card stays in its
bundle folder and the plugin guide stays beside the plugins; the site renders each of them from its
one source instead of a copy. Their relative links are rewritten: a link to another included
document or image goes to its page in the site, a link to any other repository file becomes the
file's path in code (the site does not serve source files). The committed example figures are
served under ``figures/``.

Nothing is downloaded or written into the repository; the pages exist only in the built site.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mkdocs is imported only when the site is built, so the tests read the tables without it
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parents[1]

#: site page → repository Markdown file it is rendered from
INCLUDED_PAGES: dict[str, str] = {
    "algorithms.md": "flash_wrap/ALGORITHMS.md",
    "model-cards/demo.md": "flash_wrap/assets/demo/README.md",
    "model-cards/demo-flow.md": "flash_wrap/assets/demo-flow/README.md",
    "plugin-guide.md": "plugins/README.md",
    "third-party-solver.md": "examples/third_party_solver/README.md",
    "third-party-task.md": "examples/third_party_task/README.md",
}

#: site folder → repository folder whose PNG images it serves
INCLUDED_IMAGES: dict[str, str] = {
    "model-cards": "flash_wrap/assets/demo",
    "figures": "examples/figures",
}

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def _site_path_of(repo_path: str) -> str | None:
    """The site path that serves repository file (or folder) ``repo_path``, if any."""
    for page, source in INCLUDED_PAGES.items():
        if repo_path in (source, posixpath.dirname(source)):
            return page
    folder, name = posixpath.split(repo_path)
    for site_folder, repo_folder in INCLUDED_IMAGES.items():
        if folder == repo_folder and name.endswith(".png"):
            return f"{site_folder}/{name}"
    return None


def rewrite_links(text: str, source: str, page: str) -> str:
    """``text`` (the Markdown of repository file ``source``) with its relative links made valid
    for site page ``page``. Absolute URLs and in-page anchors are left alone."""

    def replace(match: re.Match[str]) -> str:
        bang, label, target = match.groups()
        if "://" in target or target.startswith(("#", "mailto:")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path)).rstrip("/")
        served = _site_path_of(repo_path)
        if served is not None:
            relative = posixpath.relpath(served, posixpath.dirname(page) or ".")
            return f"{bang}[{label}]({relative}{'#' + anchor if anchor else ''})"
        return f"{label} (`{repo_path}`)" if label.strip("`") != repo_path else f"`{repo_path}`"

    return LINK.sub(replace, text)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the included documents and images to the site's files."""
    from mkdocs.structure.files import File

    for page, source in INCLUDED_PAGES.items():
        text = (ROOT / source).read_text(encoding="utf-8")
        files.append(File.generated(config, page, content=rewrite_links(text, source, page)))
    for site_folder, repo_folder in INCLUDED_IMAGES.items():
        for image in sorted((ROOT / repo_folder).glob("*.png")):
            files.append(File.generated(config, f"{site_folder}/{image.name}", abs_src_path=str(image)))
    return files
