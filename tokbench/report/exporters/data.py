"""CSV and JSON: every result at full precision with all provenance (the long frame)."""

from __future__ import annotations

import json

from tokbench.report.report import Report


def export_csv(report: Report) -> str:
    return report.frame.to_csv(index=False)


def export_json(report: Report) -> str:
    results = json.loads(report.frame.to_json(orient="records", double_precision=15))
    for row in results:
        row["provenance"] = json.loads(row["provenance"]) if row.get("provenance") else {}
    return json.dumps({"title": report.title, "tables": [t.to_dict() for t in report.tables], "results": results},
                      indent=2, sort_keys=False) + "\n"
