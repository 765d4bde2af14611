"""The same command with the same seed gives the same metrics.jsonl apart from its timing fields; --seed changes
it. In-process runs of one tiny config (tests/_runs.py), so they share one compilation."""
from _runs import argv, text_file, untimed
from jaxgpt.cli import train_main


def test_same_seed_same_run_other_seed_other_run(tmp_path, capsys):
    data = text_file(tmp_path)
    for name, seed in (("a", "1337"), ("again", "1337"), ("b", "7")):
        assert train_main(argv(data, tmp_path / name, "--seed", seed)) == 0
    printed = capsys.readouterr().out
    a, again, b = (untimed(tmp_path / n) for n in ("a", "again", "b"))
    assert [r["step"] for r in a] == [0, 4, 8] and "val_loss_full" in a[-1]
    assert a == again
    assert [r["val_loss"] for r in a] != [r["val_loss"] for r in b]
    assert a[0]["step"] == b[0]["step"]
    assert f"sample with: python sample.py --out-dir {tmp_path / 'a'}" in printed  # the end-of-run line
