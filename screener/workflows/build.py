"""Build a campaign's FireWorks workflows from the template in ``fw_specs/chunk_workflow.yaml``."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from fireworks import Firework, Workflow
from fireworks.utilities.fw_serializers import load_object


@functools.lru_cache(maxsize=1)
def chunk_template() -> dict[str, Any]:
    """The chunk workflow template shipped as ``screener.fw_specs/chunk_workflow.yaml``."""
    text = resources.files("screener.fw_specs").joinpath("chunk_workflow.yaml").read_text()
    return yaml.safe_load(text)


def _task(dotted: str, params: dict[str, Any]):
    return load_object({"_fw_name": "{{" + dotted + "}}", **params})


def _spec(campaign: str, chunk: int | None, category: str, store: dict | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"_category": category, "campaign": campaign, "chunk": chunk}
    if store:
        spec["store"] = store
    return spec


def chunk_workflow(
    campaign: str, chunk: int, store: dict | None = None, *, gpu: bool = False
) -> Workflow:
    """One linear workflow (hops -> bands -> predict -> flag) over the hosts of ``chunk``."""
    tpl = chunk_template()
    fmt = {"campaign": campaign, "chunk": chunk, "predict_category": "gpu" if gpu else "cpu"}
    params = {"campaign": campaign, "chunk": chunk}
    if store:
        params["store"] = store
    fws: list[Firework] = []
    for step in tpl["steps"]:
        category = step["category"].format(**fmt)
        fw = Firework(
            [_task(step["task"], params)],
            spec=_spec(campaign, chunk, category, store),
            name=f"{campaign}:{chunk}:{step['name']}",
            parents=fws[-1:] or None,
        )
        fws.append(fw)
    return Workflow(
        fws,
        name=tpl["name"].format(**fmt),
        metadata={"campaign": campaign, "chunk": chunk},
    )


def summary_firework(campaign: str, store: dict | None = None) -> Firework:
    """The campaign's summary step, appended by the flag step of the last chunk to finish."""
    tpl = chunk_template()["summary"]
    params: dict[str, Any] = {"campaign": campaign}
    if store:
        params["store"] = store
    return Firework(
        [_task(tpl["task"], params)],
        spec=_spec(campaign, None, tpl["category"], store),
        name=tpl["name"].format(campaign=campaign),
    )
