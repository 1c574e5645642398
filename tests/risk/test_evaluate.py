"""The evaluation command (``pyorder.risk.evaluate``): generator -> the core's features -> a
model trained on earlier days -> scored on later days, against the rules-only baseline."""

import pytest

from pyorder.risk.evaluate import evaluate, main, render
from pyorder.risk.sim import SimConfig

SMALL = SimConfig(seed=0, days=8, shoppers=10_000, prevalence=0.02)


def test_a_small_run_end_to_end_is_deterministic_and_far_above_chance() -> None:
    report = evaluate(SMALL, train_days=5)
    assert report.train_orders > 0
    assert report.test_orders > 0
    assert report.test_fraud > 0
    assert 0 < report.train_fraud_known < report.test_fraud * 2
    chance = report.test_prevalence
    # Few labels here (tens): the model is weak, but it ranks far above chance, as do the rules.
    assert report.model.average_precision > 5 * chance
    assert report.rules.average_precision > 5 * chance
    assert set(report.model.recall_by_scenario) <= {
        "account_farm",
        "account_takeover",
        "card_testing",
        "geo_mismatch",
        "promo_abuse",
        "scalper",
    }
    again = evaluate(SMALL, train_days=5)
    assert again == report  # same seed, same data, same model, same figures
    text = render(report)
    assert "| model |" in text
    assert "| rules only |" in text


def test_the_command_refuses_a_split_outside_the_window() -> None:
    with pytest.raises(ValueError, match="train_days"):
        evaluate(SMALL, train_days=8)


@pytest.mark.long
def test_the_default_run(capsys: pytest.CaptureFixture[str]) -> None:
    """The default seed's figures (docs/risk.md quotes them): the model beats the rules-only
    baseline by 1.46x in average precision. Issue 15 asks for 2x: not met on this seed (it is
    on seed 1, 2.6x); this asserts what holds."""
    report = evaluate(SimConfig(seed=0), train_days=10)
    print(render(report))
    assert report.model.average_precision >= 1.3 * report.rules.average_precision
    assert report.model.average_precision >= 50 * report.test_prevalence
    assert report.model.honest_blocked is not None
    assert report.model.honest_blocked < 0.001
    main(
        [
            "--seed",
            "0",
            "--days",
            "8",
            "--train-days",
            "5",
            "--shoppers",
            "10000",
            "--prevalence",
            "0.02",
            "--json",
        ]
    )
    assert '"model_version"' in capsys.readouterr().out
