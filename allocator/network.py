"""The network: a networkx graph of sites, user regions and data sources.

Links are undirected edges carrying latency_ms, bandwidth_gbps and egress_usd_per_gb.
Traffic between two nodes follows the lowest-latency path; its latency is the sum of the
link latencies on it and its egress price the sum of their egress prices. A site may serve
a region only if that latency is within the service's SLO.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from allocator.schema import Instance


def build_graph(inst: Instance) -> nx.Graph:
    """Graph with one node per site, region and data source, one edge per link.

    Parallel links between the same two nodes keep the lowest latency."""
    g = nx.Graph()
    for s in inst.sites:
        g.add_node(s.node_id, kind="site", entity=s.id)
    for r in inst.regions:
        g.add_node(r.node_id, kind="region", entity=r.id)
    for d in inst.data_sources:
        g.add_node(d.node_id, kind="data_source", entity=d.id)
    for i, link in enumerate(inst.links):
        if g.has_edge(link.a, link.b) and g[link.a][link.b]["latency_ms"] <= link.latency_ms:
            continue
        g.add_edge(
            link.a,
            link.b,
            index=i,
            latency_ms=link.latency_ms,
            bandwidth_gbps=link.bandwidth_gbps,
            egress_usd_per_gb=link.egress_usd_per_gb,
        )
    return g


@dataclass(frozen=True)
class Route:
    """The lowest-latency path between two nodes."""

    nodes: tuple[str, ...]
    links: tuple[int, ...]  # indices into Instance.links
    latency_ms: float
    egress_usd_per_gb: float


class Network:
    """Routes between nodes, computed once per instance and cached."""

    def __init__(self, inst: Instance):
        self.inst = inst
        self.graph = build_graph(inst)

    @cached_property
    def _paths(self) -> dict[str, dict[str, list[str]]]:
        return dict(nx.all_pairs_dijkstra_path(self.graph, weight="latency_ms"))

    def route(self, a: str, b: str) -> Route | None:
        """Lowest-latency route from node a to node b, or None if unconnected."""
        if a == b:
            return Route((a,), (), 0.0, 0.0)
        path = self._paths.get(a, {}).get(b)
        if path is None:
            return None
        links, lat, egress = [], 0.0, 0.0
        for u, v in zip(path, path[1:], strict=False):
            e = self.graph[u][v]
            links.append(e["index"])
            lat += e["latency_ms"]
            egress += e["egress_usd_per_gb"]
        return Route(tuple(path), tuple(links), lat, egress)

    def latency_ms(self, a: str, b: str) -> float:
        r = self.route(a, b)
        return float("inf") if r is None else r.latency_ms

    def reachable_sites(self, region_id: str, slo_ms: float) -> list[str]:
        """Site ids whose route to the region is within ``slo_ms``."""
        region = next(r for r in self.inst.regions if r.id == region_id)
        return [s.id for s in self.inst.sites if self.latency_ms(s.node_id, region.node_id) <= slo_ms + 1e-9]
