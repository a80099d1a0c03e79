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
