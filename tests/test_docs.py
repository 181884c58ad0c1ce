"""The documentation site builds without a single warning (broken links, missing pages, bad anchors,
docstrings the API reference cannot parse), and its example pages match configs/ and their results."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
EXAMPLES = ROOT / "docs" / "examples"
# what mkdocs.yml needs beyond mkdocs itself; all are in the dev extra of pyproject.toml
SITE_PACKAGES = {"material": "mkdocs-material", "mkdocstrings": "mkdocstrings[python]",
                 "mkdocstrings_handlers.python": "mkdocstrings[python]"}


def test_docs_build_strictly(tmp_path):
    missing = sorted({dist for module, dist in SITE_PACKAGES.items() if importlib.util.find_spec(module) is None})
    assert not missing, (f"the docs need {', '.join(missing)} (dev dependencies): "
                         f"pip install -c constraints.txt -e '.[dev]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2, not a warning of ours
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, f"mkdocs build --strict failed after {elapsed:.0f} s:\n{result.stderr}"
    # the API reference rendered from the docstrings: a signature and an Args section
    page = (tmp_path / "site" / "api" / "training" / "index.html").read_text(encoding="utf-8")
    assert 'id="deepscope.training.experiment.train"' in page
    assert "Parameters:" in page and "new_version" in page


def test_example_pages_are_up_to_date():
    result = subprocess.run([sys.executable, "docs/tools/examples.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_config_has_an_example_page_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    index = (EXAMPLES / "index.md").read_text(encoding="utf-8")
    for name in CONFIGS:
        assert (EXAMPLES / f"{name}.md").is_file(), f"configs/{name}.yaml has no docs/examples/{name}.md"
        assert f"examples/{name}.md" in nav, f"docs/examples/{name}.md is not in the nav of mkdocs.yml"
        assert f"]({name}.md)" in index, f"docs/examples/index.md has no row for {name}"


def test_every_result_names_an_existing_config_and_source():
    results = yaml.safe_load((EXAMPLES / "results.yaml").read_text(encoding="utf-8"))
    for name, entries in results.items():
        assert name in CONFIGS, f"docs/examples/results.yaml: '{name}' is not a config (configs/{name}.yaml)"
        for i, entry in enumerate(entries):
            for key in ("metric", "value", "split", "command", "date", "source"):
                assert entry.get(key) not in (None, ""), f"results.yaml {name}[{i}]: no {key}"
            # every figure cites where it is recorded: each file it names exists
            cited = re.findall(r"[\w./-]+\.(?:md|py|yaml|json)\b", entry["source"])
            assert cited, f"results.yaml {name}[{i}]: source names no file: {entry['source']!r}"
            for path in cited:
                assert (ROOT / path).is_file(), f"results.yaml {name}[{i}]: source {path} does not exist"


def test_config_key_tables_are_up_to_date():
    """docs/config.md's key tables are generated from the pydantic models; a new key needs a regeneration."""
    result = subprocess.run([sys.executable, "docs/tools/config_tables.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (f"docs/config.md is out of date; run python docs/tools/config_tables.py\n"
                                    f"{result.stdout}{result.stderr}")
