"""`tracker contrast` and `tracker best`: paired contrasts of conditions, and winners."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.analysis import contrasts, names, winners
from tracker.cli.common import JsonOpt, cli_errors, err, open_store, print_json, print_table
from tracker.cli.listing import CsvOpt, SplitOpt, WhereOpt, emit, name_callback

RoisOpt = Annotated[str, typer.Option(
    "--roi", help="ROI name, several (V1,V2,V4) or all.", callback=name_callback("roi", many=True))]
TargetOpt = Annotated[str, typer.Option(help="voxels or roi_mean.",
                                        callback=name_callback("target"))]
MetricROpt = Annotated[str, typer.Option(help="r (Pearson), r2_corr (r squared) or r2 (R^2).",
                                         callback=name_callback("metric"))]
AverageOpt = Annotated[str | None, typer.Option(
    "--average", "--over-seeds", help="Condition fields averaged per voxel first (e.g. seed).")]
CONTRAST_COLUMNS = ["a", "b", "n", "mean_diff", "mean_diff_low", "mean_diff_high", "median_diff",
                    "wilcoxon_p", "p_adjusted", "share_a_wins", "share_b_wins"]


def rois(text: str) -> str | list[str] | None:
    """``--roi`` text -> one name, a list, or None for ``all`` (names validated)."""
    found = names.resolve_rois(text)
    if found is None:
        return None
    return found[0] if len(found) == 1 else found


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@cli_errors
def contrast_cmd(
    ctx: typer.Context,
    a: Annotated[str | None, typer.Argument(
        help="Side A: a --where expression ('layer=conv4') or a fit id.")] = None,
    b: Annotated[str | None, typer.Argument(help="Side B, the same way.")] = None,
    each: Annotated[str | None, typer.Option(
        help="A family: every value of this field against --reference.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="The reference value of --each (side B).")] = None,
    by: Annotated[str | None, typer.Option(
        help="One contrast per group of these fields (e.g. roi,subject).")] = None,
    roi: RoisOpt = "V4", split: SplitOpt = "validation", metric: MetricROpt = "r",
    target: TargetOpt = "voxels", where: WhereOpt = None, average: AverageOpt = None,
    correction: Annotated[str, typer.Option(
        help="Family correction of the Wilcoxon p: holm or bh.")] = "holm",
    n_boot: Annotated[int, typer.Option(help="Paired bootstrap resamples for the 95% CIs.")] = 1000,
    n_permutations: Annotated[int, typer.Option(help="Swap patterns of the per-voxel test.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the swap patterns.")] = 0,
    as_json: JsonOpt = False, as_csv: CsvOpt = False,
) -> None:
    """Condition A against condition B over the same voxels: per-voxel differences.

    Mean and median of A - B with paired bootstrap 95% CIs, the Wilcoxon signed-rank p
    (corrected over the family: every --by group, every --each value), and the share of
    voxels where A beats B (and B beats A) by a paired swap permutation test of r on the
    validation images. Each side must be one condition.

    Examples: [bold]tracker contrast 'preprocessing=caffe+retinawarp' 'preprocessing=caffe'
    --where 'method=ridge'[/bold]
    [bold]tracker contrast --each layer --reference conv3 --by roi --roi all[/bold]
    """
    from tracker.analysis.queries import run_filter

    kw = dict(by=_names(by), roi=rois(roi), split=split, metric=metric, target=target,
              extra=run_filter(where), over=_names(average), n_boot=n_boot,
              n_permutations=n_permutations, seed=seed, permutation_seed=seed,
              correction=correction)
    with open_store(ctx) as store:
        if each:
            if a or b or reference is None:
                raise typer.BadParameter("--each takes --reference and no A / B arguments")
            rows = contrasts.contrast_each(store, each, reference, **kw)
        elif a and b:
            rows = contrasts.contrast(store, [a], [b], **kw)
        else:
            raise typer.BadParameter("give A and B, or --each FIELD --reference VALUE")
    notes = {r.get("voxel_test_note") for r in rows} - {None}
    title = (f"A - B of {metric} on {split} images; {rows[0]['correction'] if rows else ''}"
             + "".join(f"; {u}" for u in {r.get('untrained') for r in rows} - {None}))
    emit(rows, [*kw["by"], *CONTRAST_COLUMNS], as_json, as_csv, title=title)
    if notes and not (as_json or as_csv):
        err.print(f"per-voxel test: {'; '.join(sorted(notes))}")


@cli_errors
def best_cmd(
    ctx: typer.Context,
    over: Annotated[str, typer.Option(
        help="The candidates: a condition field (layer, model, preprocessing, method).")],
    roi: RoisOpt = "all", split: SplitOpt = "validation", metric: MetricROpt = "r",
    target: TargetOpt = "voxels", where: WhereOpt = None, average: AverageOpt = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of voxels (CI and P(best)).")] = 1000,
    n_permutations: Annotated[int, typer.Option(help="Swap patterns of the per-voxel test.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the swap patterns.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Which candidate wins, per ROI and per voxel.

    Per ROI over the voxels every candidate scored: mean with bootstrap 95% CI,
    P(best) (share of voxel resamples it wins), the share of voxels it wins and wins
    significantly (paired swap test against the runner-up at that voxel).

    Example: [bold]tracker best --over layer --roi V1,V4,LO --where 'method=ridge'[/bold]
    """
    from tracker.analysis.queries import run_filter

    with open_store(ctx) as store:
        rows = winners.best(store, over, roi=rois(roi), split=split, metric=metric, target=target,
                            extra=run_filter(where), average=_names(average), n_boot=n_boot,
                            seed=seed, n_permutations=n_permutations, permutation_seed=seed)
    if as_json:
        return print_json(rows)
    if not rows:
        err.print(f"no completed fits for ROI {roi} / target {target}")
        raise typer.Exit(1)
    flat = [{"roi": r["roi"], "best": "*" if c["value"] == r["best"] else "", over: c["value"],
             "n": r["n"], **{k: c[k] for k in ("mean", "mean_low", "mean_high", "p_best",
                                                  "voxel_share", "voxel_share_sig")}}
            for r in rows for c in r["conditions"]]
    untrained = {r["untrained"] for r in rows} - {None}
    print_table(flat, ["roi", over, "best", "n", "mean", "mean_low", "mean_high", "p_best",
                       "voxel_share", "voxel_share_sig"],
                title=f"best {over} per ROI, {metric} on {split} images"
                      + "".join(f"; {u}" for u in untrained))
    notes = {r.get("voxel_test_note") for r in rows} - {None}
    if notes:
        err.print(f"voxel_share_sig: {'; '.join(sorted(notes))}")
    return None
