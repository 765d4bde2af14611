"""The README and docs/*.md run as written. Python blocks are executed in order (with `out/baby` a real run folder:
the committed v0 fixture). Every shell command in a fenced (or indented) block is started for real, in-process, in
a temporary folder holding the fixture runs `out/baby` and `out/ngram`, with a 40 KB text standing in for Tiny
Shakespeare ($JAXGPT_DATA_DIR); paths under /tmp/ and /shared/ are mapped into that folder:

- `train.py` from scratch runs up to its first checkpoint (arguments, preset, data, out-dir, the state built and
  placed, the run files written; the step-0 checkpoint is where the test stops it, then the fixture stands in for
  the finished run); a resumed run goes on to its first compiled step; a finished one says so; the n-gram preset
  trains to the end (seconds);
- `sample.py` runs to the end, each sample shortened to 2 characters, which with the longest documented prompt
  (`ROMEO:`) fill the fixture's 8-token window: no command compiles the past-the-window steps or the speculative
  fallback (tests/test_sampling.py and tests/test_speculative.py test those);
- `python -c` runs its code, `python -m jaxgpt prepare` runs to the end; `bench/tpu_compile.py` and `bench/train_speed.py` run up to their first case (a test
  stub records it: the compile or the timing is where they stop);
- `pdoc` is the command tests/test_api_docs.py runs; what cannot run here is named with the reason (installs, a
  clone, the test suite itself, a second host, a cluster launcher) and its train.py part is parsed.
A command of a kind not listed fails the test, so a new documented command is run or explicitly excused."""
import importlib
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from conftest import HEAD_TEXT, REPO
from jaxgpt.cli import check_sample_args, parse_train_args, prepare_main, sample_parser, train_main
from jaxgpt.presets import DEFAULT_PRESET
from jaxgpt.sample_cli import sample_main
from test_api_docs import PDOC_ARGV

GPT_RUN, NGRAM_RUN = REPO / "tests" / "fixtures" / "v0_gpt_run", REPO / "tests" / "fixtures" / "v0_ngram_run"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PROGRAMS = ("python", "pip", "pytest", "pdoc", "srun", "gcloud", "git")  # what a shell block's lines start with
NOT_RUN = {"pip": "an install (.ci/run installs into a fresh virtual environment)",
           "git": "a clone over the network", "pytest": "the test suite itself"}


# main(argv) calls these per case: the first call stops the command
BENCH = {"bench/tpu_compile.py": ("measure",), "bench/train_speed.py": ("bench_shape",),
         "bench/time_to_quality.py": ("torch_step_s", "run_budgeted"), "bench/step_cost.py": ("build",),
         "bench/step_phases.py": ("JaxRunner",)}


SAMPLED = 2  # characters per sample.py command: "ROMEO:" and 2 fill the fixture's block_size of 8
LENGTHS = re.compile(r"(?<=, )(500|200|100|60)(?=, )")  # the lengths the docs' Python blocks sample: ", 500, key"


class Started(BaseException):
    """Raised by the test's hook where a command has shown it starts; not an Exception, so train_main lets it by."""


def stop_at(*events):
    def hook(name, **details):
        if name in events:
            raise Started(name)
    return hook


def shell_commands(text: str):
    """Each command line of the page's shell blocks (continuations and quoted newlines joined), as argv lists; a
    line with `&&` gives its parts. Blocks of sample output (no known program first) are skipped."""
    indented = re.findall(r"^ {4}(python .*)$", FENCE.sub("", text), re.M)  # 4-space code blocks
    for lang, block in [*FENCE.findall(text), ("", "\n".join(indented))]:
        if lang not in ("", "bash", "sh"):
            continue
        lines, pending = [], ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                argv = shlex.split(pending, comments=True)
            except ValueError:  # an open quote: python -c "..." over several lines
                continue
            pending = ""
            if argv:
                lines.append([a.lstrip("!") if i == 0 else a for i, a in enumerate(argv)])
        words = [next((a for a in argv if "=" not in a), "") for argv in lines]
        if not lines or not words[0].startswith(PROGRAMS):
            continue  # a sample's text, a usage synopsis on its own
        for argv in lines:
            while "&&" in argv:
                i = argv.index("&&")
                yield argv[:i]
                argv = argv[i + 1:]
            yield argv


def _local(argv, tmp):
    return [a.replace("/tmp/", f"{tmp}/tmp/").replace("/shared/", f"{tmp}/shared/") for a in argv]


def _embedded_train(argv):
    """The train.py arguments a launcher line (srun ..., gcloud ... --command="... python train.py ...") runs."""
    text = " ".join(argv)
    return shlex.split(text.split("train.py", 1)[1].split('"')[0])


