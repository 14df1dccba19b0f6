"""Verdicts and proof methods are enums that read and write as the strings they were."""

from __future__ import annotations

import json
import re
from pathlib import Path

from leo.stability.report import UnitProof
from leo.core.verdicts import Method, Verdict

ROOT = Path(__file__).resolve().parents[1]


def test_verdicts_serialise_as_before():
    assert [v.value for v in Verdict] == ["active", "inactive", "unstable"]
    assert Verdict.ACTIVE == "active" and Verdict("inactive") is Verdict.INACTIVE
    proof = UnitProof(Verdict.ACTIVE, Method.LP_CUTS, 0.5)
    text = json.dumps(proof.to_json())
    assert json.loads(text) == {"status": "active", "method": "lp-cuts", "bound": 0.5}


def test_every_method_the_analysis_names_is_a_member():
    """The engines and the orchestrator name methods only through ``Method``: no quoted
    method string is left in them (a new free string would escape the enum)."""
    names = {m.value for m in Method}
    for path in sorted(p for p in (ROOT / "leo" / "stability").glob("*.py") if p.stem != "report"):  # report serialises
        module, source = path.stem, path.read_text()
        quoted = set(re.findall(r'"([a-z-]+)"', source))
        assert not (quoted & names) - {"unit", "network"}, (module, quoted & names)
