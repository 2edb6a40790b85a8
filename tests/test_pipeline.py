import pytest

from toolkit.pipeline import STAGES, Stage, validate_order


def test_stages_are_the_six_in_order():
    assert [s.name for s in STAGES] == ["load", "compress", "convert", "verify", "benchmark", "bundle"]


def test_wrong_order_is_rejected_before_running():
    swapped = (STAGES[0], STAGES[2], STAGES[1], *STAGES[3:])
    with pytest.raises(ValueError, match="stage 'convert' must follow 'compress', not 'load'"):
        validate_order(swapped)
    with pytest.raises(ValueError, match="first stage"):
        validate_order((Stage("x", "load", lambda s: s, ""),))
