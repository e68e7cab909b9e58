"""What every benchmark ends with: its report as OUTPUT.json and OUTPUT.md, and the Markdown printed."""

import json
from collections.abc import Callable
from pathlib import Path


def write_report(report: dict, output: Path, markdown: Callable[[dict], str]) -> dict:
    """OUTPUT.json and OUTPUT.md (the Markdown made from the JSON, so either can be regenerated)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    output.with_suffix(".md").write_text(markdown(report) + "\n", encoding="utf-8")
    print(markdown(report))
    return report
