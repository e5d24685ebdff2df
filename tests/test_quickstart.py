from dnn_cool_catalyst.quickstart import run


def test_quickstart_runs_and_reports_every_task(tmp_path):
    table = run(samples=300, epochs=2, project_dir=str(tmp_path))
    assert list(table.columns) == ["task_path", "metric_name", "metric_res", "num_samples"]
    assert set(table.task_path) == {"is_interesting", "numerical_flow.is_even", "numerical_flow.predict_positive",
                                    "numerical_flow.multiple_three"}
    assert table.metric_res.between(0, 1).all()
    assert (tmp_path / "converters.json").exists()
