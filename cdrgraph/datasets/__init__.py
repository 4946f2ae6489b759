r"""PyG-style datasets of cdrgraph (one :class:`~torch_geometric.data.HeteroData` each)."""
__all__: list[str] = []
