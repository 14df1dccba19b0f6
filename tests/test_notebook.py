"""notebooks/quickstart.ipynb runs top to bottom without errors (its cells assert the results)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
TIMEOUT = 300  # seconds per cell; the whole notebook takes about a minute


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install leo[notebook])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install leo[notebook])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install leo[notebook])")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install leo[notebook])")
    from leo.data import load_mnist
    from leo.errors import LeoInputError

    try:
        load_mnist()
    except LeoInputError as exc:
        pytest.skip(f"MNIST not available: {exc}")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, if a cell fails

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "hidden widths:" in text and "test accuracy: original" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot was drawn
