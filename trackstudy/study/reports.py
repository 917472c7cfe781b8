"""Notebooks -> reports: run every notebook with papermill, write self-contained HTML and an index.

``python -m trackstudy.study.reports --params params/full.yaml`` (what ``make study`` runs) executes
``notebooks/NN_*.ipynb`` in order into ``reports/NN_*.ipynb``, converts each to a
self-contained ``reports/NN_*.html`` (plotly.js and images embedded, so it opens offline),
and writes ``reports/index.html`` with each notebook's status, run time and device.
Each notebook receives only the parameters of the YAML file that its ``parameters`` cell
declares, so one flat parameter file serves all of them.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import sys
import time
from pathlib import Path

from trackstudy.config import NOTEBOOKS_DIR, PARAMS_DIR, REPORTS_DIR, ROOT, read_yaml
from trackstudy.data.io import atomic_write_bytes
from trackstudy.errors import ConfigError

#: Renderers for plotly figures: the mimetype for JupyterLab plus an HTML copy with plotly.js
#: embedded once per notebook (no CDN), which nbconvert keeps in the offline report.
PLOTLY_RENDERERS = "plotly_mimetype+notebook"
#: A cell that runs longer than this fails the notebook instead of hanging the study.
CELL_TIMEOUT_S = 3 * 3600


def notebook_setup() -> None:
    """First cell of every notebook: offline plotly output, readable pandas tables, inline matplotlib."""
    import pandas as pd
    import plotly.io as pio

    pio.renderers.default = PLOTLY_RENDERERS
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 4)


def load_params(path: str | os.PathLike) -> dict:
    """A flat mapping of notebook parameters from a YAML file (scalars and lists of scalars only)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found (see {PARAMS_DIR.relative_to(ROOT)}/)")
    params = read_yaml(path, what="parameter file", expected="a mapping of parameter names to values")
    for key, value in params.items():
        ok = isinstance(value, (str, int, float, bool)) or value is None or (
            isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value))
        if not ok:
            raise ConfigError(f"{path}: parameter {key!r} must be a scalar or a list of scalars, got {value!r}")
    return params


def notebooks(selection: list[str] | None = None) -> list[Path]:
    """The study notebooks in order, optionally only those whose name starts with one of ``selection``."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        found = [nb for nb in found if any(nb.stem.startswith(s) for s in selection)]
        if not found:
            raise ConfigError(f"no notebook in {NOTEBOOKS_DIR} matches {', '.join(selection)}")
    return found


def device_description() -> str:
    """Where the notebooks run: the CUDA device name, or the CPU and its core count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def to_html(ipynb: Path, out: Path) -> Path:
    """Convert an executed notebook into one self-contained HTML file (atomic write)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb)
    return atomic_write_bytes(out, body.encode(), force=True)


def run_notebook(nb: Path, params: dict, out_dir: Path, log_output: bool = False) -> dict:
    """Execute one notebook with papermill into ``out_dir`` and convert it to HTML."""
    import papermill as pm

    declared = pm.inspect_notebook(str(nb))
    chosen = {k: v for k, v in params.items() if k in declared}
    out_ipynb = out_dir / nb.name
    out_html = out_dir / f"{nb.stem}.html"
    start = time.perf_counter()
    status, error = "ok", None
    try:
        pm.execute_notebook(str(nb), str(out_ipynb), parameters=chosen, kernel_name="python3",
                            cwd=str(NOTEBOOKS_DIR), progress_bar=False, log_output=log_output,
                            execution_timeout=CELL_TIMEOUT_S)
    except Exception as exc:  # papermill wraps the cell error; the report keeps the traceback
        status, error = "failed", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    seconds = time.perf_counter() - start
    if out_ipynb.exists():
        to_html(out_ipynb, out_html)
    return {"notebook": nb.stem, "status": status, "error": error, "seconds": round(seconds, 1),
            "parameters": chosen, "html": out_html.name if out_html.exists() else None}


def _pct(v) -> str:
    return "-" if v is None else f"{100.0 * float(v):.1f}%"


def _score(v) -> str:
    return f"{(v or 0):.3f}"


def _html_table(title: str, header: list[str], rows: list[list]) -> str:
    """An HTML table (cells escaped) under an optional <h3> title; empty without rows."""
    if not rows:
        return ""
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return (f"<h3>{html.escape(title)}</h3>" if title else "") + f"<table><tr>{head}</tr>{cells}</table>"


def summary_html(summary_file: Path) -> str:
    """The headline tables of ``summary.json`` as HTML: the full-event model (notebook 07) at each
    pile-up next to the baselines, and the models of the 10-50-track study (notebook 05). Empty
    when there is no summary yet."""
    if not summary_file.is_file():
        return ""
    try:
        doc = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        return ""
    parts = []
    head = doc.get("headline")
    if head:
        minutes = (head.get("train_seconds") or 0.0) / 60.0
        parts.append(f"<h2>Headline: full mu = {head['pileup']:g} pixel events</h2>"
                     f"<p><b>{html.escape(str(head['model']))}</b> ({html.escape(str(head.get('preset')))}, "
                     f"{head.get('n_params') or 0:,} parameters, {minutes:.0f} min of training on "
                     f"{html.escape(str(head.get('device')))}): DM efficiency (pT &gt; 0.9 GeV) "
                     f"<b>{_pct(head.get('dm_efficiency'))}</b>, fake rate <b>{_pct(head.get('fake_rate'))}</b>, "
                     f"TrackML score {_score(head.get('trackml_score'))} on {head.get('n_events')} held-out events.</p>")
    rows = [[mu, name, _pct(m.get("dm_efficiency")), _pct(m.get("barrel_dm_efficiency")),
             _pct(m.get("endcap_dm_efficiency")), _pct(m.get("fake_rate")), _pct(m.get("duplicate_rate")),
             _score(m.get("trackml_score")), m.get("n_events")]
            for mu, models in (doc.get("full_event") or {}).items() for name, m in models.items()]
    parts.append(_html_table("", ["pile-up", "model", "DM eff.", "barrel", "endcap", "fake rate", "duplicates",
                                  "TrackML score", "events"], rows))
    rows = [[r.get("set"), r.get("method"), _pct(r.get("dm_efficiency_real")), _pct(r.get("dm_efficiency_sim")),
             _pct(r.get("fake_rate_real")), _pct(r.get("fake_rate_sim"))] for r in doc.get("real_vs_sim") or []]
    parts.append(_html_table("Real vs simulated (the same cuts)",
                             ["set", "method", "DM real", "DM simulated", "fake real", "fake simulated"], rows))
    rows = [[name, m.get("kind"), _pct(m.get("dm_efficiency")), _pct(m.get("fake_rate")), _score(m.get("trackml_score"))]
            for name, m in (doc.get("models") or {}).items()]
    parts.append(_html_table("Models of the 10-50-track study (notebook 05)",
                             ["model", "kind", "DM eff.", "fake rate", "TrackML score"], rows))
    parts = [p for p in parts if p]
    return "\n".join(parts)


def write_index(results: list[dict], out_dir: Path, params_file: str, device: str) -> Path:
    """``index.html``: one row per notebook with a link, status, run time and device."""
    rows = []
    for r in results:
        link = f'<a href="{html.escape(r["html"])}">{html.escape(r["notebook"])}</a>' if r["html"] else html.escape(r["notebook"])
        status = r["status"] if r["status"] == "ok" else f'failed: {html.escape(r["error"] or "")}'
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items())
        rows.append(f"<tr><td>{link}</td><td>{status}</td><td>{r['seconds']:.1f} s</td>"
                    f"<td>{html.escape(device)}</td><td><code>{html.escape(params)}</code></td></tr>")
    total = sum(r["seconds"] for r in results)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trackstudy reports</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}} code{{font-size:85%}}</style></head>
<body><h1>trackstudy reports</h1>
<p>Parameters: <code>{html.escape(params_file)}</code>; generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')};
device: {html.escape(device)}; total {total:.0f} s.</p>
<table><tr><th>notebook</th><th>status</th><th>time</th><th>device</th><th>parameters</th></tr>
{chr(10).join(rows)}
</table>
{summary_html(out_dir / "summary.json")}
<p>Headline metrics per model: <a href="summary.json">summary.json</a> (when the study trained models).</p>
</body></html>
"""
    return atomic_write_bytes(out_dir / "index.html", page.encode(), force=True)


