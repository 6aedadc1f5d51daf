"""Follow-ups of screened hops: DFT-NEB (VASP) and MLIP-NEB (CHGNet) as FireWorks workflows.

``queue`` picks hops and adds one workflow per hop and tier (never twice), ``tasks`` holds the
FireTasks, ``dft_neb`` the VASP inputs and the NEB parser; results go to the ``followups``
collection (``_id`` "<tier>|<hop_key>"), next to the model's prediction.
"""

TIERS = ("dft-neb", "mlip-neb")
