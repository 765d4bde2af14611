"""The package's layers: every module imports only modules of its own layer or below, and no import cycle exists.

Imports are read from the source with `ast` (inside functions too, where a cycle likes to hide), so the test needs
no import of jaxgpt and sees every edge, taken at run time or not. A subpackage (`data/`) is one room of the
layering: its files import each other freely and the rest of the package by the same rules as a module.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxgpt"

# 0 configs, data and the error types; 1 the models and their parameter trees; 2 pure computation on models (and
# the extras beside it); 3 checkpoints; 4 the side effects of a run; 5 command lines and the package's front.
LAYERS = {
    "errors": 0, "checks": 0, "config": 0, "presets": 0, "data": 0,
    "model": 1, "params": 1, "layers": 1, "levers": 1,
    "training": 2, "sampling": 2, "sharding": 2, "flops": 2, "ngram": 2, "lora": 2, "attention": 2, "viz": 2,
    "speculative": 2, "optim": 2, "decoding": 2,
    "checkpoint": 3, "aot": 3, "drafts": 3, "interop": 3, "runimport": 3,
    "rundir": 4, "budget": 4, "feeds": 4, "progress": 4, "loop": 4, "loggers": 4,
    "cli": 5, "sample_cli": 5, "cmdline": 5, "__main__": 5, "__init__": 5,
}


def imports_of(path: Path, depth: int = 1) -> set[str]:
    """jaxgpt modules imported by `path`: `from . import x`, `from .x import y`, `import jaxgpt.x`, `from jaxgpt...`.
    `depth` is how far below jaxgpt/ the file lies (2 in a subpackage: `from ..x` is a module, `from .y` a sibling)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if 0 < node.level < depth:
                continue  # a sibling in the same subpackage: the same room
            if node.level == depth or base.split(".")[0] == "jaxgpt":
                base = base.removeprefix("jaxgpt").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import a, b
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("jaxgpt."))
    return found


def source_files() -> list[Path]:
    """Every module of the package, its subpackages' included."""
    return sorted(PACKAGE.rglob("*.py"))


def room(path: Path) -> str:
    """The room a file belongs to: its module name, or its subpackage's name."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for p in source_files():
        g.setdefault(room(p), set()).update(imports_of(p, len(p.relative_to(PACKAGE).parts)) - {room(p)})
    return g


def test_every_module_has_a_layer():
    assert set(graph()) <= set(LAYERS), f"give these modules a layer: {sorted(set(graph()) - set(LAYERS))}"


def test_imports_point_downward():
    upward = [f"{m} (layer {LAYERS[m]}) imports {d} (layer {LAYERS[d]})" for m, deps in graph().items()
              for d in sorted(deps) if m in LAYERS and d in LAYERS and LAYERS[d] > LAYERS[m]]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    g = graph()
    cycles = []

    def visit(node, path):
        for dep in sorted(g.get(node, ())):
            if dep in path:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep in g and len(path) < len(g):
                visit(dep, path + [dep])

    for start in g:
        visit(start, [start])
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_the_reader_finds_each_import():
    """The reader itself: a hand-made module with every form of import, at top level and inside a function."""
    import tempfile
    src = "from . import a, b\nfrom .c import x\nimport jaxgpt.d\nfrom jaxgpt.e import y\ndef f():\n    from .g import z\n"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.py"
        p.write_text(src)
        assert imports_of(p) == {"a", "b", "c", "d", "e", "g"}
        assert imports_of(p, depth=2) == {"d", "e"}  # in a subpackage, `from .x` is a sibling
        p.write_text("from ..errors import E\nfrom . import sibling\nfrom .. import config\n")
        assert imports_of(p, depth=2) == {"errors", "config"}


def test_files_and_loop_functions_stay_readable():
    """A file a reader can hold in their head (<= 300 lines); the loop as a short story (functions <= 50 lines)."""
    long_files = {str(p.relative_to(PACKAGE)): n for p in source_files()
                  if (n := len(p.read_text().splitlines())) > 300}
    assert not long_files, long_files
    tree = ast.parse((PACKAGE / "loop.py").read_text())
    long_functions = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree)
                      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno >= 50}
    assert not long_functions, long_functions
