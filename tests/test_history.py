"""gdbench history: the data the page is built from, the command, and the page in a real
headless Chromium.

The runs are constructed (tests/_benchjson.py) on a calm machine, each with its own date
and commit, so every verdict is unambiguous: a 25% slowdown is flagged, a steady backend
is not.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _benchjson import bad_run_files, machine_info, make_run, run_cli

from gdbench.judge import regress
from gdbench.records.results import load_run
from gdbench.report import history

OTHER = machine_info(cpu="Other CPU 5000", cores=4)


def _run(path: Path, day: int, *, commit: str | None = None, dirty: bool = False,
         workloads: tuple[str, ...] = ("crops",), **kwargs: Any) -> Path:
    """A constructed run dated 2026-01-<day> 12:00 UTC, from commit ``commit`` (default:
    one made of the day's digits), saved at ``path``."""
    kwargs.setdefault("slow_share", 0.0)
    kwargs.setdefault("seed", day)
    doc = make_run(workloads=workloads, **kwargs)
    doc["datetime"] = f"2026-01-{day:02d}T12:00:00.000000+00:00"
    doc["commit_info"] = {"id": commit or f"{day:02d}" * 20, "dirty": dirty,
                          "project": "gdbench", "branch": "main"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _flagged(h: history.History) -> set[tuple[str, str]]:
    flagged = h.points[h.points["flag"] != ""]
    return set(zip(flagged["run"], flagged["backend"], strict=True))


# --- the data -----------------------------------------------------------------------------

def test_runs_are_sorted_by_their_datetime_not_the_order_given(tmp_path: Path) -> None:
    paths = [_run(tmp_path / f"r{day}.json", day) for day in (3, 1, 2)]
    h = history.build_history(paths)
    assert h.runs["run"].tolist() == ["r1", "r2", "r3"]
    assert h.runs["datetime"].is_monotonic_increasing
    numpy = h.points[h.points["backend"] == "numpy"]
    assert numpy["run"].tolist() == ["r1", "r2", "r3"]
    assert numpy["commit"].tolist() == ["01" * 20, "02" * 20, "03" * 20]
    assert set(h.points["branch"]) == {"main"}


@pytest.mark.parametrize("step", ["40s", "70s", "10min", "50min", "3h", "20h", "4D", "40D",
                                  "400D"])
def test_the_date_axis_suits_runs_seconds_to_years_apart(tmp_path: Path, step: str) -> None:
    paths = [_run(tmp_path / f"r{day}.json", day) for day in (1, 2, 3)]
    h = history.build_history(paths)
    start = pd.Timestamp("2026-01-01T12:00:00+00:00")
    dates = {f"r{i + 1}": start + i * pd.Timedelta(step) for i in range(3)}
    h.points["datetime"] = h.points["run"].map(dates)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when it finds no tick interval
        svg = history.benchmark_svg(h, "bench_training[crops-numpy]", "t")
    assert svg.count("<title>") == 3


def test_each_point_is_the_median_of_its_paired_rounds_with_a_bootstrap_interval(
        tmp_path: Path) -> None:
    path = _run(tmp_path / "r1.json", 1)
    h = history.build_history([path])
    frame = load_run(path)
    for _, p in h.points.iterrows():
        row = frame[frame["name"] == p["name"]].iloc[0]
        assert p["basis"] == regress.PAIRED
        assert p["value"] == pytest.approx(row["norm_median"])
        assert p["low"] < p["value"] < p["high"]
    assert set(h.points["backend"]) == {"numpy", "torch-cpu", "jax", "jax-scan"}
    assert "roofline" not in set(h.points["backend"])


def test_each_point_has_its_step_time_with_its_interval_and_the_page_marks_doubts(
        tmp_path: Path) -> None:
    path = _run(tmp_path / "r1.json", 1, rounds=40)
    doc = json.loads(path.read_text())
    for bench in doc["benchmarks"]:  # jax: bimodal rounds, so a wide interval
        if bench["extra_info"]["backend"] == "jax":
            data = [12e-6 * 250 * (1 + i % 2) for i in range(40)]
            bench["stats"].update(data=data, median=18e-6 * 250)
    path.write_text(json.dumps(doc))
    h = history.build_history([path])
    pts = h.points.set_index("backend")
    frame = load_run(path).set_index("backend")
    for backend in ("numpy", "jax"):
        assert pts.loc[backend, "step_us"] == pytest.approx(frame.loc[backend, "step_us"])
    assert pts.loc["jax", "doubts"] == ("wide",) and pts.loc["numpy", "doubts"] == ()
    assert pts.loc["jax", "step_spread"] > 0.10 > pts.loc["numpy", "step_spread"]
    cells = history.points_table(h.points).set_index("run")["µs/step"].tolist()
    assert "18.0 ±" in " ".join(cells) and sum(c.endswith(" §") for c in cells) == 1
    page = history.render_page(h)
    assert "§ its interval reaches further than ±10%" in page


def test_a_run_without_paired_rounds_falls_back_on_its_roofline_and_says_so(
        tmp_path: Path) -> None:
    old = _run(tmp_path / "old.json", 1, paired=False)
    new = _run(tmp_path / "new.json", 2)
    h = history.build_history([old, new])
    frame = load_run(old)
    roofline = frame[frame["kind"] == "roofline"].iloc[0]
    pts = h.points[h.points["run"] == "old"]
    assert set(pts["basis"]) == {regress.UNPAIRED}
    for _, p in pts.iterrows():
        row = frame[frame["name"] == p["name"]].iloc[0]
        assert p["value"] == pytest.approx(row["median_s"] / roofline["median_s"])
        assert p["low"] < p["value"] < p["high"]
    assert set(h.points[h.points["run"] == "new"]["basis"]) == {regress.PAIRED}
    page = history.render_page(h)
    assert "old: no per-round references (norm_data)" in page


def test_runs_of_different_machines_are_separate_series_never_joined(tmp_path: Path) -> None:
    paths = [_run(tmp_path / "a1.json", 1), _run(tmp_path / "b1.json", 2, info=OTHER),
             _run(tmp_path / "a2.json", 3), _run(tmp_path / "b2.json", 4, info=OTHER),
             _run(tmp_path / "a3.json", 5)]
    h = history.build_history(paths)
    series = h.runs.set_index("run")["series"].to_dict()
    assert series == {"a1": 0, "b1": 1, "a2": 0, "b2": 1, "a3": 0}
    assert h.runs.groupby("series")["fingerprint"].nunique().tolist() == [1, 1]
    assert h.runs["fingerprint"].nunique() == 2
    # Without a baseline, each run is judged by the previous run on its own machine.
    against = h.runs.set_index("run")["against"].to_dict()
    assert against["a1"] == against["b1"] == ""
    assert against["a2"].endswith(", a1") and against["b2"].endswith(", b1")
    assert against["a3"].endswith(", a2")
    # In the figure, one line per machine, through that machine's points only: the
    # path of machine 0 has 3 vertices (2 segments), machine 1's 2 (1 segment).
    name = "bench_training[crops-numpy]"
    svg = history.benchmark_svg(h, name, "t")
    for machine, segments in ((0, 2), (1, 1)):
        group = re.search(rf'<g id="t-series-{machine}">\s*<path d="([^"]*)"', svg)
        assert group is not None
        assert group.group(1).count("L") == segments


def test_a_25_percent_slowdown_is_flagged_against_the_baseline(tmp_path: Path) -> None:
    base = _run(tmp_path / "base.json", 1)
    paths = [_run(tmp_path / "r2.json", 2),
             _run(tmp_path / "r3.json", 3, factors={"numpy": 1.25}),
             _run(tmp_path / "r4.json", 4)]
    h = history.build_history(paths, base, 0.15)
    assert _flagged(h) == {("r3", "numpy")}
    p = h.points[(h.points["run"] == "r3") & (h.points["backend"] == "numpy")].iloc[0]
    assert p["verdict"] == regress.REGRESSION
    assert p["change"] == pytest.approx(1.25, abs=0.05)
    assert 1 < p["change_low"] < p["change"] < p["change_high"]
    assert set(h.runs["against"]) == {"baseline base"}
    # The flagged point is ringed in red, with its verdict in its hover text.
    svg = history.benchmark_svg(h, "bench_training[crops-numpy]", "t")
    assert svg.count(f'stroke: {history.FLAG_RED}') >= 1
    assert ">regression flagged by the gate</text>" in svg  # the legend
    assert "\n⚠ regression flagged by the gate (threshold +15%)</title>" in svg  # the hover
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert any("→ regression" in t and "commit 0303030" in t for t in titles)
    clean = history.benchmark_svg(h, "bench_training[crops-jax]", "u")
    assert "flagged" not in clean
    # In numpy's table of points, newest first, the middle row is the flagged one.
    assert "<tbody><tr><td>2026-01-04 12:00</td><td>r4</td>" in history.render_page(h)
    assert '</tr><tr class="flagged"><td>2026-01-03 12:00</td><td>r3</td>' in \
        history.render_page(h)


def test_without_a_baseline_a_slowdown_is_flagged_where_it_appears(tmp_path: Path) -> None:
    paths = [_run(tmp_path / "r1.json", 1),
             _run(tmp_path / "r2.json", 2, factors={"numpy": 1.25}),
             _run(tmp_path / "r3.json", 3, factors={"numpy": 1.25})]
    h = history.build_history(paths)
    # r2 is 25% slower than r1; r3 is as slow as r2, so nothing new there.
    assert _flagged(h) == {("r2", "numpy")}
    first = h.points[h.points["run"] == "r1"]
    assert set(first["verdict"]) == {""} and set(first["against"]) == {""}


def test_a_backend_that_disagrees_with_numpy_is_flagged(tmp_path: Path) -> None:
    base = _run(tmp_path / "base.json", 1)
    new = _run(tmp_path / "new.json", 2, disagree=("jax",))
    h = history.build_history([new], base)
    flagged = h.points[h.points["flag"] != ""]
    assert flagged["backend"].tolist() == ["jax"]
    assert flagged["flag"].tolist() == [regress.DISAGREES]
    svg = history.benchmark_svg(h, "bench_training[crops-jax]", "t")
    assert ">disagrees with numpy (a wrong result)</text>" in svg
    assert "\n⚠ disagrees with numpy (a wrong result) (threshold +15%)</title>" in svg


def test_each_machine_series_has_a_colour_and_a_marker_of_its_own() -> None:
    from matplotlib.colors import is_color_like
    from matplotlib.markers import MarkerStyle

    colours = [history._style(i)[0] for i in range(9)]
    markers = [history._style(i)[1] for i in range(7)]
    assert len(set(colours)) == 9 and all(is_color_like(c) for c in colours)
    assert len(set(markers)) == 7
    for marker in markers:
        MarkerStyle(marker)  # raises on a marker matplotlib does not draw
    assert history._style(9) == history._style(0)[:1] + (history._style(2)[1],)


def test_the_latest_run_is_compared_with_the_baseline(tmp_path: Path) -> None:
    base = _run(tmp_path / "base.json", 1)
    # Given first, dated last: the latest run is the slow one.
    slow = _run(tmp_path / "slow.json", 9, factors={"jax": 1.25}, commit="ab" * 20,
                dirty=True)
    h = history.build_history([slow, _run(tmp_path / "r2.json", 2)], base)
    section = history.latest_section(h)
    assert section.title.startswith("gdbench check: FAIL: 1 regression")
    assert section.notes[0] == ("latest run slow (2026-01-09 12:00 UTC, commit abababa "
                                "(dirty) on main) against the baseline base.")
    verdicts = dict(zip(section.table["backend"], section.table["verdict"], strict=True))
    assert "regression" in verdicts["jax"]
    assert verdicts["numpy"] == verdicts["torch-cpu"] == verdicts["jax-scan"] == "ok"
    assert verdicts["roofline"] == "reference"
    assert section.table.columns.tolist() == \
        regress.report_table(h.gates["slow"]).columns.tolist()
    assert section.notes[-1] == (
        "Change = new/reference of ×ref; the gate fails a benchmark when it exceeds +15% and "
        "the whole 95% bootstrap CI (2,000 resamples of the rounds) is above +0%, or when its "
        "weights disagree with numpy.")


def test_the_baseline_level_drawn_in_a_benchmarks_figure(tmp_path: Path) -> None:
    base = _run(tmp_path / "base.json", 1)
    h = history.build_history([_run(tmp_path / "r2.json", 2)], base)
    frame = load_run(base)
    for name in ("bench_training[crops-numpy]", "bench_training[crops-jax]"):
        row = frame[frame["name"] == name].iloc[0]
        expected = history.point_metric(frame, row)[1].ratio
        assert history.baseline_level(h, name) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(history.baseline_level(h, "bench_training[small-numpy]"))
    alone = history.build_history([_run(tmp_path / "r3.json", 3)])
    assert math.isnan(history.baseline_level(alone, "bench_training[crops-numpy]"))


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, str]]]:
    """Each matplotlib figure the page draws, with its hover titles, as it is drawn."""
    figures: list[tuple[Any, dict[str, str]]] = []
    real = history._svg

    def keep(fig: Any, salt: str, titles: dict[str, str]) -> str:
        figures.append((fig, titles))
        return real(fig, salt, titles)

    monkeypatch.setattr(history, "_svg", keep)
    return figures


