"""The scale benchmark's tables: launcher time, proto size and RSS per case, and A/B comparisons of two checkouts."""

from __future__ import annotations

from typing import Any


def launcher_s(rec: dict[str, Any]) -> float:
    """Until the job is handed to the runner; a run with nothing to do never hands one over."""
    if "timeout_s" in rec:
        return float("inf")
    if rec["runs"]:
        return rec["runs"][0]["plan_s"] + rec["runs"][0]["proto_s"]
    return rec["total_s"]


def fmt_row(r: dict[str, Any]) -> str:
    run = r["runs"][0] if r["runs"] else {}
    s = f"{r['case']:>14} {r['what']:>15}: launcher {launcher_s(r):7.2f} s"
    if "timeout_s" in r:
        s += f" (killed after {r['timeout_s']:.0f} s)"
    elif run:
        s += f" (plan {run['plan_s']:.2f} + proto {run['proto_s']:.2f}), proto {run['proto_bytes'] / 1e6:.2f} MB"
        s += f", RSS {run['rss_after_proto_mb']:.0f} MB"
    else:
        s += " (no job launched)"
    if "job_s" in run:
        s += f"; job {run['job_s']:.1f} s, total {r['total_s']:.1f} s"
    if "accounting" in r:
        a = r["accounting"]
        s += f"; rows {a['rows']}/{r['n']} distinct {a['distinct']} {'OK' if a['ok'] else 'MISMATCH'}"
    return s


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | N | what | launcher s (plan + proto) | proto MB | launcher peak RSS MB | job s | "
        "end to end s | e2e s per 100 k | process peak RSS MB (e2e) | files/ rows |\n"
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
    )
    lines = []
    for r in rows:
        run = r["runs"][0] if r["runs"] else None
        cells = [r["case"], f"{r['n']:,}", r["what"]]
        if run:
            cells += [
                f"{launcher_s(r):.2f} ({run['plan_s']:.2f} + {run['proto_s']:.2f})",
                f"{run['proto_bytes'] / 1e6:.2f}",
                f"{run['rss_after_proto_mb']:.0f}",
            ]
        elif "timeout_s" in r:
            cells += [f"> {r['timeout_s']:.0f} (killed: timeout)", "-", "-"]
        else:
            cells += [f"{launcher_s(r):.2f} (whole run: nothing to do, no job)", "-", f"{r['peak_rss_mb']:.0f}"]
        if run and "job_s" in run:
            cells += [
                f"{run['job_s']:.1f}",
                f"{r['total_s']:.1f}",
                f"{r['total_s'] * 1e5 / r['n']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        else:
            cells += ["", "", "", ""]
        acc = r.get("accounting")
        cells.append(
            f"{acc['rows']:,} rows, {acc['distinct']:,} distinct, {'all accounted' if acc['ok'] else 'MISMATCH'}"
            if acc
            else ""
        )
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over repeats of launcher s, proto MB, launcher RSS, e2e s, process peak RSS."""
    done = [r for r in runs if "timeout_s" not in r]
    if not done:
        return {"launcher_s": float("inf")}
    out = {"launcher_s": median([launcher_s(r) for r in done]), "total_s": median([r["total_s"] for r in done])}
    if all(r["runs"] for r in done):
        out["proto_mb"] = median([r["runs"][0]["proto_bytes"] / 1e6 for r in done])
        out["launcher_rss_mb"] = median([r["runs"][0]["rss_after_proto_mb"] for r in done])
    out["peak_rss_mb"] = median([r["peak_rss_mb"] for r in done])
    if all("accounting" in r for r in done):
        out["all_accounted"] = all(r["accounting"]["ok"] for r in done)
    return out


def compare_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | N | launcher s base | new | proto MB base | new | launcher RSS MB base | new | "
        "resume launcher s base | new | e2e s per 100 k base | new | new / base (pairs) | "
        "peak RSS MB e2e base | new | every input one row |\n"
        "| --- | ---: " + "| ---: " * 10 + "| --- | ---: | ---: | --- |\n"
    )
    lines = []
    for r in rows:
        n = r["n"]
        b, w = ({k: summary(v) for k, v in r[label].items()} for label in ("base", "new"))

        def cell(d, what, key, fmt="{:.2f}"):
            v = d.get(what, {}).get(key)
            return "" if v is None else ("timeout" if v == float("inf") else fmt.format(v))

        e2e = [
            (x["total_s"] / y["total_s"])
            for x, y in zip(r["new"].get("end to end", []), r["base"].get("end to end", []), strict=True)
        ]
        per100k = "{:.0f}"
        cells = [
            r["case"],
            f"{n:,}",
            cell(b, "launcher", "launcher_s"),
            cell(w, "launcher", "launcher_s"),
            cell(b, "launcher", "proto_mb"),
            cell(w, "launcher", "proto_mb"),
            cell(b, "launcher", "launcher_rss_mb", "{:.0f}"),
            cell(w, "launcher", "launcher_rss_mb", "{:.0f}"),
            cell(b, "resume launcher", "launcher_s"),
            cell(w, "resume launcher", "launcher_s"),
            per100k.format(b["end to end"]["total_s"] * 1e5 / n) if "end to end" in b else "",
            per100k.format(w["end to end"]["total_s"] * 1e5 / n) if "end to end" in w else "",
            f"{median(e2e):.2f} ({', '.join(f'{x:.2f}' for x in e2e)})" if e2e else "",
            cell(b, "end to end", "peak_rss_mb", "{:.0f}"),
            cell(w, "end to end", "peak_rss_mb", "{:.0f}"),
            {True: "yes", False: "NO", None: ""}[
                None
                if "end to end" not in w
                else (w["end to end"].get("all_accounted") and b["end to end"].get("all_accounted"))
            ],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"
