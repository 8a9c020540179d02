"""mkdocs hook: the benchmark pages and their records enter the site from benchmarks/ itself, without a copy.

benchmarks/README.md and benchmarks/results/README.md are written beside the records they describe (the second by
`python -m harness.report`); their links and images are relative to that folder, so the files keep their paths.
The other Markdown files there (each run's report.md, a campaign's report.md) are records, not pages: they are
served as they are, like the JSON and CSV records beside them.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".md", ".png", ".csv", ".json"}
PAGES = {"benchmarks/README.md", "benchmarks/results/README.md", "benchmarks/results/gpu-check/gpu_check.md"}


class RecordFile(File):
    """A Markdown record served as a plain file, not rendered as a page."""

    def is_documentation_page(self) -> bool:
        return False


def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "benchmarks").rglob("*")):
        if not path.is_file() or path.suffix not in SUFFIXES:
            continue
        relative = path.relative_to(ROOT).as_posix()
        kind = File if relative in PAGES or path.suffix != ".md" else RecordFile
        files.append(kind(relative, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