def test_each_point_is_drawn_with_its_interval_its_flag_and_the_baseline_level(
        tmp_path: Path, drawn: list[tuple[Any, dict[str, str]]]) -> None:
    base = _run(tmp_path / "base.json", 1)
    paths = [_run(tmp_path / "r2.json", 2), _run(tmp_path / "r3.json", 3,
                                                    factors={"numpy": 1.25})]
    h = history.build_history(paths, base, 0.15)
    name = "bench_training[crops-numpy]"
    history.benchmark_svg(h, name, "t")
    ((fig, titles),) = drawn
    ax = fig.axes[0]
    pts = h.points[h.points["name"] == name]
    lines = {line.get_gid(): line for line in ax.lines}
    for idx, p in pts.iterrows():
        dot = lines[f"t-p{idx}"]
        assert dot.get_ydata()[0] == p["value"]
        assert dot.get_markerfacecolor() == dot.get_color()  # paired: filled
        flagged = f"t-p{idx}-flag" in lines
        assert flagged == (p["flag"] == regress.REGRESSION) == (p["run"] == "r3")
        assert titles[f"t-p{idx}"] == history.point_title(p, 0.15)
        if flagged:
            assert titles[f"t-p{idx}-flag"] == titles[f"t-p{idx}"]
    assert ax.get_ylabel() == "×ref (time ÷ reference)"
    (bars,) = ax.collections  # the 95% intervals, one bar per point
    spans = sorted(y for seg in bars.get_segments() for y in (seg[0][1], seg[1][1]))
    assert spans == pytest.approx(sorted([*pts["low"], *pts["high"]]), rel=1e-12)
    level = history.baseline_level(h, name)
    flat = sorted(line.get_ydata()[0] for line in ax.lines if len(set(line.get_ydata())) == 1
                  and len(line.get_ydata()) == 2)
    assert flat == pytest.approx([level, level * 1.15])
    days = history._days(pts["datetime"])  # the runs' span, and 8% of it on either side
    pad = 0.08 * (days.max() - days.min())
    assert ax.get_xlim() == pytest.approx((days.min() - pad, days.max() + pad), rel=1e-12)
    history.benchmark_svg(history.build_history(paths[:1]), name, "u")
    (day,) = history._days(pd.Series([pd.Timestamp("2026-01-02T12:00:00+00:00")]))
    assert drawn[-1][0].axes[0].get_xlim() == pytest.approx((day - 1 / 24, day + 1 / 24),
                                                            rel=1e-12)  # one run: an hour each side