def executed_result(ipynb: Path) -> dict | None:
    """The index row of a notebook papermill executed earlier (from its papermill metadata), or
    None when there is none."""
    import nbformat

    if not ipynb.is_file():
        return None
    try:
        meta = nbformat.read(ipynb, as_version=4).metadata.get("papermill", {})
    except (OSError, ValueError):
        return None
    if "duration" not in meta:
        return None
    html_file = ipynb.with_suffix(".html")
    failed = meta.get("exception")
    return {"notebook": ipynb.stem, "status": "failed" if failed else "ok",
            "error": "see the report" if failed else None, "seconds": round(float(meta["duration"] or 0.0), 1),
            "parameters": dict(meta.get("parameters", {})), "html": html_file.name if html_file.exists() else None}


def run_study(params_file: str | os.PathLike, selection: list[str] | None = None,
              out_dir: str | os.PathLike = REPORTS_DIR, log_output: bool = False) -> list[dict]:
    """Run the notebooks in order with one parameter file; returns one result dict per notebook."""
    from tqdm.auto import tqdm

    params = load_params(params_file)
    out_dir = Path(out_dir)
    # notebook 05 writes the headline metrics of every model next to the reports
    params["summary_path"] = str((out_dir / "summary.json").resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device_description()
    # with a selection, the other notebooks executed earlier into out_dir stay in the index
    runs_json = out_dir / "runs.json"
    earlier = {}
    if selection:
        for nb in notebooks():
            row = executed_result(out_dir / nb.name)
            if row is not None:
                earlier[nb.stem] = row
    results = []
    for nb in (bar := tqdm(notebooks(selection), desc="notebooks", unit="nb")):
        bar.set_postfix_str(nb.stem)
        results.append(run_notebook(nb, params, out_dir, log_output=log_output))
        merged = {**earlier, **{r["notebook"]: r for r in results}}
        write_index([merged[k] for k in sorted(merged)], out_dir, str(params_file), device)
    results_all = [merged[k] for k in sorted(merged)] if results else []
    atomic_write_bytes(runs_json, json.dumps(
        {"params": str(params_file), "device": device, "notebooks": results_all}, indent=1).encode(), force=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trackstudy.study.reports", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(PARAMS_DIR / "full.yaml"), help="YAML parameter file")
    parser.add_argument("--only", nargs="*", default=None, metavar="NN",
                        help="run only the notebooks whose names start with these prefixes (e.g. 01 03)")
    parser.add_argument("--out", default=str(REPORTS_DIR), help="output folder (default reports/)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)
    try:
        results = run_study(args.params, args.only, args.out, args.log_output)
    except ConfigError as exc:
        print(f"trackstudy reports: error: {exc}", file=sys.stderr)
        return 2
    failed = [r["notebook"] for r in results if r["status"] != "ok"]
    for r in results:
        print(f"{r['notebook']:32s} {r['status']:7s} {r['seconds']:8.1f} s  {r['html']}")
    print(f"index: {Path(args.out) / 'index.html'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
