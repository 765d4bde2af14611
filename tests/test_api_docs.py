"""The API reference: every public name has its own docstring, and the pdoc page (docs/api.md) builds with all of
`__all__` on it, config field meanings included."""
import inspect

import pytest

import jaxgpt
from jaxgpt import interop

INTEROP = ["check_exportable", "from_lecture", "from_nanogpt", "to_nanogpt", "from_nanogpt_ckpt",
           "save_nanogpt_ckpt", "from_hf", "to_hf"]


@pytest.mark.parametrize("name", jaxgpt.__all__)
def test_every_public_name_has_its_own_docstring(name):
    obj = getattr(jaxgpt, name)
    if isinstance(obj, dict):  # PRESETS: documented on the API page through the module docstring
        return
    doc = inspect.getdoc(obj) or ""
    assert doc and not doc.startswith(f"{name}("), f"jaxgpt.{name} has no docstring of its own"


def test_api_page_builds_with_every_public_name(tmp_path):
    pdoc = pytest.importorskip("pdoc", reason="the API page needs pdoc: pip install 'jaxgpt[docs]'")
    pdoc.pdoc("jaxgpt", "jaxgpt.interop", output_directory=tmp_path)
    page = (tmp_path / "jaxgpt.html").read_text(encoding="utf-8")
    missing = [n for n in jaxgpt.__all__ if f'id="{n}"' not in page]
    assert not missing, f"not on the API page: {missing}"
    assert "context length T" in page and "peak learning rate" in page  # config field meanings are visible
    interop_page = (tmp_path / "jaxgpt" / "interop.html").read_text(encoding="utf-8")
    assert not [n for n in INTEROP if f'id="{n}"' not in interop_page]
    assert all(inspect.getdoc(getattr(interop, n)) for n in INTEROP)