def test_the_legend_names_each_machine_and_every_mark(
        tmp_path: Path, drawn: list[tuple[Any, dict[str, str]]]) -> None:
    base = _run(tmp_path / "base.json", 1)
    h = history.build_history([_run(tmp_path / "a.json", 2),
                               _run(tmp_path / "b.json", 3, info=OTHER)], base, 0.15)
    history.legend_svg(h)
    (legend,) = drawn[0][0].legends
    machines = h.runs.drop_duplicates("fingerprint")
    assert [t.get_text() for t in legend.get_texts()] == [
        *(f"{m} (fingerprint {f})" for m, f in zip(machines["machine"],
                                                   machines["fingerprint"], strict=True)),
        "hollow: unpaired roofline fallback (no per-round reference)",
        "bar: 95% CI of the point's median", "regression flagged by the gate",
        "disagrees with numpy (a wrong result)", "baseline ×ref",
        "baseline +15% (the threshold)"]
    handles = legend.legend_handles
    assert [h.get_marker() for h in handles[:2]] == [history._style(0)[1],
                                                     history._style(1)[1]]
    hollow, _, ring, cross = handles[2:6]
    assert hollow.get_markerfacecolor() == "white" and hollow.get_color() == "#555"
    assert (ring.get_marker(), ring.get_markerfacecolor()) == ("o", "none")
    assert cross.get_marker() == "X"
    # Two columns, a quarter inch a row: 8 entries, 4 rows.
    assert legend._ncols == 2 and len(handles) == 8
    assert tuple(drawn[0][0].get_size_inches()) == pytest.approx((9.0, 0.25 * 4 + 0.15))
    history.legend_svg(history.build_history([_run(tmp_path / "c.json", 4)]))
    assert len(drawn[1][0].legends[0].legend_handles) == 5  # no baseline lines; 3 rows
    assert tuple(drawn[1][0].get_size_inches()) == pytest.approx((9.0, 0.25 * 3 + 0.15))


def test_a_figure_is_clean_svg_with_ids_of_its_own(tmp_path: Path) -> None:
    """No metadata, every id prefixed by the figure's salt (unique in the page), and no
    stray text between the elements (the hover titles sit inside their groups)."""
    import xml.etree.ElementTree as ET

    base = _run(tmp_path / "base.json", 1)
    h = history.build_history([_run(tmp_path / "r2.json", 2)], base)
    svg = history.benchmark_svg(h, "bench_training[crops-numpy]", "s1")
    assert "<metadata" not in svg and svg.startswith("<svg")
    ids = re.findall(r' id="([^"]+)"', svg)
    assert ids and all(i.startswith("s1-") for i in ids)
    root = ET.fromstring(svg)
    titled = 0
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag not in ("text", "title", "style"):
            assert not (element.text or "").strip(), tag
        assert not (element.tail or "").strip(), tag
        titled += sum(child.tag.endswith("}title") for child in element) if tag == "g" else 0
    assert titled == svg.count("<title>") > 0


