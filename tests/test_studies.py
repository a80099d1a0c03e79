"""The study layer: the noise rule on hand-computed cases, ablation and claims tables, matched baselines."""

import numpy as np
import pandas as pd
import pytest

import reidlab
from reidlab import studies
from reidlab.studies import (
    BEYOND,
    ONE_SEED,
    WITHIN,
    Claim,
    PaperDelta,
    ablation_table,
    claims_table,
    matched_baseline,
    paired_effect,
    rename_rows,
    runs_of,
    seeded,
)
from reidlab.studies import coen as coen_study
from reidlab.studies.noise import critical_t, describe


def _scores(rows: dict[str, list[float]], **extra) -> pd.DataFrame:
    return pd.DataFrame([{"row": r, "seed": s, "mAP": v, **extra} for r, values in rows.items()
                         for s, v in enumerate(values)])


def test_paired_effect_hand_computed():
    # differences per seed: 2, 3, 4 -> mean 3, std 1, se 1/sqrt(3) = 0.577; t = 5.2 > 4.303 (df 2)
    effect = paired_effect(_scores({"a": [12, 13, 14], "b": [10, 10, 10]}), "a", "b").iloc[0]
    assert effect["delta"] == pytest.approx(3.0)
    assert effect["se"] == pytest.approx(1 / np.sqrt(3))
    assert effect["seeds"] == 3 and effect["verdict"] == BEYOND
    assert critical_t(3) == pytest.approx(4.3027, abs=1e-4)


def test_pairing_removes_a_shared_seed_effect():
    # seed effects (0, +20, -20) are shared by both rows: unpaired stds are huge, the paired difference is exact
    b = [50, 70, 30]
    scores = _scores({"a": [51, 71.2, 30.9], "b": b})
    effect = paired_effect(scores, "a", "b").iloc[0]
    assert effect["verdict"] == BEYOND and effect["delta"] == pytest.approx(1.033, abs=1e-3)
    unpaired_se = np.sqrt(np.var([51, 71.2, 30.9], ddof=1) / 3 + np.var(b, ddof=1) / 3)
    assert abs(effect["delta"]) < 2 * unpaired_se   # an unpaired comparison would call it noise


def test_zero_spread_and_one_seed():
    # identical differences: se 0, any non-zero delta is beyond noise; a zero delta is within noise
    assert paired_effect(_scores({"a": [11, 11], "b": [10, 10]}), "a", "b").iloc[0]["verdict"] == BEYOND
    assert paired_effect(_scores({"a": [10, 10], "b": [10, 10]}), "a", "b").iloc[0]["verdict"] == WITHIN
    one = paired_effect(_scores({"a": [12], "b": [10]}), "a", "b").iloc[0]
    assert one["verdict"] == ONE_SEED and np.isnan(one["se"])
    assert describe(one) == "+2.0 mAP (one seed)"


def test_paired_effect_within_settings_and_errors():
    scores = pd.concat([_scores({"a": [12, 13, 14], "b": [10, 10, 10]}, setting="M(N)"),
                        _scores({"a": [10, 11, 9], "b": [10, 10, 10]}, setting="M(T)")])
    frame = paired_effect(scores, "a", "b", by=["setting"])
    assert list(frame.index) == ["M(N)", "M(T)"]
    assert list(frame["verdict"]) == [BEYOND, WITHIN]
    with pytest.raises(ValueError, match=r"no row\(s\) \['c'\]"):
        paired_effect(scores, "c", "b")
    with pytest.raises(ValueError, match="no column 'R-1'"):
        paired_effect(scores, "a", "b", "R-1")


def test_paired_differences_per_seed():
    scores = pd.concat([_scores({"a": [12, 13], "b": [10, 10]}, setting="x"),
                        _scores({"a": [9, 11], "b": [10, 10]}, setting="y")])
    diffs = studies.paired_differences(scores, "a", "b", by=["setting"])
    assert diffs.to_dict("list") == {"setting": ["x", "x", "y", "y"], "seed": [0, 1, 0, 1], "mAP": [2, 3, -1, 1]}


def test_the_unpaired_seed_is_left_out():
    scores = _scores({"a": [12, 13, 14], "b": [10, 10]})
    assert paired_effect(scores, "a", "b").iloc[0]["seeds"] == 2


