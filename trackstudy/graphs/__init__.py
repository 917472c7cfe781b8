"""Graph construction: the doublets (hit pairs on adjacent pixel layers) that the GNN classifies
and that a doublet-token model can share.

    layers.py      which pixel layers a track crosses one after the other (barrel-barrel,
                   barrel-endcap, endcap-endcap, optional same-layer module overlaps)
    doublets.py    per-hit geometry, the true doublets of an event (consecutive hits of one
                   particle), edge features (delta-phi, delta-eta, z0, curvature, layer pair)
    module_map.py  the graph builder: layer pairs x geometric windows derived from truth for a
                   requested true-doublet efficiency, optionally the module map (module pairs that
                   true particles connect); fitted on training events, stored in the run
    metric.py      graphs by metric learning (model.graph.method: metric): the radius graph of hit
                   embeddings, its orientation and layer filter, the config of the embedding
                   (the network itself: trackstudy.models.metric_embedding)
    edge_filter.py the edge filter's config and threshold (model.graph.filter): a per-doublet
                   MLP after either builder drops candidates before the edge model (the network:
                   trackstudy.models.gnn.EdgeFilter; its training: trackstudy.training.edge_filter)
"""

from trackstudy.graphs.doublets import edge_features, hit_geometry, node_features, true_doublets
from trackstudy.graphs.layers import layer_pairs, pixel_layer_index
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig, build_graph

__all__ = ["GraphBuilder", "GraphConfig", "build_graph", "edge_features", "hit_geometry", "layer_pairs",
           "node_features", "pixel_layer_index", "true_doublets"]
