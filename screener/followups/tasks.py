"""FireTasks of the follow-up workflows (see screener.followups.queue for the graphs).

DFT-NEB (``_category: "dft"``, VASP workers only):
    end point initial: WriteEndpointInputs + RunVasp --+
                                                       +--> NEB: WriteNebInputs + RunVasp + ParseNeb
    end point final:   WriteEndpointInputs + RunVasp --+
Each end-point Firework passes its launch folder to the NEB Firework (``endpoint_dirs`` in the
child's spec, FireWorks' mod_spec), which reads the relaxed CONTCARs there and their OUTCARs for
the end-point energies, so the folders must be visible to the NEB run (shared file system, as with
atomate). RunVasp takes the command from the FWorker's env (``vasp_cmd: ">>vasp_cmd<<"``).

MLIP-NEB (``_category: "mlip"``): MlipNebTask loads the band from the store and runs
screener.followups.mlip_neb.run_mlip_neb on its end points.

Results go to the ``followups`` document ``"<tier>|<hop_key>"`` (barrier, profile, PNG path).
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction

from screener.store import Store

#: Collection of follow-up records (one per tier and hop).
FOLLOWUPS = "followups"


class FollowupTaskError(RuntimeError):
    """A follow-up step that cannot go on; str() is one line naming the hop/folder and why."""


class _Task(FiretaskBase):
    """Serialised by full dotted path, so any worker with screener installed can load it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fw_name = "{{%s.%s}}" % (cls.__module__, cls.__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def env_chk(value: Any, fw_spec: dict[str, Any], what: str = "value") -> Any:
    """Resolve ``">>key<<"`` from the FWorker's env (``fw_spec["_fw_env"]``), the convention
    FireWorks/atomate users know; anything else is returned as is."""
    if isinstance(value, str) and value.startswith(">>") and value.endswith("<<"):
        key = value[2:-2]
        env = fw_spec.get("_fw_env") or {}
        if env.get(key) in (None, ""):
            raise FollowupTaskError(
                f"{what} {value}: the FWorker's env has no {key!r} (add it under env: in the fworker yaml)"
            )
        return env[key]
    return value


def open_store(store_spec: dict | None, fw_env: dict | None) -> Store:
    """The store of the follow-up: the FWorker's ``screener_store``, else the one recorded in the
    Firework; where those carry no password (never recorded), ``$SCREENER_DB``."""
    env = fw_env or {}
    spec = env.get("screener_store") or store_spec
    redacted = "***@" in str((spec or {}).get("uri", ""))
    if os.environ.get("SCREENER_DB") and (not spec or redacted):
        return Store.connect(db=os.environ["SCREENER_DB"])
    return Store.from_spec(spec)


def record(store: Store, followup_id: str, **fields: Any) -> None:
    """Update one followups document (never creates one: queue_followups does)."""
    store.update_many_by_id(FOLLOWUPS, [(followup_id, {**fields, "updated_at": _now()})])


# ---------------------------------------------------------------------------------------------
# DFT-NEB


class WriteEndpointInputs(_Task):
    """VASP inputs (MVLCINEBEndPointSet) relaxing one end point, in the launch folder."""

    required_params = ["structure", "label"]
    optional_params = ["user_incar_settings", "potcar_spec"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from pymatgen.core import Structure

        from screener.followups.dft_neb import write_endpoint_inputs

        s = self["structure"]  # FireWorks deserialises MSONable dicts: a Structure once loaded
        out = write_endpoint_inputs(
            s if isinstance(s, Structure) else Structure.from_dict(s),
            os.getcwd(),
            user_incar_settings=self.get("user_incar_settings"),
            potcar_spec=self.get("potcar_spec"),
        )
        return FWAction(stored_data={"label": self["label"], "dir": str(out)})


class RunVasp(_Task):
    """Run VASP here with the FWorker's command; optionally hand this folder to the children
    (``pass_dir_as``, a mod_spec key such as ``"endpoint_dirs->initial"``)."""

    required_params = ["vasp_cmd"]
    optional_params = ["pass_dir_as", "timeout_s"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        raw = env_chk(self["vasp_cmd"], fw_spec, "vasp_cmd")
        # a list runs as is; a string through the shell only if it uses the shell (srun ... | tee)
        cmd = " ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        shell = not isinstance(raw, list) and bool(re.search(r"[|&;<>$`]", cmd))
        args = [str(a) for a in raw] if isinstance(raw, list) else (cmd if shell else shlex.split(cmd))
        here = os.getcwd()
        with open("vasp.out", "w") as out:
            try:
                proc = subprocess.run(
                    args,
                    shell=shell,
                    cwd=here,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.get("timeout_s"),
                    check=False,  # the exit code is reported below, with the folder
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise FollowupTaskError(f"{here}: vasp_cmd {cmd!r} failed ({_one_line(exc)})") from exc
        if proc.returncode != 0:
            raise FollowupTaskError(
                f"{here}: vasp_cmd {cmd!r} exited with code {proc.returncode} (see vasp.out)"
            )
        if self.get("pass_dir_as"):
            return FWAction(mod_spec=[{"_set": {self["pass_dir_as"]: here}}])
        return FWAction()


def _endpoint_dirs(task: FiretaskBase, fw_spec: dict[str, Any]) -> tuple[str, str]:
    dirs = task.get("endpoint_dirs") or fw_spec.get("endpoint_dirs") or {}
    if not dirs.get("initial") or not dirs.get("final"):
        raise FollowupTaskError(
            f"{os.getcwd()}: end-point folders unknown (endpoint_dirs {dirs!r}; did both relaxations finish?)"
        )
    return str(dirs["initial"]), str(dirs["final"])


class WriteNebInputs(_Task):
    """CI-NEB inputs (MVLCINEBSet) from the relaxed end points (their CONTCARs) and IDPP images."""

    required_params: list[str] = []
    optional_params = ["nimages", "user_incar_settings", "potcar_spec", "endpoint_dirs"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.followups.dft_neb import (
            DEFAULT_NIMAGES,
            idpp_images,
            relaxed_structure,
            write_neb_inputs,
        )

        ini, fin = (relaxed_structure(d) for d in _endpoint_dirs(self, fw_spec))
        images = idpp_images(ini, fin, int(self.get("nimages") or DEFAULT_NIMAGES))
        write_neb_inputs(
            images,
            os.getcwd(),
            user_incar_settings=self.get("user_incar_settings"),
            potcar_spec=self.get("potcar_spec"),
        )
        return FWAction(stored_data={"images": len(images) - 2})


class ParseNeb(_Task):
    """Parse the NEB run in this folder (NEBAnalysis) and store the DFT barrier in followups."""

    required_params = ["followup_id"]
    optional_params = ["store", "endpoint_dirs"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.followups.dft_neb import DftNebError, parse_neb

        store = open_store(self.get("store"), fw_spec.get("_fw_env"))
        try:
            outcome = parse_neb(os.getcwd(), _endpoint_dirs(self, fw_spec))
        except (DftNebError, FollowupTaskError) as exc:
            record(store, self["followup_id"], state="failed", error=_one_line(exc))
            store.close()
            raise
        record(store, self["followup_id"], state="done", error=None, finished_at=_now(), **outcome.as_doc())
        store.close()
        return FWAction(stored_data={"barrier_ev": outcome.barrier_ev})


# ---------------------------------------------------------------------------------------------
# MLIP-NEB


def followup_dir(followup_id: str) -> Path:
    """$SCREENER_HOME/followups/<id with unsafe characters replaced>/ (created)."""
    from screener.config import screener_home

    d = screener_home() / "followups" / re.sub(r"[^A-Za-z0-9_.-]+", "_", followup_id)
    d.mkdir(parents=True, exist_ok=True)
    return d


class MlipNebTask(_Task):
    """CHGNet NEB of one hop (run_mlip_neb on the band's end points); stores barrier, profile and
    the profile PNG (under $SCREENER_HOME/followups/<id>/) in followups."""

    required_params = ["followup_id", "hop_key"]
    optional_params = ["store", "settings"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from screener.bands import band_endpoints, band_from_doc

        env = fw_spec.get("_fw_env") or {}
        if env.get("torch_threads"):
            import torch

            torch.set_num_threads(int(env["torch_threads"]))
        fid, key = self["followup_id"], self["hop_key"]
        store = open_store(self.get("store"), env)
        try:
            doc = store.hops.find_one({"_id": key}, {"band": 1})
            if doc is None or not doc.get("band"):
                raise FollowupTaskError(f"hop {key}: no band stored in {store.describe()}")
            initial, final = band_endpoints(band_from_doc(doc["band"]))
            from screener.followups.mlip_neb import MlipNebSettings, run_mlip_neb

            settings = MlipNebSettings(**(self.get("settings") or {}))
            named = "label" in inspect.signature(run_mlip_neb).parameters  # errors then name the hop
            result = run_mlip_neb(initial, final, settings, **({"label": key} if named else {}))
            png = result.plot(followup_dir(fid) / "profile.png")
        except Exception as exc:  # recorded with its reason; the Firework fizzles
            reason = _one_line(exc)
            record(store, fid, state="failed", error=reason if key in reason else f"hop {key}: {reason}")
            store.close()
            raise
        energies = [float(e) for e in result.energies_ev]
        extra = result.to_doc() if hasattr(result, "to_doc") else {}
        fields = {
            **{k: v for k, v in extra.items() if k not in ("images", "tier", "label")},
            "state": "done",
            "error": None,
            "barrier_ev": float(result.barrier_ev),
            "energies_ev": energies,
            "profile_ev": [e - energies[0] for e in energies] if energies else [],
            "converged": bool(result.converged),
            "seconds": float(result.seconds),
            "profile_png": str(png),
            "finished_at": _now(),
        }
        record(store, fid, **fields)
        store.close()
        return FWAction(stored_data={k: fields[k] for k in ("barrier_ev", "converged", "profile_png")})
