"""reidlab.papers: the papers' reported numbers, quoted as printed."""

import pytest

from reidlab.papers import available_papers, paper_results, paper_spec


def test_coen_tables_are_all_there():
    frame = paper_results("coen")
    assert sorted(frame["table"].unique()) == [1, 2, 3, 4, 5, 6, 7]
    assert set(frame.columns[:7]) == {"table", "dataset", "setting", "group", "backbone", "ref", "detail"}
    assert "coen" in available_papers() and paper_spec("coen")["notes"]


def test_coen_headline_numbers_as_printed():
    frame = paper_results("coen")
    full = frame[(frame["table"] == 1) & (frame["setting"] == "CoEN") & (frame["backbone"] == "ViT")]
    assert full[["mAP", "R-1", "R-5", "R-10"]].iloc[0].tolist() == [71.4, 79.2, 83.5, 85.6]
    # the full model closes Tables 3-7 with the same numbers
    for table, setting in [(3, "(e)"), (4, "Progressive Proj"), (5, "RGB-NIR-TIR-Proxy"), (6, "w/ DQSM"),
                           (7, "w/ CEM")]:
        row = paper_results("coen", table=table).set_index("setting").loc[setting]
        assert row[["mAP", "R-1", "R-5", "R-10"]].tolist() == [71.4, 79.2, 83.5, 85.6]


def test_table_2_has_one_row_per_dataset_and_no_rank_5():
    table = paper_results("coen", table=2)
    coen = table[(table["setting"] == "CoEN") & (table["backbone"] == "ViT")].set_index("dataset")
    assert coen.loc["rgbnt100", ["mAP", "R-1"]].tolist() == [84.6, 98.5]
    assert coen.loc["msvr310", ["mAP", "R-1"]].tolist() == [44.0, 63.1]
    assert "R-5" not in table.columns
    assert paper_results("coen").query("table == 2")["R-5"].isna().all()


def test_unknown_paper_or_table():
    with pytest.raises(ValueError, match="available"):
        paper_results("nonexistent")
    with pytest.raises(ValueError, match="no table 9"):
        paper_results("coen", table=9)


def test_denet_headline_numbers_as_printed():
    table1 = paper_results("denet", table=1).query("setting == 'DENet'").set_index("detail")
    assert table1.loc["Missing NIR+TIR", ["mAP", "R-1"]].tolist() == [32.42, 29.20]
    table5 = paper_results("denet", table=5).set_index("setting")
    assert table5.loc["L_rec + L_sim + DEM", ["mAP", "R-1", "R-5", "R-10"]].tolist() == [34.30, 40.18, 57.42, 65.90]
    assert sorted(paper_results("denet")["table"].unique()) == [1, 2, 3, 4, 5, 6, 7] and paper_spec("denet")["notes"]


def test_peca_loads_with_its_three_tables():
    frame = paper_results("peca")
    assert sorted(frame["table"].unique()) == [1, 2, 3] and "peca" in available_papers()
    assert {"R-1", "R-10", "R-20", "mAP"} <= set(frame.columns) and "mINP" not in frame.columns
    assert set(frame.query("table == 1")["dataset"]) == {"sysu_mm01_all", "sysu_mm01_indoor"}
    assert set(frame.query("table == 2")["dataset"]) == {"regdb_v2i", "regdb_i2v"}
    assert set(frame.query("table == 3")["dataset"]) == {"sysu_mm01_all", "regdb_v2i"}
    assert paper_spec("peca")["code"] == "none announced in the paper" and paper_spec("peca")["notes"]


def test_peca_headline_numbers_as_printed():
    table1 = paper_results("peca", table=1).query("setting == 'PECA'").set_index("dataset")
    assert table1.loc["sysu_mm01_all", "R-1"] == 74.89 and table1.loc["sysu_mm01_indoor", "mAP"] == 83.96
    assert (table1["ref"] == "Ours").all()
    table2 = paper_results("peca", table=2).query("setting == 'PECA'").set_index("dataset")
    assert table2.loc["regdb_i2v", ["R-1", "R-10", "R-20", "mAP"]].tolist() == [93.06, 98.97, 99.51, 90.22]
    assert table2.loc["regdb_v2i", ["R-1", "mAP"]].tolist() == [94.97, 89.07]
    hicmd = paper_results("peca", table=1).query("setting == 'Hi-CMD*'").set_index("dataset")
    assert hicmd.loc["sysu_mm01_all", ["R-1", "mAP"]].tolist() == [34.60, 35.21] and hicmd["ref"].iloc[0] == "CVPR20"


def test_peca_dashes_are_null():
    mid = paper_results("peca", table=1).query("setting == 'MID'").set_index("dataset")
    assert mid["R-20"].isna().all()
    assert mid.loc["sysu_mm01_all", ["R-1", "R-10", "mAP"]].tolist() == [60.27, 92.90, 59.40]
    msr = paper_results("peca", table=2).query("setting == 'MSR'").set_index("dataset")
    assert msr.loc["regdb_i2v", ["R-1", "R-10", "R-20", "mAP"]].isna().all()
    assert msr.loc["regdb_v2i", "R-1"] == 48.43


def test_peca_ablation_rows_in_order():
    table3 = paper_results("peca", table=3)
    assert table3.query("dataset == 'regdb_v2i'")["setting"].tolist() == ["M1", "M2", "M3", "M4", "M5", "PECA"]
    rows = table3.set_index(["setting", "dataset"])
    assert rows.loc[("M4", "regdb_v2i"), "R-1"] == 88.96
    assert rows.loc[("M1", "sysu_mm01_all"), ["R-1", "R-10", "R-20", "mAP"]].tolist() == [65.12, 92.37, 96.03, 61.25]
    assert rows.loc[("M5", "sysu_mm01_all"), "detail"] == "L_ins ✓, L_mod ✓, GSL ×, ICAL ✓"
    assert "without random grayscale" in rows.loc[("M1", "regdb_v2i"), "note"]
    # the full model of the ablation is the same model as in Tables 1 and 2
    full = paper_results("peca").query("setting == 'PECA'").set_index(["table", "dataset"])
    for table, dataset in [(1, "sysu_mm01_all"), (2, "regdb_v2i")]:
        assert full.loc[(3, dataset), ["R-1", "R-10", "R-20", "mAP"]].tolist() == \
            full.loc[(table, dataset), ["R-1", "R-10", "R-20", "mAP"]].tolist()


def test_peca_table_2_nfs_and_cm_nas_rows_are_identical_as_printed():
    table2 = paper_results("peca", table=2).set_index(["setting", "dataset"])[["R-1", "R-10", "R-20", "mAP"]]
    for dataset in ("regdb_v2i", "regdb_i2v"):
        assert table2.loc[("NFS", dataset)].tolist() == table2.loc[("CM-NAS", dataset)].tolist()