def test_without_a_baseline_the_latest_run_is_compared_with_its_machines_previous_run(
        tmp_path: Path) -> None:
    paths = [_run(tmp_path / "a1.json", 1), _run(tmp_path / "b1.json", 2, info=OTHER),
             _run(tmp_path / "a2.json", 3, factors={"numpy": 1.25})]
    section = history.latest_section(history.build_history(paths))
    assert "against the previous run on this machine, a1" in section.notes[0]
    verdicts = dict(zip(section.table["backend"], section.table["verdict"], strict=True))
    assert "regression" in verdicts["numpy"]
    alone = history.latest_section(history.build_history(paths[1:2]))
    assert alone.table.empty
    assert alone.title == ("latest run b1 (2026-01-02 12:00 UTC, commit 0202020 on main): "
                           "nothing to compare it with")
    assert alone.notes == ["no --baseline given and no earlier run on its machine"]


def test_a_baseline_from_another_machine_or_without_common_benchmarks_is_said(
        tmp_path: Path) -> None:
    base = _run(tmp_path / "base.json", 1)
    paths = [_run(tmp_path / "a.json", 2), _run(tmp_path / "b.json", 3),
             _run(tmp_path / "c.json", 4, info=OTHER)]
    notes = history.latest_section(history.build_history(paths, base)).notes
    assert notes[1].startswith("⚠ ") and "Other CPU 5000" in notes[1]
    assert notes[1].endswith("; the reference normalisation cancels most, not all, of that.")
    assert not any("in common" in n for n in notes)
    same = history.latest_section(history.build_history(paths[:2], base)).notes
    assert not any(n.startswith("⚠") for n in same)  # the same machine, common benchmarks
    small = [_run(tmp_path / "s.json", 5, workloads=("small",))]
    notes = history.latest_section(history.build_history(small, base)).notes
    assert "⚠ no training benchmark in common: is it the right baseline?" in notes
    # The same workload, other backends: only the roofline in common, which is no training.
    numpy_base = _run(tmp_path / "numpy.json", 1, backends=("numpy",))
    jax = [_run(tmp_path / "jax.json", 6, backends=("jax",))]
    notes = history.latest_section(history.build_history(jax, numpy_base)).notes
    assert "⚠ no training benchmark in common: is it the right baseline?" in notes


def test_each_runs_basis_lists_its_points_kinds(tmp_path: Path) -> None:
    def run(name: str, day: int, keep_roofline: bool) -> Path:
        doc = make_run(workloads=("crops",), backends=("numpy", "jax"), seed=day)
        doc["datetime"] = f"2026-01-{day:02d}T12:00:00.000000+00:00"
        for bench in doc["benchmarks"]:
            if bench["extra_info"]["backend"] == "jax":  # jax's rounds were not paired
                for key in ("ref_data", "norm_data", "norm_median", "ref_s"):
                    del bench["extra_info"][key]
        if not keep_roofline:  # nor can jax fall back on a roofline
            doc["benchmarks"] = [b for b in doc["benchmarks"] if "roofline" not in b["name"]]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    h = history.build_history([run("both", 1, True), run("one", 2, False)])
    assert list(h.runs.columns) == ["run", "path", "datetime", "commit", "dirty", "branch",
                                    "fingerprint", "machine", "series", "basis", "against"]
    assert h.runs["basis"].tolist() == [", ".join(sorted([history.PAIRED, history.UNPAIRED])),
                                        history.PAIRED]


# --- the command --------------------------------------------------------------------------

def test_the_page_is_one_self_contained_file(tmp_path: Path, capsys) -> None:
    base = _run(tmp_path / "base.json", 1, workloads=("crops", "small"))
    paths = [_run(tmp_path / "r2.json", 2, workloads=("crops", "small")),
             _run(tmp_path / "r3.json", 3, workloads=("crops", "small"), info=OTHER,
                  factors={"torch-cpu": 1.25})]
    out = tmp_path / "site" / "history.html"
    code, stdout, err = run_cli(capsys, "history", *map(str, paths), "--baseline", str(base),
                                "--threshold", "15%", "-o", str(out))
    assert code == 0, err
    assert stdout == f"wrote {out}: 2 runs, 8 benchmarks, 2 flagged points\n"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for workload in ("crops", "small"):
        for backend in ("numpy", "torch-cpu", "jax", "jax-scan"):
            assert f'data-benchmark="bench_training[{workload}-{backend}]"' in page
            assert f"<h4>{workload} · {backend}" in page
    # Nothing to load and nothing to run: no script, no stylesheet link, and every
    # reference inside the page (SVG markers and clip paths) points into it.
    assert "<script" not in page and "<link" not in page and "<img" not in page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith("#") for r in refs)
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "ids must be unique across the inlined figures"
    # Commits in the hover text and the tables, machines, the latest-run table.
    assert "commit 0202020" in page and "commit 0303030" in page
    assert OTHER["gdbench"]["fingerprint"] in page
    assert "Latest run against the baseline" in page and "❌ regression" in page
    assert os.stat(out).st_mode & 0o777 == 0o644


def test_one_run_of_one_benchmark_is_counted_in_the_singular(tmp_path: Path, capsys) -> None:
    one = _run(tmp_path / "one.json", 1, backends=("numpy",))
    out = tmp_path / "page.html"
    code, stdout, _ = run_cli(capsys, "history", str(one), "-o", str(out))
    assert code == 0
    assert stdout == f"wrote {out}: 1 run, 1 benchmark, 0 flagged points\n"


def test_an_output_that_is_a_folder_says_what_to_give(tmp_path: Path, capsys) -> None:
    run = _run(tmp_path / "one.json", 1)
    code, _, err = run_cli(capsys, "history", str(run), "-o", str(tmp_path))
    assert code == 2
    assert err == (f"gdbench history: error: {tmp_path}: is a directory; give the page's file "
                   f"name, such as {tmp_path / 'history.html'}\n")


def test_the_refusals_of_load_history_word_for_word(tmp_path: Path) -> None:
    from gdbench.data.errors import InputError

    with pytest.raises(InputError, match=r"^give one or more run JSON files$"):
        history.load_history([])
    roofline_only = tmp_path / "roofline_only.json"
    roofline_only.write_text(json.dumps(make_run(workloads=("crops", "small"), backends=())))
    with pytest.raises(InputError) as err:
        history.load_history([roofline_only])
    assert str(err.value) == (f"{roofline_only}: no training benchmark (only "
                              "bench_roofline[crops], bench_roofline[small]); the history "
                              "plots training benchmarks")
    doc = make_run(workloads=("crops",))
    del doc["datetime"]
    undated = tmp_path / "undated.json"
    undated.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        history.load_history([undated])
    assert str(err.value) == (f"{undated}: no valid 'datetime' recorded, so the run cannot "
                              "be placed in the history")


