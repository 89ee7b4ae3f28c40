"""indexer part of Shoplens."""
