"""The README's Python example runs as written and gives the masks its table shows."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    flow, dataset = scope["flow"], scope["dataset"]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    masks = {flow.task_paths[k]: "".join(str(int(v)) for v in m) for k, m in flow.get_masks(batch=batch).items()}
    table = dict(re.findall(r"^\| ([\w.]+) \| ([01]{8}) \|$", README.read_text(), re.M))
    assert masks == table
    assert (tmp_path / "numbers_project" / "converters.json").exists()