def test_the_loaded_history_is_indexed_afresh_with_each_runs_branch(tmp_path: Path) -> None:
    paths = [_run(tmp_path / "b.json", 2), _run(tmp_path / "a.json", 1)]
    frame = history.load_history(paths)
    assert list(frame.index) == list(range(len(frame)))
    assert "index" not in frame and "_order" not in frame
    assert list(dict.fromkeys(frame["run"])) == ["a", "b"] and set(frame["branch"]) == {"main"}
    assert history._branch({"commit_info": {"branch": ""}}) is None
    assert history._branch({"commit_info": {"branch": 5}}) is None
    assert history._branch({"commit_info": "main"}) is None
    assert history._branch({"commit_info": {"branch": "dev"}}) == "dev"


def _unpaired(tmp_path: Path, **kwargs: Any) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """A run without paired rounds (constant rounds): its frame, numpy's row, the
    roofline's row."""
    doc = make_run(workloads=("crops",), backends=("numpy",), paired=False, sigma=0.0,
                   drift=[1.0], **kwargs)
    path = tmp_path / "unpaired.json"
    path.write_text(json.dumps(doc))
    run = load_run(path).set_index("backend", drop=False)
    return run, run.loc["numpy"], run.loc["roofline"]


@pytest.mark.parametrize("rounds", [2, 20])
def test_an_unpaired_point_is_its_median_over_the_rooflines_with_an_interval(
        tmp_path: Path, rounds: int) -> None:
    run, numpy, roof = _unpaired(tmp_path, rounds=rounds)
    basis, est = history.point_metric(run, numpy)
    ratio = numpy["median_s"] / roof["median_s"]
    assert basis == history.UNPAIRED and est.ratio == pytest.approx(ratio, rel=1e-12)
    assert (est.low, est.high) == pytest.approx((ratio, ratio), rel=1e-12)  # two rounds do


def test_an_unpaired_point_without_rounds_on_either_side_has_no_interval(
        tmp_path: Path) -> None:
    for drop in ("numpy", "roofline"):
        run, numpy, roof = _unpaired(tmp_path)
        run.at[drop, "data"] = math.nan  # that side saved no rounds
        basis, est = history.point_metric(run, run.loc["numpy"])
        assert basis == history.UNPAIRED
        assert est.ratio == pytest.approx(numpy["median_s"] / roof["median_s"], rel=1e-12)
        assert math.isnan(est.low) and math.isnan(est.high)


def test_a_run_of_one_benchmark_without_a_roofline_has_a_point_without_value(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), paired=False)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if "roofline" not in b["name"]]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(doc))
    h = history.build_history([path], path)  # its own baseline
    (point,) = h.points.to_dict("records")
    assert point["basis"] == "" and math.isnan(point["value"])
    assert point["against"] == "baseline one"
    doc["datetime"] = "2026-02-01T12:00:00.000000+00:00"
    later = tmp_path / "two.json"
    later.write_text(json.dumps(doc))
    h = history.build_history([path, later])  # no baseline: each against its machine's last
    assert h.points["against"].tolist() == ["", "previous run on this machine, one"]


def _bad_input_cases(tmp_path: Path) -> dict[str, list[str]]:
    good = str(_run(tmp_path / "good.json", 1))
    bad = bad_run_files(tmp_path)
    roofline_only = tmp_path / "roofline_only.json"
    roofline_only.write_text(json.dumps(make_run(workloads=("crops",), backends=())))
    undated = tmp_path / "undated.json"
    doc = make_run(workloads=("crops",))
    del doc["datetime"]
    undated.write_text(json.dumps(doc))
    page = str(tmp_path / "page.html")
    return {
        "missing file": [str(bad["missing"]), "-o", page],
        "not a run": [good, str(bad["not a run"]), "-o", page],
        "truncated": [good, str(bad["truncated"]), "-o", page],
        "no training benchmark": [good, str(roofline_only), "-o", page],
        "baseline without training benchmark": [good, "--baseline", str(roofline_only),
                                                "-o", page],
        "missing baseline": [good, "--baseline", str(bad["missing"]), "-o", page],
        "no datetime": [str(undated), "-o", page],
        "output is a directory": [good, "-o", str(tmp_path)],
        "bad threshold": [good, "--threshold", "15", "-o", page],
    }


