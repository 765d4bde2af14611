"""The API reference: every public name has its own docstring and a typed signature, the pdoc page (docs/api.md)
builds, with the documented command, with all of `__all__` on it (config field meanings included), and
`help(jaxgpt)` is a page a reader can use: the API by theme first, no Flax Module boilerplate."""
import inspect
import pydoc

import pytest

import jaxgpt
from jaxgpt import interop, model

INTEROP = ["check_exportable", "from_lecture", "from_nanogpt", "to_nanogpt", "from_nanogpt_ckpt",
           "save_nanogpt_ckpt", "from_hf", "to_hf"]
MODULES = ["Block", "BigramLanguageModel", "FeedForward", "GPTLanguageModel", "Head", "MultiHeadAttention"]
PDOC_ARGV = ["jaxgpt", "jaxgpt.interop", "jaxgpt.model", "-o", "api-html"]  # docs/api.md's command


@pytest.mark.parametrize("name", jaxgpt.__all__)
def test_every_public_name_has_its_own_docstring_and_a_typed_signature(name):
    obj = getattr(jaxgpt, name)
    if isinstance(obj, dict):  # PRESETS: documented on the API page through the module docstring
        return
    doc = inspect.getdoc(obj) or ""
    assert doc and not doc.startswith(f"{name}("), f"jaxgpt.{name} has no docstring of its own"
    if inspect.isclass(obj) and issubclass(obj, Exception):
        return  # raised with one message string, like ValueError
    signature = inspect.signature(obj)
    untyped = [p.name for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not untyped, f"jaxgpt.{name}{signature}: no type for {untyped}"
    assert inspect.isclass(obj) or signature.return_annotation is not inspect.Signature.empty, \
        f"jaxgpt.{name}{signature} does not say what it returns"


def test_help_jaxgpt_is_short_and_starts_with_the_api_by_theme():
    page = pydoc.plain(pydoc.render_doc(jaxgpt))
    assert len(page.splitlines()) < 1500, len(page.splitlines())  # 6,668 lines when the Flax modules were in it
    description = page.split("DESCRIPTION", 1)[1].split("PACKAGE CONTENTS", 1)[0]
    unlisted = [n for n in jaxgpt.__all__ if f"`{n}`" not in description and f"`{n}(" not in description]
    assert not unlisted, f"the package docstring does not list {unlisted}"
    assert "class GPTLanguageModel" not in page and "Methods inherited from flax" not in page
    assert all(getattr(jaxgpt, n) is getattr(model, n) for n in MODULES)  # still importable from jaxgpt


def test_api_page_builds_with_every_public_name(tmp_path, monkeypatch):
    pytest.importorskip("pdoc", reason="the API page needs pdoc: pip install 'jaxgpt[docs]'")
    from pdoc.__main__ import cli

    monkeypatch.chdir(tmp_path)
    cli(PDOC_ARGV)
    out = tmp_path / "api-html"
    page = (out / "jaxgpt.html").read_text(encoding="utf-8")
    missing = [n for n in jaxgpt.__all__ if f'id="{n}"' not in page]
    assert not missing, f"not on the API page: {missing}"
    assert "context length T" in page and "peak learning rate" in page  # config field meanings are visible
    interop_page = (out / "jaxgpt" / "interop.html").read_text(encoding="utf-8")
    assert not [n for n in INTEROP if f'id="{n}"' not in interop_page]
    assert all(inspect.getdoc(getattr(interop, n)) for n in INTEROP)
    model_page = (out / "jaxgpt" / "model.html").read_text(encoding="utf-8")
    assert not [n for n in MODULES if f'id="{n}"' not in model_page]
