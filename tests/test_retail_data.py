"""The retail project's data generator: reproducible weeks, a stable world, then a shift."""

from __future__ import annotations

from pathlib import Path

RETAIL = Path(__file__).resolve().parents[1] / "projects" / "retail"


def test_a_week_is_reproducible_and_weeks_differ(retail_data):
    first = retail_data.generate_week(3, 500)
    assert first.equals(retail_data.generate_week(3, 500))
    assert not first.equals(retail_data.generate_week(4, 500))
    assert first["event_id"].is_unique and first["purchased"].isin([0, 1]).all()


def test_behaviour_is_stable_before_the_shift_and_moves_after_it(retail_data):
    app_share = {w: (retail_data.generate_week(w, 4000)["channel"] == "app").mean()
                 for w in (0, 4, 9)}
    assert abs(app_share[0] - app_share[4]) < 0.03  # same world
    assert app_share[9] > app_share[4] + 0.25        # shopping moved to the app
    assert retail_data.shift_level(4) == 0.0 and retail_data.shift_level(9) == 1.0


def test_the_shipped_history_is_what_the_generator_makes(retail_data, tmp_path):
    out = tmp_path / "history.csv"
    assert retail_data.main(["history", "--weeks", "4", "-o", str(out)]) == 0
    assert out.read_bytes() == (RETAIL / "data" / "purchases.csv").read_bytes()