@pytest.mark.parametrize("case", ["missing file", "not a run", "truncated",
                                  "no training benchmark",
                                  "baseline without training benchmark", "missing baseline",
                                  "no datetime", "output is a directory", "bad threshold"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, case: str) -> None:
    argv = _bad_input_cases(tmp_path)[case]
    code, out, err = run_cli(capsys, "history", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbench history: error:"), err
    assert not (tmp_path / "page.html").exists()


def test_a_failed_build_leaves_an_existing_page_as_it_was(tmp_path: Path, capsys) -> None:
    page = tmp_path / "history.html"
    page.write_text("the previous page", encoding="utf-8")
    code, _, _ = run_cli(capsys, "history", str(tmp_path / "missing.json"), "-o", str(page))
    assert code == 2
    assert page.read_text(encoding="utf-8") == "the previous page"
    assert [p.name for p in tmp_path.iterdir()] == ["history.html"]  # no temp file left


# --- the page in a real browser -----------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
            "chrome", "chromium-headless-shell")


def find_browser() -> str | None:
    """$GDBENCH_CHROMIUM, else the first Chromium or Chrome on PATH."""
    chosen = os.environ.get("GDBENCH_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class DevTools:
    """A headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4), so no port, no
    websocket library and no driver binary are needed. It records every console error,
    uncaught exception and browser log error (such as a resource that failed to load)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0) -> None:
        self.deadline = time.monotonic() + timeout
        self.log = open(profile / "stderr.txt", "w+b")  # noqa: SIM115 (closed in close())
        # sh moves our pipes onto the fds the protocol uses: commands on 3, replies on 4.
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', binary,
             "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             f"--user-data-dir={profile / 'profile'}", "--remote-debugging-pipe",
             "--window-size=1200,1600", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=self.session)

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"the browser did not answer in time; {self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(f"the browser exited; {self.stderr()}")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def load(self, url: str) -> list[str]:
        """Open ``url``, wait for its load event, and return the errors it caused."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, self.session)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._receive())
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        return errors

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression,
                                               "returnByValue": True}, self.session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def stderr(self) -> str:
        self.log.seek(0)
        return "its stderr ends: " + self.log.read().decode(errors="replace")[-1500:]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def browser() -> Any:
    binary = find_browser()
    if binary is None and os.environ.get("GDBENCH_CHROMIUM"):
        pytest.skip(f"GDBENCH_CHROMIUM={os.environ['GDBENCH_CHROMIUM']} is not an executable")
    if binary is None:
        pytest.skip("no headless browser: none of " + ", ".join(BROWSERS) + " is on PATH "
                    "(`make browser` installs Debian's chromium; or set GDBENCH_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="gdbench-browser-") as tmp:
        devtools = DevTools(binary, Path(tmp))
        try:
            yield devtools
        finally:
            devtools.close()


def test_the_browser_harness_catches_broken_pages(browser: DevTools, tmp_path: Path) -> None:
    """A control: a page with a console error, an exception and a missing image must
    fail the check below, so a clean result there means something."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("canary");'
                    "no_such_function();</script></body></html>", encoding="utf-8")
    errors = browser.load(page.as_uri())
    assert any("canary" in e for e in errors), errors
    assert any(e.startswith("exception:") for e in errors), errors
    assert any("missing.png" in e for e in errors), errors


def test_the_page_renders_every_benchmark_in_chromium_without_errors(
        browser: DevTools, tmp_path: Path, capsys) -> None:
    workloads = ("crops", "small")
    base = _run(tmp_path / "base.json", 1, workloads=workloads)
    paths = [_run(tmp_path / "r2.json", 2, workloads=workloads),
             _run(tmp_path / "r3.json", 3, workloads=workloads, factors={"numpy": 1.25}),
             _run(tmp_path / "r4.json", 4, workloads=workloads, info=OTHER),
             _run(tmp_path / "r5.json", 5, workloads=workloads, paired=False)]
    out = tmp_path / "history.html"
    code, _, err = run_cli(capsys, "history", *map(str, paths), "--baseline", str(base),
                           "-o", str(out))
    assert code == 0, err
    assert browser.load(out.as_uri()) == []
    expected = {f"bench_training[{w}-{b}]" for w in workloads
                for b in ("numpy", "torch-cpu", "jax", "jax-scan")}
    shown = browser.evaluate("""JSON.stringify([...document.querySelectorAll('article')].map(
        a => { const svg = a.querySelector('svg'), box = svg && svg.getBoundingClientRect();
               return {name: a.dataset.benchmark, heading: a.querySelector('h4').innerText,
                       width: box ? box.width : 0, height: box ? box.height : 0,
                       marks: svg ? svg.querySelectorAll('use').length : 0,
                       hovers: svg ? svg.querySelectorAll('g > title').length : 0}; }))""")
    articles = json.loads(shown)
    assert {a["name"] for a in articles} == expected
    for a in articles:
        workload, backend = a["name"][len("bench_training["):-1].split("-", 1)
        assert a["heading"].startswith(f"{workload} · {backend}")
        assert a["width"] > 200 and a["height"] > 100, a
        assert a["marks"] >= 4 and a["hovers"] >= 4, a  # 4 runs, each a marker with a title
    flagged = json.loads(browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('article.flagged')]"
        ".map(a => a.dataset.benchmark))"))
    assert set(flagged) == {"bench_training[crops-numpy]", "bench_training[small-numpy]"}
    text = browser.evaluate("document.body.innerText")
    assert "Latest run against the baseline" in text
    assert "r5: no per-round references" in text
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0


# --- a point's hover text and the page's tables, word for word ------------------------------

def _point(**changes: Any) -> pd.Series:
    p = {"datetime": pd.Timestamp("2026-01-02 03:04:05", tz="UTC"), "run": "r2",
         "commit": "abcdef123456", "dirty": True, "branch": "main",
         "machine": "Test CPU, 2 cores", "fingerprint": "f00d", "basis": regress.PAIRED,
         "value": 1.234, "low": 1.2, "high": 1.3, "against": "baseline base",
         "change": 1.25, "change_low": 1.2, "change_high": 1.3,
         "verdict": regress.REGRESSION, "flag": regress.REGRESSION}
    return pd.Series({**p, **changes})


def test_a_points_hover_text_says_when_what_where_and_the_verdict() -> None:
    assert history.point_title(_point(), 0.15) == (
        "2026-01-02 03:04 UTC · r2\n"
        "commit abcdef1 (dirty) on main\n"
        "Test CPU, 2 cores · fingerprint f00d\n"
        "×ref 1.23 [1.20, 1.30] (paired)\n"
        "vs baseline base: +25.0% [+20.0%, +30.0%] → regression\n"
        "⚠ regression flagged by the gate (threshold +15%)")
    assert history.point_title(_point(flag=regress.DISAGREES, dirty=False), 0.1).splitlines()[
        1::4] == ["commit abcdef1 on main", "⚠ disagrees with numpy (a wrong result) "
                  "(threshold +10%)"]


@pytest.mark.parametrize(("changes", "lines"), [
    ({"datetime": pd.NaT}, {0: "date unknown · r2"}),
    ({"commit": ""}, {1: "commit unknown on main"}),
    ({"commit": None, "branch": None}, {1: "commit unknown"}),
    ({"branch": float("nan")}, {1: "commit abcdef1 (dirty)"}),
    ({"branch": ""}, {1: "commit abcdef1 (dirty)"}),
    ({"basis": regress.UNPAIRED, "low": float("nan"), "high": float("nan")},
     {3: "×ref 1.23 (unpaired roofline fallback)"}),
    ({"change_low": float("nan"), "change_high": float("nan")},
     {4: "vs baseline base: +25.0% → regression"}),
    ({"against": "", "verdict": "", "flag": ""},
     {4: "first run on this machine: nothing to judge it by"}),
])
def test_a_points_hover_text_without_a_date_commit_branch_or_interval(
        changes: dict[str, Any], lines: dict[int, str]) -> None:
    title = history.point_title(_point(**changes), 0.15).splitlines()
    for n, line in lines.items():
        assert title[n] == line
    assert len(title) == (5 if changes.get("flag") == "" else 6)


def test_a_table_of_the_page_is_escaped_html_with_a_class_per_row() -> None:
    frame = pd.DataFrame({"a<b": ["x&y", None, "z"], "n": [1.5, float("nan"), 2.0]})
    assert history._table(frame, ["flag", ""]) == (
        '<div class="table"><table><thead><tr><th>a&lt;b</th><th>n</th></tr></thead><tbody>'
        '<tr class="flag"><td>x&amp;y</td><td>1.5</td></tr>'
        "<tr><td></td><td></td></tr>"
        "<tr><td>z</td><td>2.0</td></tr></tbody></table></div>")
    assert history._table(frame.iloc[:0]) == (
        '<div class="table"><table><thead><tr><th>a&lt;b</th><th>n</th></tr></thead><tbody>'
        "</tbody></table></div>")


def test_a_benchmarks_table_lists_its_points_newest_first() -> None:
    nan = float("nan")
    common = {"step_us": 7.5, "step_spread": 0.017, "doubts": ()}
    pts = pd.DataFrame([
        _point(run="r1", datetime=pd.NaT, commit=None, branch=None, against="", change=nan,
               change_low=nan, change_high=nan, verdict="", flag="", **common),
        _point(run="r2", basis=regress.UNPAIRED, low=nan, high=nan, against="baseline b",
               change=1.25, change_low=nan, change_high=nan, verdict="", flag="", **common),
        _point(run="r3", **common)])
    table = history.points_table(pts)
    assert list(table.columns) == ["date (UTC)", "run", "commit", "branch", "machine",
                                   "µs/step", "×ref", "95% CI", "basis", "change", "gate CI",
                                   "verdict"]
    assert table.values.tolist() == [
        ["2026-01-02 03:04", "r3", "abcdef1 (dirty)", "main", "f00d", "7.50 ±1.7%", "1.23",
         "[1.20, 1.30]", "paired", "+25.0%", "[+20.0%, +30.0%]", "regression"],
        ["2026-01-02 03:04", "r2", "abcdef1 (dirty)", "main", "f00d", "7.50 ±1.7%", "1.23",
         "", "unpaired roofline", "+25.0%", "", ""],
        ["date unknown", "r1", "unknown", "", "f00d", "7.50 ±1.7%", "1.23", "[1.20, 1.30]",
         "paired", "", "", "first on machine"]]


def test_the_page_word_for_word_around_its_figures(tmp_path: Path) -> None:
    """An old run without paired rounds and a new one (numpy 25% slower, jax 25% faster)
    against a baseline: the page's words, its latest-run table with a class per verdict,
    each benchmark's card and table, and the runs table."""
    base = _run(tmp_path / "base.json", 1, backends=("numpy", "jax"))
    old = _run(tmp_path / "old.json", 2, backends=("numpy", "jax"), paired=False,
               commit="ab" * 20)
    new = _run(tmp_path / "new.json", 3, backends=("numpy", "jax"),
               factors={"numpy": 1.25, "jax": 0.75}, dirty=True)
    h = history.build_history([old, new], base, 0.15)
    page = re.sub(r"<svg.*?</svg>", "<SVG>", history.render_page(h), flags=re.S)
    lines = page.split("\n")
    assert lines[:4] == ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                         '<meta name="viewport" content="width=device-width, initial-scale=1">',
                         "<title>gdbench history</title>"]
    assert lines[lines.index("</style></head><body>") + 1:][:3] == [
        "<h1>gdbench history</h1>",
        '<p class="lead">2 runs from 2026-01-02 12:00 UTC to 2026-01-03 12:00 UTC on 1 '
        "machine; 2 training benchmarks; 1 point flagged. Each point is the gate&#x27;s "
        "metric for one run: ×ref, the median of the benchmark&#x27;s rounds each over its "
        "paired reference round (the workload&#x27;s reference loop, timed just before it, so "
        "the machine&#x27;s drift cancels), with the 95% bootstrap interval of that median. "
        f"Each run is judged as gdbench check would, against the baseline {base} (threshold "
        "+15%). Hover a point for its commit and verdict; each benchmark&#x27;s table lists "
        "them.</p>",
        "<p class=\"warn\">⚠ old: no per-round references (norm_data), saved before paired "
        "timing; their points (hollow) are median ÷ the same run's roofline median, which "
        "the machine's drift can move by tens of percent.</p>"]
    assert '<p class="warn">⚠ ' not in page.split("old: no per-round")[1]  # all plotted
    assert '\n<div class="legend"><SVG>\n</div>\n' in page
    legend = history.legend_svg(h)
    ids = re.findall(r' id="([^"]+)"', legend)
    assert ids and all(i.startswith("gdbench-legend-") for i in ids)  # its own, in the page
    latest = history.latest_section(h)
    start = lines.index('<section id="latest"><h2>Latest run against the baseline</h2>'
                        f"<h3>{latest.title}</h3>")
    assert lines[start + 1:start + 5] == [
        *(f'<p class="note">{html_escape(n)}</p>' for n in latest.notes),
        history._table(latest.table, ["flagged", "improved", ""]), "</section>"]
    assert [v for v in h.gates["new"]["verdict"]] == [regress.REGRESSION,
                                                       regress.IMPROVEMENT, "reference"]
    start = lines.index('<section id="benchmarks"><h2>Benchmarks</h2>')
    assert lines[start + 1:start + 3] == [
        '<p class="note">µs/step: the median round over its steps, ± the reach of its 95% '
        "bootstrap interval relative to it. </p>", '<h3>crops</h3><div class="grid">']
    for n, backend in enumerate(("numpy", "jax")):
        name = f"bench_training[crops-{backend}]"
        b = h.points[h.points["name"] == name]
        card = (' class="flagged"><h4>crops · numpy<span class="badge">1 flagged</span></h4>'
                if backend == "numpy" else "><h4>crops · jax</h4>")
        classes = ["flagged", ""] if backend == "numpy" else [""]
        assert lines[start + 3 + 2 * n:start + 5 + 2 * n] == [
            f'<article id="gdbench-bench-training-crops-{backend}" data-benchmark="{name}"'
            f"{card}<SVG>",
            "<details><summary>2 points: dates, commits, verdicts</summary>"
            f"{history._table(history.points_table(b), classes)}"
            "</details></article>"]
    runs = lines[lines.index('<section id="runs"><h2>Runs</h2>') + 1]
    assert runs.startswith(
        '<div class="table"><table><thead><tr><th>#</th><th>date (UTC)</th><th>commit</th>'
        "<th>branch</th><th>machine</th><th>fingerprint</th><th>metric</th><th>gate</th>"
        "<th>judged against</th><th>run</th><th>file</th></tr></thead><tbody>"
        "<tr><td>1</td><td>2026-01-02 12:00</td><td>abababa</td><td>main</td>"
        "<td>Test CPU 9000, 2 cores</td>")
    assert "<td>unpaired roofline</td><td>PASS: 0 regressions, 0 improved, 2 unchanged " \
           f"(threshold +15%)</td><td>baseline base</td><td>old</td><td>{old}</td></tr>" in runs
    assert '<tr class="flagged"><td>2</td><td>2026-01-03 12:00</td><td>0303030 (dirty)</td>' \
           in runs
    assert "<td>paired</td><td>FAIL: 1 regression, 1 improved, 0 unchanged (threshold " \
           f"+15%)</td><td>baseline base</td><td>new</td><td>{new}</td></tr>" in runs
    assert lines[-2:] == ["</section></body></html>", ""]


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_the_page_without_a_baseline_judges_each_run_by_its_machines_previous_one(
        tmp_path: Path) -> None:
    paths = [_run(tmp_path / "a1.json", 1, backends=("numpy",), paired=False),
             _run(tmp_path / "b1.json", 2, backends=("numpy",), info=OTHER, paired=False),
             _run(tmp_path / "a2.json", 3, backends=("numpy",))]
    doc = json.loads(paths[2].read_text())
    del doc["commit_info"]["branch"]
    paths[2].write_text(json.dumps(doc))
    h = history.build_history(paths)
    page = re.sub(r"<svg.*?</svg>", "<SVG>", history.render_page(h), flags=re.S)
    assert '<p class="warn">⚠ a1, b1: no per-round references (norm_data)' in page
    assert '<p class="lead">3 runs from 2026-01-01 12:00 UTC to 2026-01-03 12:00 UTC on 2 ' \
           "machines; 1 training benchmark; 0 points flagged. Each point" in page
    assert "against the previous run on its machine (threshold +15%)" in page
    assert '<section id="latest"><h2>Latest run against its machine\'s previous run</h2>' \
           in page
    # The first run of each machine has no gate; the last has no branch.
    assert "<td>unpaired roofline</td><td></td><td>nothing (first on its machine)</td>" \
           "<td>a1</td>" in page
    assert "<td>nothing (first on its machine)</td><td>b1</td>" in page
    assert "<td>0303030</td><td></td><td>Test CPU 9000, 2 cores</td>" in page
    assert "<td>previous run on this machine, a1</td><td>a2</td>" in page
    assert page.count('<p class="warn">') == 1  # every point plotted
    # The grid of cards, and each section, closed.
    cards = page.split('<section id="benchmarks">')[1].split('<section id="runs">')[0]
    assert cards.endswith("</article>\n</div>\n</section>\n")
    (one,) = [_run(tmp_path / "one.json", 1, backends=("numpy",))]
    alone = history.render_page(history.build_history([one]))
    assert '<p class="lead">1 run from 2026-01-01 12:00 UTC to 2026-01-01 12:00 UTC on 1 ' \
           "machine; 1 training benchmark; 0 points flagged." in alone
    latest = history.latest_section(history.build_history([one]))
    start = alone.index("<section id=\"latest\">")
    section = alone[start:alone.index("</section>", start)]
    assert '<div class="table">' not in section  # nothing to judge it by: no gate table
    assert all(f">{html_escape(n)}</p>" in section for n in latest.notes)


def test_a_point_without_a_value_is_counted_on_the_page_and_a_warning_note_is_red(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), paired=False)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if "roofline" not in b["name"]]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(doc))
    h = history.build_history([path])
    section = history.latest_section(h)
    section.notes = ["⚠ a warning", "a note"]
    monkeypatch.setattr(history, "latest_section", lambda h: section)
    page = history.render_page(h)
    assert '<p class="warn">⚠ 1 point has neither paired rounds nor a roofline to ' \
           "normalise by, and is not plotted.</p>" in page
    later = tmp_path / "two.json"
    later.write_text(json.dumps({**doc, "datetime": "2026-02-01T12:00:00.000000+00:00"}))
    assert '<p class="warn">⚠ 2 points have neither paired rounds nor a roofline to ' \
           "normalise by, and are not plotted.</p>" in history.render_page(
               history.build_history([path, later]))
    assert '<p class="warn">⚠ a warning</p>\n<p class="note">a note</p>' in page


