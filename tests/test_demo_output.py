"""Issue 27, item 7: the demo and the quickstart show progress bars only on a terminal (unless --quiet)."""
import pandas as pd
import pytest

from dnn_cool_catalyst import demo, quickstart


@pytest.mark.parametrize("module", [demo, quickstart])
@pytest.mark.parametrize("argv, verbose", [([], "auto"), (["--quiet"], False)])
def test_progress_follows_the_terminal_unless_quiet(module, argv, verbose, monkeypatch, tmp_path, capsys):
    seen = {}

    class Runner:
        run_dir = str(tmp_path)

    def fake_run(*args, verbose, **kwargs):
        seen["verbose"] = verbose
        table = pd.DataFrame({"task_path": ["t"], "metric_name": ["accuracy"], "metric_res": [1.0],
                              "num_samples": [1]})
        return Runner(), table, table

    monkeypatch.setattr(module, "run", fake_run)
    module.main(argv)
    assert seen["verbose"] == verbose  # "auto": bars and epoch tables on a terminal, nothing when redirected
    assert str(tmp_path) in capsys.readouterr().out
