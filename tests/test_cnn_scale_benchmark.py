"""benchmarks/cnn_scale.py reads phases off leo verify's progress bars correctly."""

from benchmarks.cnn_scale import _phase_seconds

BARS = ("layer 1:   0%|    | 0/10 units decided [00:00]\r"
        "layer 1 bounds:   0%|    | 0/10 units decided [00:00]\r"
        "layer 1 witnesses:  10%|    | 1/10 units decided [00:02, interval 1]\r"
        "layer 1 local search:  90%|    | 9/10 units decided [00:05, interval 1, witness 8]\r"
        "layer 1 MILP:  90%|    | 9/10 units decided [00:07, interval 1, witness 8]\r"
        "layer 1 MILP:  90%|    | 9/10 units decided [00:30, interval 1, witness 8; eta 3 s]\r"
        "layer 1: 100%|    | 10/10 units decided [01:10, interval 1, witness 8, milp 1]\n"
        "layer 2 (64x7x7) bounds:   0%|    | 0/4 units decided [00:00]\r"
        "layer 2 (64x7x7) MILP:   0%|    | 0/4 units decided [00:03]\r"
        "layer 2 (64x7x7): 100%|    | 4/4 units decided [00:09, budget 4]\n")


def test_phase_seconds_sum_each_phase_from_its_first_bar_to_the_next_phase():
    assert _phase_seconds(BARS) == {"done": 0, "bounds": 5, "witnesses": 3, "local search": 2, "milp": 69}
