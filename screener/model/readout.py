"""Band-site readout for the ALIGNN: the barrier is read from the hop, not only from the average atom.

Why: alignn's readout is the mean of the node features over every atom of the structure. For a band
(first five nodes: the ion at the initial site, three images, the final site; then ~50-1000 host
atoms) that average is dominated by the host, while E_m is decided at the hop. This readout
concatenates the global mean, the mean over the five band sites and the middle image's features
(the saddle-point guess) before the output layer. The message-passing layers are alignn's own and
keep their names, so the multi-property pre-trained weights load unchanged; only the output layer is
new (3 x hidden inputs).
"""

from __future__ import annotations

import torch
from alignn.models.alignn_atomwise_pure import (
    ALIGNNAtomWisePure,
    _as_torchgraph,
    _bond_cosines,
    cutoff_function_based_edges,
    scatter_mean,
)

from screener.model.graphs import BAND_KEY, HOP_DESCRIPTORS_KEY

#: The middle image (index 2 of the five band sites): the linear path's saddle-point guess.
MIDDLE = 2


class BandReadoutALIGNN(ALIGNNAtomWisePure):
    """alignn's pure-torch ALIGNN with a [mean(all), mean(band sites), middle image] readout."""

    def __init__(self, config, hop_descriptors: int = 0) -> None:
        super().__init__(config)
        self.hop_descriptors = int(hop_descriptors)
        self.fc = torch.nn.Linear(3 * config.hidden_features + self.hop_descriptors, config.output_features)

    def node_features(self, g, lg) -> torch.Tensor:
        """Node features after alignn's ALIGNN and GCN layers (its forward, up to the readout)."""
        r = g.edata["r"]
        bondlength = torch.norm(r, dim=1)
        z = self.angle_embedding(_bond_cosines(r[lg.src], r[lg.dst])) if len(self.alignn_layers) else None
        x = self.atom_embedding(g.ndata["atom_features"])
        if self.config.use_cutoff_function:
            c = cutoff_function_based_edges(bondlength, inner_cutoff=self.config.inner_cutoff,
                                            exponent=self.config.exponent)
            y = self.edge_embedding(bondlength) * c.unsqueeze(-1) if self.config.multiply_cutoff \
                else self.edge_embedding(c)
        else:
            y = self.edge_embedding(bondlength)
        for layer in self.alignn_layers:
            x, y, z = layer(g, lg, x, y, z)
        for layer in self.gcn_layers:
            x, y = layer(g, x, y)
        return x

    def forward(self, inp):  # noqa: D401 - same contract as alignn's: {"out": (B,) or (B, k)}
        gg, lg, _ = inp
        g, lg = _as_torchgraph(gg), _as_torchgraph(lg)
        x = self.node_features(g, lg)
        bid = g.node_batch_id
        n = g.batch_size
        band = g.ndata.get(BAND_KEY)
        if band is None:
            raise ValueError("band readout: graph has no band-site mask (build it with batch_graphs)")
        mean_all = scatter_mean(x, bid, n)
        mean_band = scatter_mean(x[band], bid[band], n)
        counts = g.batch_num_nodes if g.batch_num_nodes is not None else torch.tensor([g.num_nodes])
        first = torch.cumsum(counts, 0) - counts
        middle = x[first.to(x.device) + MIDDLE]
        parts = [mean_all, mean_band, middle]
        if self.hop_descriptors:
            desc = g.ndata.get(HOP_DESCRIPTORS_KEY)
            if desc is None or desc.shape[1] != self.hop_descriptors:
                raise ValueError(f"band readout: needs {self.hop_descriptors} hop descriptors per band "
                                 "(set CrystalGraph.hop_descriptors before batching)")
            parts.append(desc[first.to(x.device)])
        out = self.fc(torch.cat(parts, dim=1))
        if self.config.output_features == 1:
            out = out.squeeze(-1)
        return {"out": out}