def run_command(argv, tmp, capsys, monkeypatch) -> str:
    """Run or start one documented command; returns what was done (asserting it worked)."""
    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # CUDA_VISIBLE_DEVICES=0,1, JAX_PLATFORMS=cpu
        argv = argv[1:]
    program, rest = argv[0], argv[1:]
    if any(a.startswith("[") for a in rest):
        return "not run: a usage synopsis"
    if program in NOT_RUN or rest[:2] == ["-m", "pytest"]:
        return f"not run: {NOT_RUN.get(program, NOT_RUN['pytest'])}"
    if program == "cd":
        return "ignored: cd"
    if program == "pdoc":
        assert rest == PDOC_ARGV, "tests/test_api_docs.py builds the page with the documented pdoc command"
        return "run by tests/test_api_docs.py"
    if program in ("srun", "gcloud"):
        parse_train_args(_embedded_train(argv))
        return f"parsed: needs the {program} launcher"
    assert program == "python", argv
    script, args = rest[0], _local(rest[1:], tmp)
    if script == "-c":
        exec(compile(args[0], "python -c", "exec"), {"__name__": "__main__"})
        return "run"
    if script == "-m" and args[:2] == ["jaxgpt", "prepare"]:  # the 40 KB text: a fraction of a second
        assert prepare_main(args[2:]) == 0, capsys.readouterr().err
        return "run"
    if script == "train.py":
        if "--coordinator" in args:
            parse_train_args(args)
            return "parsed: needs the second host"
        parsed = parse_train_args(args)
        out_dir = parsed.out_dir or Path("out") / (parsed.preset or DEFAULT_PRESET)
        if not parsed.resume:
            shutil.rmtree(out_dir, ignore_errors=True)  # the page's later commands read what this one makes
        try:
            assert train_main(args, on_event=stop_at("before-first-checkpoint", "progress")) == 0, capsys.readouterr()
        except Started as e:
            assert e.args[0] == ("progress" if parsed.resume else "before-first-checkpoint")
            if not parsed.resume:  # the committed fixture run stands in for the finished one
                shutil.rmtree(out_dir)
                shutil.copytree(GPT_RUN, out_dir)
            return f"started: up to {e.args[0]}"
        return "run"
    if script == "sample.py":
        check_sample_args(sample_parser().parse_args(args))
        i = args.index("--max-new-tokens") if "--max-new-tokens" in args else len(args)
        assert sample_main([*args[:i], *args[i + 2:], "--max-new-tokens", str(SAMPLED)]) == 0, capsys.readouterr().err
        return f"run ({SAMPLED} characters)"
    if script in BENCH:
        monkeypatch.syspath_prepend(str(REPO / "bench"))
        bench = importlib.import_module(Path(script).stem)
        cases = []
        for name in BENCH[script]:
            monkeypatch.setattr(bench, name, lambda *case: (cases.append(case), stop_at("case")("case")))
        try:
            rc = bench.main(args)
        except Started:
            case = cases[0][:3] if len(cases[0]) > 2 else cases[0][0]
            return f"started: up to its first case {repr(case)[:60]}"
        assert rc == 2 and "libtpu" in capsys.readouterr().err  # no libtpu: one line saying so
        return "run: says libtpu is missing"
    pytest.fail(f"a documented command of a kind this test does not run: {shlex.join(argv)}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_shell_command_runs_or_starts(page, tmp_path, monkeypatch, capsys):
    data = tmp_path / "tests" / "data"  # the fixture runs' data path, relative to the repository
    data.mkdir(parents=True)
    shutil.copy(HEAD_TEXT, data / HEAD_TEXT.name)
    shutil.copy(HEAD_TEXT, data / "tinyshakespeare.txt")  # train.py --preset X reads 40 KB, not 1.1 MB
    monkeypatch.setenv("JAXGPT_DATA_DIR", str(data))
    for fixture, run in ((GPT_RUN, "out/baby"), (GPT_RUN, "tmp/babygpt"), (NGRAM_RUN, "out/ngram")):
        shutil.copytree(fixture, tmp_path / run)  # the runs the page's commands read, unless they train them
    text = page.read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    done, report = set(), []
    for argv in shell_commands(text):
        key = tuple(a for a in argv if not re.fullmatch(r"[A-Z_]+=\S*", a))
        outcome = "the same command as above" if key in done else run_command(argv, tmp_path, capsys, monkeypatch)
        done.add(key)
        report.append(f"{outcome:<45} {shlex.join(argv)}")
    with capsys.disabled():
        print(f"\n{page.name}:\n  " + "\n  ".join(report), file=sys.stderr)


@pytest.mark.parametrize("page", [p for p in DOCS if "```python" in p.read_text(encoding="utf-8")],
                         ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "tests" / "fixtures" / "v0_gpt_run", tmp_path / "out" / "baby")
    shutil.copytree(REPO / "tests" / "fixtures" / "v0_ngram_run", tmp_path / "out" / "ngram")  # same tokenizer
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        block = LENGTHS.sub(str(SAMPLED), block)  # shortened by the test, as the sample.py commands are
        exec(compile(block, str(page), "exec"), namespace)
