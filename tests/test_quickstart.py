import os

from dnn_cool_catalyst.quickstart import main, run


def test_quickstart_trains_tunes_and_evaluates(tmp_path):
    runner, gt, decoded = run(samples=300, epochs=2, project_dir=str(tmp_path))
    for table in (gt, decoded):
        assert list(table.columns) == ["task_path", "metric_name", "metric_res", "num_samples"]
        assert set(table.task_path) == {"is_interesting", "numerical_flow.is_even",
                                        "numerical_flow.predict_positive", "numerical_flow.multiple_three"}
        assert table.metric_res.between(0, 1).all()
    assert (tmp_path / "converters.json").exists()
    assert os.path.exists(os.path.join(runner.run_dir, "tuned.json"))


def test_quickstart_command_prints_the_table_and_tensorboard_command(tmp_path, capsys):
    main(["--samples", "200", "--epochs", "1", "--project-dir", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert "Test split, decoded gating" in out and "tensorboard --logdir" in out