def test_ablation_table_one_format_and_verdicts():
    scores = _scores({"base": [10, 11, 12], "x": [14, 15.5, 16], "y": [10.1, 10.9, 12.2]})
    table = ablation_table(scores, "base", metrics=["mAP"])
    assert list(table.index) == ["base", "x", "y"]
    assert table.loc["base", "mAP"] == "11.0 ± 1.0" and table.loc["x", "Δ mAP"] == "+4.2"
    assert table.loc["base", "Δ mAP"] == "reference" and table.loc["x", "verdict"] == BEYOND
    assert table.loc["y", "verdict"] == WITHIN


def test_rename_rows_keeps_and_orders_rows():
    scores = _scores({"a": [1, 2], "b": [3, 4], "c": [5, 6]})
    out = rename_rows(scores, {"c": "first", "a": "second"})
    assert list(out["row"]) == ["first", "first", "second", "second"]


def test_claims_table_schema_and_readings():
    scores = _scores({"(a) ViT baseline": [10, 10, 10], "(b) PG": [12, 13, 14], "w/o CEM": [14, 14, 14],
                      "w/ CEM": [12, 12.5, 13]})
    claims = [Claim("PG helps", scores, "(b) PG", "(a) ViT baseline", PaperDelta("coen", 3, "(b)", "(a)")),
              Claim("CEM helps", scores, "w/ CEM", "w/o CEM", PaperDelta("coen", 7, "w/ CEM", "w/o CEM")),
              Claim("no paper number", scores, "(b) PG", "(a) ViT baseline", source="text only"),
              Claim("a direction only", scores, "(b) PG", "(a) ViT baseline", source="Fig. 5", expected_sign=-1)]
    table = claims_table(claims)
    assert list(table.columns) == ["paper Δ", "paper source", "our Δ", "se", "seeds", "verdict", "reading"]
    paper = reidlab.paper_results("coen", table=3).set_index("setting")["mAP"]
    assert table.loc["PG helps", "paper Δ"] == f"{paper['(b)'] - paper['(a)']:+.1f}"
    assert table.loc["PG helps", "reading"] == "holds"
    assert table.loc["CEM helps", "reading"] == "fails"          # the paper's CEM helps; ours hurts beyond noise
    assert table.loc["no paper number", "reading"] == "—"
    assert table.loc["no paper number", "paper source"] == "text only"
    assert table.loc["a direction only", "reading"] == "fails" and table.loc["a direction only", "paper Δ"] == "—"


def test_paper_delta_names_a_missing_row():
    with pytest.raises(ValueError, match=r"no row\(s\) \['(z)'\]".replace("(z)", r"\(z\)")):
        PaperDelta("coen", 3, "(z)", "(a)").value()


def test_matched_baseline_copies_everything_but_the_method():
    coen = reidlab.load_recipe("coen", "tutorial", {"train.epochs": 3, "model.dropout": 0.1})
    base = matched_baseline(coen, method_only=("proxy", "sort", "enhancement", "dropout"), shared=True)
    assert base.method == "baseline_multimodal"
    for section in ("dataset_options", "synthetic", "data", "train", "eval"):
        assert getattr(base, section) == getattr(coen, section), section
    assert base.model["backbone"] == coen.model["backbone"] and base.model["shared"] is True
    assert not {"proxy", "sort", "enhancement", "dropout"} & set(base.model)


def test_runs_of_one_row():
    runs = {("a", 0): "a0", ("b", 0): "b0", ("a", 1): "a1"}
    assert runs_of(runs, "a") == {("a", 0): "a0", ("a", 1): "a1"} and runs_of(runs, "c") == {}


def test_seeded_variants():
    recipe = reidlab.load_recipe("coen", "smoke")
    runs = seeded({"x": recipe}, [3, 4])
    assert [k for k in runs] == [("x", 3), ("x", 4)] and runs["x", 4].train["seed"] == 4
    with pytest.raises(ValueError, match="at least one"):
        seeded({"x": recipe}, [])


def test_seeded_variants_with_fewer_seeds_for_some_rows():
    recipe = reidlab.load_recipe("coen", "smoke")
    runs = seeded({"main": recipe, "ablation": recipe.override({"loss.lambda": 0.1})}, [0, 1, 2], {"ablation": [0]})
    assert list(runs) == [("main", 0), ("main", 1), ("main", 2), ("ablation", 0)]
    assert runs["ablation", 0].loss["lambda"] == 0.1
    with pytest.raises(ValueError, match="not variants: typo"):
        seeded({"main": recipe}, [0], {"typo": [0]})
    with pytest.raises(ValueError, match="every row"):
        seeded({"main": recipe}, [0], {"main": []})


