"""The chunk workflow built from fw_specs/chunk_workflow.yaml."""

from fireworks import Workflow

from screener.workflows.build import chunk_workflow, summary_firework
from screener.workflows.tasks import (
    BuildBandsTask,
    EnumerateHopsTask,
    FlagHostsTask,
    PredictBarriersTask,
    SummaryTask,
)


def _ordered(wf: Workflow):
    """Fireworks of a linear workflow from root to leaf."""
    by_id = {fw.fw_id: fw for fw in wf.fws}
    (root,) = wf.root_fw_ids
    order = [by_id[root]]
    while wf.links[order[-1].fw_id]:
        (nxt,) = wf.links[order[-1].fw_id]
        order.append(by_id[nxt])
    return order


def test_chunk_workflow_is_a_linear_chain_with_categories():
    store = {"embedded": "/tmp/x"}
    wf = chunk_workflow("c1", 3, store)
    fws = _ordered(wf)
    assert [type(fw.tasks[0]) for fw in fws] == [
        EnumerateHopsTask, BuildBandsTask, PredictBarriersTask, FlagHostsTask,
    ]
    assert [fw.spec["_category"] for fw in fws] == ["cpu"] * 4
    assert all(fw.spec["campaign"] == "c1" and fw.spec["chunk"] == 3 for fw in fws)
    assert all(fw.tasks[0]["store"] == store for fw in fws)
    assert wf.metadata == {"campaign": "c1", "chunk": 3}
    assert wf.name == "c1 chunk 3"


def test_gpu_campaign_routes_only_inference_to_gpu_workers():
    cats = [fw.spec["_category"] for fw in _ordered(chunk_workflow("c", 0, gpu=True))]
    assert cats == ["cpu", "cpu", "gpu", "cpu"]


def test_workflow_survives_serialisation():
    wf = chunk_workflow("c1", 0, {"db": "mongodb://localhost/x"})
    back = Workflow.from_dict(wf.to_dict())
    tasks = [type(fw.tasks[0]) for fw in _ordered(back)]
    assert tasks == [EnumerateHopsTask, BuildBandsTask, PredictBarriersTask, FlagHostsTask]
    summary = summary_firework("c1")
    assert isinstance(summary.tasks[0], SummaryTask) and summary.spec["_category"] == "cpu"