def test_a_point_that_disagrees_with_numpy_is_crossed_in_red(tmp_path: Path, drawn) -> None:
    base = _run(tmp_path / "base.json", 1, backends=("numpy", "jax"))
    new = _run(tmp_path / "new.json", 2, backends=("numpy", "jax"), disagree=("jax",))
    h = history.build_history([new], base)
    history.benchmark_svg(h, "bench_training[crops-jax]", "t")
    ((fig, titles),) = drawn
    (idx,) = h.points.index[(h.points["backend"] == "jax")]
    lines = {line.get_gid(): line for line in fig.axes[0].lines}
    cross = lines[f"t-p{idx}-flag"]
    assert (cross.get_marker(), cross.get_color(), cross.get_markeredgecolor()) == (
        "X", history.FLAG_RED, "white")
    assert titles[f"t-p{idx}-flag"] == titles[f"t-p{idx}"]
    assert titles[f"t-p{idx}"].endswith("\n⚠ disagrees with numpy (a wrong result) "
                                        "(threshold +15%)")


def test_a_benchmarks_card_names_its_dtype_unless_float32() -> None:
    pts = pd.DataFrame({"workload": ["crops"], "backend": ["numpy"], "dtype": ["float64"]})
    assert history._title(pts) == "crops · numpy · float64"
    assert history._title(pts.assign(dtype="float32")) == "crops · numpy"
    assert history._title(pts.assign(dtype=None)) == "crops · numpy"
    assert history._slug("bench_training[crops-numpy]") == "bench-training-crops-numpy"
    assert history._slug("--A b--") == "a-b"


def test_the_notes_of_several_doubts_are_one_paragraph() -> None:
    from gdbench.judge import trust
    from gdbench.report.tables import FOOTNOTES

    pts = pd.DataFrame({"doubts": [(trust.WIDE_INTERVAL,), (), (trust.UNSETTLED,)]})
    assert history.doubt_note(pts) == (f"{FOOTNOTES[trust.UNSETTLED]} "
                                       f"{FOOTNOTES[trust.WIDE_INTERVAL]}")
    assert history.doubt_note(pts.iloc[1:2]) == ""
    assert history._slug("Xeon-") == "xeon"