def test_front_door_lists_methods_without_model_code():
    import subprocess
    import sys
    code = ("import sys, reidlab; print(reidlab.list_methods()); "
            "print(any(m.startswith('reidlab.models') for m in sys.modules), 'timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert {"baseline_multimodal", "baseline_crossmodal", "coen", "denet"} <= set(eval(out[0]))
    assert out[1] == "False False"
    with pytest.raises(AttributeError, match="public names"):
        reidlab.no_such_name  # noqa: B018


def test_paper_delta_needs_where_for_duplicated_rows():
    with pytest.raises(ValueError, match="several lines"):
        PaperDelta("coen", 1, "CoEN", "ViT").value()
    delta = PaperDelta("coen", 1, "CoEN", "ViT", where={"backbone": "ViT"})
    assert delta.value() == pytest.approx(71.4 - 66.5) and delta.source == "Table 1, ViT: CoEN − ViT"


def _fake_pool(monkeypatch) -> list[list]:
    """Replace the worker pool by a recorder: each call's keys; a "run" is (recipe name, seed, lambda)."""
    calls = []

    def train_many(recipes, **options):
        calls.append(list(recipes))
        return {key: (r.name, r.train["seed"], r.loss.get("lambda")) for key, r in recipes.items()}
    monkeypatch.setattr("reidlab.studies.variants.train_many", train_many)
    return calls


def test_train_groups_trains_every_group_in_one_call(monkeypatch):
    calls = _fake_pool(monkeypatch)
    coen, base = reidlab.load_recipe("coen", "smoke"), reidlab.load_recipe("baseline_multimodal", "smoke")
    groups = {"main": ({"CoEN": coen, "baseline": base}, [0, 1, 2]), "extra": ({"CoEN": coen}, [5])}
    grouped = studies.train_groups(groups)
    assert len(calls) == 1 and len(calls[0]) == 7  # one pool call: no core waits at the end of a group
    separate = {g: studies.train_variants(variants, seeds) for g, (variants, seeds) in groups.items()}
    assert grouped == separate and list(grouped["main"]) == list(separate["main"])
    assert grouped["extra"] == {("CoEN", 5): ("coen", 5, coen.loss.get("lambda"))}


def test_sweep_many_trains_all_points_together_and_name_each_value_column(monkeypatch):
    calls = _fake_pool(monkeypatch)

    def score_runs(runs, **options):
        return pd.DataFrame([{"row": row, "seed": seed, "mAP": 10.0 * seed + row} for row, seed in runs])
    monkeypatch.setattr("reidlab.studies.sweeps.score_runs", score_runs)
    coen = reidlab.load_recipe("coen", "smoke")
    grid = {"λ": ("loss.lambda", [0.1, 0.5]), "γ": ("loss.gamma", [0.3, 0.5, 0.9])}
    scores = studies.sweep_many(coen, grid, [0, 1])
    assert len(calls) == 1 and len(calls[0]) == 10
    assert list(scores) == ["λ", "γ"] and list(scores["γ"].columns) == ["γ", "seed", "mAP"]
    assert scores["γ"]["γ"].tolist() == [0.3, 0.3, 0.5, 0.5, 0.9, 0.9] and scores["λ"]["mAP"].tolist()[-1] == 10.5
    single = studies.sweep(coen, "loss.gamma", [0.3, 0.5, 0.9], [0, 1], name="γ")
    pd.testing.assert_frame_equal(single, scores["γ"])


def test_paired_sweep_trains_method_and_baseline_at_every_value_in_one_call(monkeypatch):
    calls = []

    def train_many(recipes, **options):   # a "run" is (row, seed, identities of its tree)
        calls.append(list(recipes))
        return {key: (key[1][0], r.train["seed"], r.synthetic["num_ids"]) for key, r in recipes.items()}

    def score_runs(runs, **options):      # CoEN gains 1 point per 12 identities over the baseline, + seed
        return pd.DataFrame([{"row": row, "seed": seed, "mAP": 50.0 + seed + (n / 12 if row == "CoEN" else 0)}
                             for row, seed, n in runs.values()])
    monkeypatch.setattr("reidlab.studies.variants.train_many", train_many)
    monkeypatch.setattr("reidlab.studies.sweeps.score_runs", score_runs)
    coen = reidlab.load_recipe("coen", "smoke")
    variants = {"baseline": coen_study.baseline(coen), "CoEN": coen}
    scores = studies.paired_sweep(variants, "synthetic.num_ids", [12, 36], [0, 1], name="identities")
    assert len(calls) == 1 and len(calls[0]) == 8          # 2 values x 2 rows x 2 seeds, one pool call
    assert list(scores.columns) == ["row", "seed", "mAP", "identities"]
    assert scores.groupby("identities").size().tolist() == [4, 4]
    effect = studies.paired_effect(scores, "CoEN", "baseline", by=["identities"])
    assert effect["delta"].tolist() == pytest.approx([1.0, 3.0]) and effect["se"].tolist() == pytest.approx([0, 0])


def test_denet_claims_leave_out_the_tables_a_lecture_does_not_train():
    from reidlab.studies import denet

    table1 = pd.DataFrame([{"row": r, "setting": s, "seed": seed, "mAP": 50.0 + i + seed}
                           for i, r in enumerate((denet.BASELINE, denet.ZERO_FILL, denet.RECOVERY))
                           for s in denet.SETTINGS for seed in (0, 1)])
    table5 = pd.DataFrame([{"row": r, "setting": f"η={denet.ETA}", "seed": 0, "mAP": 40.0 + i}
                           for i, r in enumerate(denet.ABLATION)])
    table7 = pd.DataFrame([{"row": r, "setting": s, "seed": 0, "mAP": 30.0 + i}
                           for i, r in enumerate(("fixed", "cycle", "dynamic")) for s in denet.SETTINGS])
    lecture = claims_table(denet.claims({1: table1, 5: table5}))
    full = claims_table(denet.claims({1: table1, 5: table5, 7: table7}))
    table_v = len(denet.ABLATION) - 1
    assert len(lecture) == 3 + 4 + table_v
    assert len(full) == len(lecture) + 4 + 1
    assert "dynamic beats fixed enhancement under M(N)" in full.index
    assert not any("dynamic" in claim or "CMFT beats" in claim for claim in lecture.index)
    with pytest.raises(KeyError):
        denet.claims({1: table1})          # Table V is required
    lecture_v = claims_table(denet.claims({1: table1, 5: table5[table5["row"].isin(denet.LECTURE_ABLATION)]}))
    assert len(lecture_v) == 3 + 4 + len(denet.LECTURE_ABLATION) - 1
    assert "the full model beats 'L_rec + L_sim' (η = 0.25)" in lecture_v.index


def test_peca_claims_leave_out_table3_when_the_lecture_trains_no_ablation_row():
    from reidlab.studies import peca

    main = _scores({peca.AGW: [60.0, 61.0, 62.0], peca.FULL: [63.0, 64.5, 65.0]})
    ablation = _scores({row: [50.0 + i, 51.0 + i] for i, row in enumerate(("M1", "M2", "M3", "M4", "M5", peca.FULL))})
    sweep = pd.DataFrame([{"λ_m": v, "seed": 0, "mAP": 60.0 + v} for v in (0.0, 0.5)])
    lecture = claims_table(peca.claims({"main": main}))
    full = claims_table(peca.claims({"main": main, "ablation": ablation, "λ_m": sweep}))
    assert list(lecture.index) == ["PECA beats AGW (T1, all search)"]
    assert len(full) == 1 + 6 + 1 and "GSL helps (T3 M3→M4, the jump hardest to reproduce)" in full.index
    assert full.loc["PECA beats AGW (T1, all search)"].equals(lecture.loc["PECA beats AGW (T1, all search)"])
    with pytest.raises(KeyError):
        peca.claims({"ablation": ablation})          # the main comparison is required


def test_mmcf_claims_leave_out_table3_when_the_lecture_trains_no_ablation_row():
    from reidlab.studies import mmcf

    main = _scores({mmcf.BASELINE: [30.0, 31.0, 32.0], mmcf.FULL: [31.0, 33.0, 32.5]})
    ablation = _scores({row: [30.0 + i, 31.0 + i] for i, row in enumerate(mmcf.ABLATION)}, **{"R-1": 40.0})
    lecture = claims_table(mmcf.claims({"main": main}))
    full = claims_table(mmcf.claims({"main": main, "regdb": main, "ablation": ablation}))
    assert list(lecture.index) == ["MMCF beats its clustering baseline (SYSU all)"]
    assert len(full) == 2 + 6 and "UM alone helps (No.3 − No.1)" in full.index
    assert full.loc[lecture.index[0]].equals(lecture.loc[lecture.index[0]])
